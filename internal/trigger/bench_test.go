package trigger_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/postgres"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
	"github.com/lockstep-ci/lockstep/internal/testfixtures"
	"github.com/lockstep-ci/lockstep/internal/trigger"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

// BenchmarkIntakeDurable measures the intake's throughput: verify,
// validate and commit each delivery to SQLite before answering, with a
// real 31 KB pull_request payload, from parallel callers.
func BenchmarkIntakeDurable(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { benchIntakeDurable(b, be.open(b)) })
	}
}

// backends are the stores the intake benchmarks compare, side by side.
var backends = []struct {
	name string
	open func(b *testing.B) store.Store
}{
	{"sqlite", func(b *testing.B) store.Store { return openStore(b, filepath.Join(b.TempDir(), "lockstep.db")) }},
	{"postgres", func(b *testing.B) store.Store {
		st, err := postgres.Open(context.Background(), pgtest.URL(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}},
}

func benchIntakeDurable(b *testing.B, st store.Store) {
	body := testfixtures.GitHubPayload(b, "pull_request", "labeled.payload.json").Body
	sig := webhook.Sign(secret, body)
	h := webhook.NewHandler(webhook.HandlerOptions{Secret: func() ([]byte, error) { return secret, nil }, Sink: trigger.Sink(st), Logger: quiet})
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(webhook.HeaderEvent, "pull_request")
			req.Header.Set(webhook.HeaderDelivery, fmt.Sprintf("bench-%d", seq.Add(1)))
			req.Header.Set(webhook.HeaderSignature, sig)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}

// BenchmarkIntakeLatency sends deliveries over real HTTP at 1,000 a
// second to a whole intake (store, processor, trigger, GitHub double) and
// reports the p99 of the answer latency and of the time from a delivery's
// acceptance to its first run's creation. Each b.N is one delivery; run
// it with -benchtime=3000x for three seconds of load.
func BenchmarkIntakeLatency(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { benchIntakeLatency(b, newEnvOn(b, be.open(b))) })
	}
}

func benchIntakeLatency(b *testing.B, e *env) {
	st := e.store
	trig := trigger.New(trigger.Options{Store: st, Forge: e.forge(), Config: func() *config.Config { return e.cfg }, Logger: quiet})
	proc := trigger.NewProcessor(trigger.ProcessorOptions{Store: st, Trigger: trig, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = proc.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	srv := httptest.NewServer(webhook.NewHandler(webhook.HandlerOptions{Secret: func() ([]byte, error) { return secret, nil }, Sink: trigger.Sink(st), Logger: quiet}))
	defer srv.Close()
	// Warm the trust cache, as a running lockstep's would be.
	e.handle(prEvent("opened", e.pull(1, trusted, "warm"), trusted))

	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = payload(b, prEvent("opened", e.prPayloadFor(i+2, fmt.Sprintf("%040x", i+2)), trusted))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	lat := make([]time.Duration, b.N)
	ids := make([]string, b.N)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	var senders sync.WaitGroup
	for i := 0; i < b.N; i++ {
		<-tick.C
		senders.Go(func() {
			ids[i] = webhook.NewDeliveryID()
			t0 := time.Now()
			status, err := send(client, srv.URL, ids[i], "pull_request", bodies[i])
			lat[i] = time.Since(t0)
			if err != nil || status != http.StatusAccepted {
				b.Errorf("delivery %d: %v %d", i, err, status)
			}
		})
	}
	senders.Wait()
	b.StopTimer()

	// Wait for processing, then measure acceptance → first run.
	deadline := time.Now().Add(time.Minute)
	var toRun []time.Duration
	for i, id := range ids {
		for {
			d, err := st.GetDelivery(context.Background(), id)
			if err != nil {
				b.Fatal(err)
			}
			if d.State != store.DeliveryPending {
				if len(d.Outcome.Runs) == 0 {
					b.Fatalf("delivery %d created no run: %+v", i, d.Outcome)
				}
				r, err := st.GetRun(context.Background(), d.Outcome.Runs[0])
				if err != nil {
					b.Fatal(err)
				}
				toRun = append(toRun, r.CreatedAt.Sub(d.ReceivedAt))
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("deliveries not processed within a minute")
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(p99(lat).Seconds()*1000, "p99-answer-ms")
	b.ReportMetric(p99(toRun).Seconds()*1000, "p99-accept-to-run-ms")
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// prPayloadFor adds pull request n by the trusted author at head and
// returns its webhook form.
func (e *env) prPayloadFor(n int, head string) *github.PullRequest {
	return e.pull(n, trusted, head)
}

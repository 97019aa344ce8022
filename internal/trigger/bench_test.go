package trigger_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-github/v89/github"
	"github.com/jackc/pgx/v5"

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
		b.Run(be.name, func(b *testing.B) {
			tr := new(tripCounter)
			benchIntakeDurable(b, be.open(b, tr), tr)
			tr.report(b, be.name, b.N)
		})
	}
}

// backends are the stores the intake benchmarks compare, side by side.
// The tracer, when not nil, counts the store's round trips and commits.
var backends = []struct {
	name string
	open func(b *testing.B, tr *tripCounter) store.Store
}{
	{"sqlite", func(b *testing.B, _ *tripCounter) store.Store {
		return openStore(b, filepath.Join(b.TempDir(), "lockstep.db"))
	}},
	{"postgres", func(b *testing.B, tr *tripCounter) store.Store {
		st, err := postgres.Open(context.Background(), pgtest.URL(b), postgres.WithTracer(tr))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st
	}},
}

// tripCounter counts the round trips a PostgreSQL store makes to its
// server (one per query, one per batch of pipelined queries) and the
// commits among them (a COMMIT, or a pipelined batch run as one implicit
// transaction), for the benchmarks to report them per delivery.
type tripCounter struct {
	trips, commits atomic.Int64
	// stopped holds the counts when stop was called.
	stopped [2]int64
}

var (
	_ pgx.QueryTracer = (*tripCounter)(nil)
	_ pgx.BatchTracer = (*tripCounter)(nil)
)

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.trips.Add(1)
	if strings.EqualFold(strings.TrimSpace(d.SQL), "commit") {
		c.commits.Add(1)
	}
	return ctx
}

func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	c.trips.Add(1)
	if q := d.Batch.QueuedQueries; len(q) > 0 && !strings.HasPrefix(strings.ToLower(q[0].SQL), "begin") && strings.Contains(q[0].SQL, "FOR UPDATE") {
		c.commits.Add(1)
	}
	return ctx
}

func (c *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// reset zeroes the counts.
func (c *tripCounter) reset() {
	c.trips.Store(0)
	c.commits.Store(0)
}

// stop keeps the counts made so far for report.
func (c *tripCounter) stop() {
	c.stopped = [2]int64{c.trips.Load(), c.commits.Load()}
}

// report reports the counts kept by stop per delivery, for the PostgreSQL
// store only.
func (c *tripCounter) report(b *testing.B, name string, deliveries int) {
	if name != "postgres" {
		return
	}
	b.ReportMetric(float64(c.stopped[0])/float64(deliveries), "roundtrips/delivery")
	b.ReportMetric(float64(c.stopped[1])/float64(deliveries), "commits/delivery")
}

func benchIntakeDurable(b *testing.B, st store.Store, tr *tripCounter) {
	body := testfixtures.GitHubPayload(b, "pull_request", "labeled.payload.json").Body
	sig := webhook.Sign(secret, body)
	h := webhook.NewHandler(webhook.HandlerOptions{Secret: func() ([]byte, error) { return secret, nil }, Sink: trigger.Sink(st), Logger: quiet})
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	tr.reset()
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
	tr.stop()
}

// BenchmarkIntakeLatency sends deliveries over real HTTP at 1,000 a
// second to a whole intake (store, processor, trigger, GitHub double) and
// reports the p99 of the answer latency and of the time from a delivery's
// acceptance to its first run's creation. Each b.N is one delivery; run
// it with -benchtime=3000x for three seconds of load.
func BenchmarkIntakeLatency(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			tr := new(tripCounter)
			benchIntakeLatency(b, newEnvOn(b, be.open(b, tr)), tr)
			tr.report(b, be.name, b.N)
		})
	}
}

// It also counts the store's round trips and commits from the first
// delivery sent to the last one processed, intake and processing
// together.
func benchIntakeLatency(b *testing.B, e *env, tr *tripCounter) {
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
	tr.reset()
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
	// The counts cover the intake of every delivery and the processing
	// done meanwhile, not the polling below.
	tr.stop()

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

package trigger_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/trigger"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

var secret = []byte("torture-secret")

// instance is one lockstep intake: HTTP server, store and processor, that
// a test can kill abruptly and start again on the same store file.
type instance struct {
	store  *sqlite.Store
	srv    *http.Server
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func startInstance(t *testing.T, e *env, dbPath, addr string) *instance {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	trig := trigger.New(trigger.Options{Store: st, Forge: e.forge(), Config: func() *config.Config { return e.cfg }, Logger: quiet})
	proc := trigger.NewProcessor(trigger.ProcessorOptions{Store: st, Trigger: trig, Logger: quiet})
	mux := http.NewServeMux()
	mux.Handle("POST /hook", webhook.NewHandler(webhook.HandlerOptions{
		Secret: func() ([]byte, error) { return secret, nil }, Sink: trigger.Sink(st), Logger: quiet,
	}))
	var ln net.Listener
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // the old listener's port is being released
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{store: st, srv: &http.Server{Handler: mux}, cancel: cancel}
	in.done.Go(func() { _ = in.srv.Serve(ln) })
	in.done.Go(func() {
		if err := proc.Run(ctx); err != nil {
			t.Errorf("processor: %v", err)
		}
	})
	return in
}

// kill stops the instance the way a crash would: connections are cut,
// processing stops wherever it is.
func (in *instance) kill() {
	in.cancel()
	_ = in.srv.Close()
	in.done.Wait()
	_ = in.store.Close()
}

// TestTortureDeliveries sends over 10,000 deliveries for 300 pull
// requests and 100 pushes, 30% of them duplicated (half with the same
// delivery id, half with a fresh one, as a second hook would), shuffled,
// from 16 concurrent senders that retry until lockstep answers 2xx, and
// kills and restarts lockstep mid-stream. The runs in the store must be
// exactly the expected ones.
func TestTortureDeliveries(t *testing.T) {
	e := newEnv(t)
	dbPath := filepath.Join(t.TempDir(), "intake.db")

	type delivery struct {
		id, event string
		body      []byte
	}
	var unique []delivery
	var want []string
	add := func(event string, ev any) {
		unique = append(unique, delivery{id: webhook.NewDeliveryID(), event: event, body: payload(t, ev)})
	}
	for n := 1; n <= 300; n++ {
		author := trusted
		if n%5 == 0 {
			author = outsider
		}
		head := fmt.Sprintf("%040x", n)
		pr := e.pull(n, author, head)
		for _, a := range []string{"opened", "edited", "ready_for_review", "reopened"} {
			add("pull_request", prEvent(a, pr, author))
		}
		add("pull_request", labelEvent(pr, "lgtm", trusted))
		want = append(want, autoKeys(n, head, "unit", "lint")...)
		if author == outsider {
			add("issue_comment", e.comment(n, trusted, "/ok-to-test"))
		}
		for i := 0; i < 10; i++ {
			c := e.comment(n, trusted, "/test e2e")
			add("issue_comment", c)
			want = append(want, run.RequestKey(repo, n, head, "e2e", fmt.Sprintf("c%d", c.GetComment().GetID())))
		}
		all := e.comment(n, trusted, "/lgtm\n/test all")
		add("issue_comment", all)
		for _, j := range []string{"unit", "lint"} {
			want = append(want, run.RequestKey(repo, n, head, j, fmt.Sprintf("c%d", all.GetComment().GetID())))
		}
		for i := 0; i < 6; i++ {
			add("issue_comment", e.comment(n, collab, "thanks, looks good"))
		}
	}
	for i := 0; i < 100; i++ {
		sha := fmt.Sprintf("%040x", 100000+i)
		add("push", pushEvent("refs/heads/main", sha))
		want = append(want, run.PostsubmitKey(repo, sha, "publish"))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	sends := append([]delivery(nil), unique...)
	for len(sends) < 10_000 {
		d := unique[rng.IntN(len(unique))]
		if rng.IntN(2) == 0 {
			d.id = webhook.NewDeliveryID() // the other hook's copy
		}
		sends = append(sends, d)
	}
	rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })
	if dup := float64(len(sends)-len(unique)) / float64(len(sends)); dup < 0.3 {
		t.Fatalf("only %.0f%% duplicates", dup*100)
	}

	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	url := "http://" + addr + "/hook"

	var mu sync.Mutex // mu guards current
	current := startInstance(t, e, dbPath, addr)
	var sent atomic.Int64
	restarted := make(chan struct{})
	client := &http.Client{Timeout: 10 * time.Second}
	work := make(chan delivery)
	var senders sync.WaitGroup
	for range 16 {
		senders.Go(func() {
			for d := range work {
				for attempt := 0; ; attempt++ {
					status, err := send(client, url, d.id, d.event, d.body)
					if err == nil && status < 300 {
						break
					}
					if attempt > 500 {
						t.Errorf("delivery %s never accepted: %v %d", d.id, err, status)
						break
					}
					time.Sleep(5 * time.Millisecond) // GitHub-style redelivery, after a pause
				}
				if sent.Add(1) == int64(len(sends))*2/5 {
					go func() {
						mu.Lock()
						current.kill()
						current = startInstance(t, e, dbPath, addr)
						mu.Unlock()
						close(restarted)
					}()
				}
			}
		})
	}
	for _, d := range sends {
		work <- d
	}
	close(work)
	senders.Wait()
	<-restarted

	mu.Lock()
	st := current.store
	mu.Unlock()
	sort.Strings(want)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pending, err := st.ListDeliveries(context.Background(), store.DeliveryListOptions{State: store.DeliveryPending, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(pending.Deliveries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deliveries still pending after 3 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := allRunKeys(t, st)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs (-want +got), %d wanted, %d got:\n%s", len(want), len(got), diff)
	}
	failed, err := st.ListDeliveries(context.Background(), store.DeliveryListOptions{State: store.DeliveryFailed})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range failed.Deliveries {
		t.Errorf("delivery %s (%s) failed: %s", d.ID, d.Event, d.Outcome.Error)
	}
	mu.Lock()
	current.kill()
	mu.Unlock()
}

func send(client *http.Client, url, id, event string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderEvent, event)
	req.Header.Set(webhook.HeaderDelivery, id)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// allRunKeys returns the trigger keys of every run not asked to abort.
func allRunKeys(t *testing.T, st store.Runs) []string {
	t.Helper()
	var keys []string
	opts := store.ListOptions{Limit: store.MaxLimit}
	for {
		page, err := st.ListRuns(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Runs {
			if reason, _, ok := r.AbortRequested(); ok {
				t.Errorf("run %d (%s) asked to abort: %s", r.ID, r.Spec.TriggerKey, reason)
			}
			keys = append(keys, r.Spec.TriggerKey)
		}
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	sort.Strings(keys)
	return keys
}

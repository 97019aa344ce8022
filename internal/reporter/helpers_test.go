package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testclock "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/forge/github"
	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/transport"
)

const (
	testRepo = "acme/widget"
	testBase = "https://ci.example.com"
	baseSHA  = "b000000000000000000000000000000000000000"
	// waitLimit bounds every wait for a condition.
	waitLimit = 30 * time.Second
	// resyncEvery is the reporters' resync interval in tests, on their
	// fake clock.
	resyncEvery = time.Minute
)

// sha returns a distinct commit SHA for n.
func sha(n int) string { return fmt.Sprintf("%040x", 0xc0ffee000+n) }

// env is one test's world: a GitHub double behind the real client and
// transport chain, a real SQLite store, the configuration, and captured
// logs.
type env struct {
	t  testing.TB
	gh *githubtest.Server
	st *sqlite.Store
	// net is the clock of the transport chain and the double; ctrl the
	// reporters' (nil: the real clock).
	net  *testclock.FakeClock
	ctrl *testclock.FakeClock
	cfg  atomic.Pointer[config.Config]
	logs *logSink
	gc   *github.Client
	keys atomic.Int64
}

// newEnv returns an env whose configuration has jobs in testRepo. With
// realCtrl, reporters run on the real clock (so that their retries after
// errors happen without stepping a clock) and cannot be resynced.
func newEnv(t testing.TB, realCtrl bool, jobs ...config.Presubmit) *env {
	t.Helper()
	start := time.Now().Truncate(time.Second)
	e := &env{t: t, gh: githubtest.NewServer(t), net: testclock.NewFakeClock(start), logs: &logSink{}}
	if !realCtrl {
		e.ctrl = testclock.NewFakeClock(start)
	}
	e.gh.SetNow(e.net.Now)
	e.gh.AddRepo(testRepo)
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.st = st
	e.gc = e.client(e.gh.Client().Transport)
	e.setConfig(jobs...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range e.logs.all() {
				t.Logf("log: %s %s %v", r.level, r.msg, r.attrs)
			}
		}
		if u := e.gh.Unexpected(); len(u) > 0 {
			t.Errorf("calls to endpoints the double does not know: %+v", u)
		}
	})
	return e
}

// client returns a GitHub client for the double over the transport chain,
// sending requests through base.
func (e *env) client(base http.RoundTripper) *github.Client {
	e.t.Helper()
	rt := transport.New(transport.Options{
		Base:     base,
		Endpoint: e.gh.URL(),
		Tokens:   transport.StaticToken("ghp_test"),
		Clock:    e.net,
		Logger:   e.logger(),
	})
	gc, err := github.New(github.Options{Endpoint: e.gh.URL(), HTTPClient: &http.Client{Transport: rt}, BotLogin: githubtest.DefaultUser})
	if err != nil {
		e.t.Fatal(err)
	}
	return gc
}

func (e *env) logger() *slog.Logger { return slog.New(&logHandler{sink: e.logs}) }

// setConfig makes jobs the presubmits of testRepo.
func (e *env) setConfig(jobs ...config.Presubmit) {
	e.setRepo(&config.Repo{Presubmits: jobs})
}

// setRepo makes rc testRepo's configuration.
func (e *env) setRepo(rc *config.Repo) {
	e.cfg.Store(&config.Config{BaseURL: testBase, Repos: map[string]*config.Repo{testRepo: rc}})
}

// presubmit returns a presubmit called name reporting under context
// (empty: the name).
func presubmit(name, context string) config.Presubmit {
	var p config.Presubmit
	p.Name, p.Context, p.Run = name, context, "true"
	return p
}

// instance is a started Reporter.
type instance struct {
	*Reporter
	tr   *traceLog
	stop func()
}

// start runs a Reporter on e, with mod applied to its options, and waits
// until its first listing is done and reconciled.
func (e *env) start(mod func(*Options)) *instance {
	e.t.Helper()
	opts := Options{
		Store:  e.st,
		Forge:  e.gc,
		Config: e.cfg.Load,
		Logger: e.logger(),
		Resync: resyncEvery,
	}
	if e.ctrl != nil {
		opts.Clock = e.ctrl
	}
	if mod != nil {
		mod(&opts)
	}
	rep := New(opts)
	tr := newTraceLog()
	rep.trace = tr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rep.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	in := &instance{Reporter: rep, tr: tr, stop: stop}
	e.waitFor("the first listing", func() bool { return tr.snapshot().lists >= 1 })
	e.settle(in)
	return in
}

// settle waits until in's run feed has passed every write made so far and
// every key it queued has been reconciled since.
func (e *env) settle(in *instance) {
	e.t.Helper()
	rev, err := e.st.Revision(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitFor(fmt.Sprintf("the reporter to settle at revision %d", rev), func() bool {
		s := in.tr.snapshot()
		return s.rev >= rev && s.pending == 0
	})
}

// resync makes in list again, on its fake clock, and waits until the keys
// it queued are reconciled.
func (e *env) resync(in *instance) {
	e.t.Helper()
	n := in.tr.snapshot().lists
	e.ctrl.Step(resyncEvery)
	e.waitFor("a resync", func() bool { return in.tr.snapshot().lists > n })
	e.settle(in)
}

// waitFor polls cond until it holds, failing the test after waitLimit.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// pump advances clk by step whenever something waits on it, until the
// test ends: the transport's backoffs and rate-limit waits then pass
// without real waiting.
func (e *env) pump(clk *testclock.FakeClock, step time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if clk.HasWaiters() {
					clk.Step(step)
				}
			}
		}
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

// create stores a pending presubmit run of job on pull request pull at
// head, reporting under the job's configured context.
func (e *env) create(job string, pull int, head string) *run.Run {
	e.t.Helper()
	return e.createRun(&run.Run{Spec: run.Spec{
		Job:  job,
		Type: run.Presubmit,
		Refs: run.Refs{Repo: testRepo, BaseRef: "main", BaseSHA: baseSHA, Pull: pull, HeadSHA: head, HeadRef: "topic", Author: "alice"},
	}})
}

// createRun stores r, filling in what every run needs.
func (e *env) createRun(r *run.Run) *run.Run {
	e.t.Helper()
	if rc := e.cfg.Load().Repos[testRepo]; rc != nil && r.Spec.Context == "" {
		if p, ok := rc.Presubmit(r.Spec.Job); ok {
			r.Spec.Context = p.StatusContext()
		}
		if p, ok := rc.Postsubmit(r.Spec.Job); ok {
			r.Spec.Context = p.StatusContext()
		}
	}
	r.Spec.Cause = run.CauseEvent
	r.Spec.Script = "true"
	r.Spec.Timeout = time.Hour
	r.Spec.TriggerKey = fmt.Sprintf("test/%s/%d", r.Spec.Job, e.keys.Add(1))
	created, err := e.st.CreateRun(e.t.Context(), r)
	if err != nil {
		e.t.Fatalf("create run: %v", err)
	}
	return created
}

// to moves run id through the states between its state and state, as the
// runner would, ending with reason and message.
func (e *env) to(id run.ID, state run.State, reason, message string) {
	e.t.Helper()
	if err := advance(e.t.Context(), e.st, id, state, reason, message); err != nil {
		e.t.Fatal(err)
	}
}

// advance moves run id through the states between its state and state, as
// the runner would, ending with reason and message.
func advance(ctx context.Context, st store.Runs, id run.ID, state run.State, reason, message string) error {
	for _, step := range []run.State{run.Scheduled, run.Running, state} {
		err := update(ctx, st, id, func(r *run.Run) {
			if r.Status.State == state || !run.CanTransition(r.Status.State, step) {
				return
			}
			r.Status.State = step
			if step == state {
				r.Status.Reason, r.Status.Message = reason, message
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// update applies f to the status of run id and writes it, retrying
// conflicts for as long as they come.
func update(ctx context.Context, st store.Runs, id run.ID, f func(*run.Run)) error {
	for {
		err := store.RetryOnConflict(ctx, func() error {
			cur, err := st.GetRun(ctx, id)
			if err != nil {
				return err
			}
			f(cur)
			_, err = st.UpdateRunStatus(ctx, cur)
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			if err != nil {
				return fmt.Errorf("update run %d: %w", id, err)
			}
			return nil
		}
	}
}

// abort asks run id to abort for reason, as the trigger does.
func (e *env) abort(id run.ID, reason string) {
	e.t.Helper()
	err := store.RetryOnConflict(e.t.Context(), func() error {
		cur, err := e.st.GetRun(e.t.Context(), id)
		if err != nil {
			return err
		}
		if !cur.RequestAbort(reason, "") {
			return nil
		}
		_, err = e.st.UpdateRun(e.t.Context(), cur)
		return err
	})
	if err != nil {
		e.t.Fatalf("abort run %d: %v", id, err)
	}
}

func (e *env) get(id run.ID) *run.Run {
	e.t.Helper()
	r, err := e.st.GetRun(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("get run %d: %v", id, err)
	}
	return r
}

// reported returns what run id records as shown by the github reporter.
func (e *env) reported(id run.ID) string {
	e.t.Helper()
	return e.get(id).Status.Reported[DefaultName]
}

// waitReported waits until run id records state as shown.
func (e *env) waitReported(id run.ID, state string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("run %d to record %s", id, state), func() bool { return e.reported(id) == state })
}

// write is one commit status the double accepted.
type write struct {
	SHA         string
	Context     string `json:"context"`
	State       string `json:"state"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
	At          time.Time
}

// run returns the ID in w's target URL, or 0.
func (w write) run() run.ID {
	var id run.ID
	_, _ = fmt.Sscanf(w.TargetURL, testBase+"/runs/%d", &id)
	return id
}

// writes returns the commit statuses the double accepted, in order.
func (e *env) writes() []write {
	e.t.Helper()
	var out []write
	for _, c := range e.gh.Calls() {
		rest, ok := strings.CutPrefix(c.Path, "/repos/"+testRepo+"/statuses/")
		if c.Method != http.MethodPost || !ok || c.Status != http.StatusCreated {
			continue
		}
		w := write{SHA: rest, At: c.Time}
		if err := json.Unmarshal([]byte(c.Body), &w); err != nil {
			e.t.Fatalf("status body %q: %v", c.Body, err)
		}
		out = append(out, w)
	}
	return out
}

// postCount returns how many status writes the double received, accepted
// or not.
func (e *env) postCount() int {
	return e.gh.CallCount(http.MethodPost, "/repos/"+testRepo+"/statuses/")
}

// shows returns the state the double shows for context on sha, or "".
func (e *env) shows(sha, context string) githubtest.Status {
	for _, st := range e.gh.LatestStatuses(testRepo, sha) {
		if st.Context == context {
			return st
		}
	}
	return githubtest.Status{}
}

// traceLog is the tracer of tests: it tells when a reporter has caught up.
type traceLog struct {
	mu sync.Mutex
	// mu guards everything below.
	seq int64
	// pending maps a queued key to the sequence number of its latest
	// enqueue, until a reconcile that started after it has finished.
	pending    map[Key]int64
	rev        int64
	lists      int
	reconciles int
	errs       []error
}

func newTraceLog() *traceLog { return &traceLog{pending: make(map[Key]int64)} }

func (l *traceLog) enqueued(k Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.pending[k] = l.seq
}

func (l *traceLog) watched(rev int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rev = max(l.rev, rev)
}

func (l *traceLog) listed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lists++
}

func (l *traceLog) started(Key) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return l.seq
}

func (l *traceLog) finished(k Key, seq int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reconciles++
	if err != nil {
		l.errs = append(l.errs, err)
		if !controller.IsTerminal(err) {
			// The controller retries the key.
			return
		}
	}
	if p, ok := l.pending[k]; ok && seq > p {
		delete(l.pending, k)
	}
}

// traceState is a snapshot of a traceLog.
type traceState struct {
	rev        int64
	lists      int
	pending    int
	reconciles int
	errs       []error
}

func (l *traceLog) snapshot() traceState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return traceState{rev: l.rev, lists: l.lists, pending: len(l.pending), reconciles: l.reconciles, errs: append([]error(nil), l.errs...)}
}

// logSink collects log records.
type logSink struct {
	mu   sync.Mutex
	recs []logRecord // mu guards recs
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (s *logSink) all() []logRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]logRecord(nil), s.recs...)
}

// atLeast returns the records at level or above.
func (s *logSink) atLeast(level slog.Level) []logRecord {
	var out []logRecord
	for _, r := range s.all() {
		if r.level >= level {
			out = append(out, r)
		}
	}
	return out
}

// withMessage returns the records whose message is msg.
func (s *logSink) withMessage(msg string) []logRecord {
	var out []logRecord
	for _, r := range s.all() {
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

// logHandler is a slog.Handler writing into a logSink.
type logHandler struct {
	sink  *logSink
	attrs []slog.Attr
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: make(map[string]string)}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	h.sink.recs = append(h.sink.recs, rec)
	return nil
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{sink: h.sink, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }

package runner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// env is a runner over a real SQLite file and the real local executor.
type env struct {
	t     testing.TB
	store *sqlite.Store
	exec  *local.Executor
	cfg   *config.Config
	dir   string
	seq   atomic.Int64
}

func newEnv(t testing.TB, cfg *config.Config) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if cfg == nil {
		cfg = config.Default()
	}
	e := &env{t: t, store: st, cfg: cfg, dir: dir}
	e.exec = e.newExecutor()
	return e
}

func (e *env) newExecutor() *local.Executor {
	x := local.New(local.Options{
		WorkDir: filepath.Join(e.dir, "work"), LogDir: filepath.Join(e.dir, "logs"),
		CacheDir: filepath.Join(e.dir, "cache", "git"),
	})
	e.t.Cleanup(func() { _ = x.Shutdown(context.Background()) })
	return x
}

// start runs a runner until the test ends, or until the returned function
// is called.
func (e *env) start(x executor.Executor, clk clock.WithTicker) (stop func()) {
	e.t.Helper()
	return e.startAs("", x, clk)
}

// startAs is start for the runner of the named replica.
func (e *env) startAs(replica string, x executor.Executor, clk clock.WithTicker) (stop func()) {
	e.t.Helper()
	r := runner.New(runner.Options{
		Store: e.store, Executor: x, Clock: clk, Logger: slog.New(slog.DiscardHandler),
		Config: func() *config.Config { return e.cfg }, Replica: replica,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("runner.Run: %v", err)
		}
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *env) create(job, script string, timeout time.Duration) *run.Run {
	e.t.Helper()
	r, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{
		Job: job, Type: run.Periodic, Refs: run.Refs{Repo: "acme/widget"},
		Cause: run.CauseCLI, Script: script, Timeout: timeout,
		TriggerKey: fmt.Sprintf("test/%s/%d", job, e.seq.Add(1)),
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// waitState polls the store until run id is in a terminal state (or in
// want, if given) and returns it.
func (e *env) waitState(id run.ID, want run.State) *run.Run {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := e.store.GetRun(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if r.Status.State == want {
			return r
		}
		if r.Status.State.Terminal() {
			e.t.Fatalf("run %d ended %s (%s: %s), want %s", id, r.Status.State, r.Status.Reason, r.Status.Message, want)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %d still %s, want %s", id, r.Status.State, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(e.exec, nil)
	tests := []struct {
		script string
		state  run.State
		reason string
	}{
		{"true", run.Success, ""},
		{"echo hello; exit 3", run.Failure, runner.ReasonExited},
		{"false; echo not reached", run.Failure, runner.ReasonExited},
	}
	for _, tt := range tests {
		r := e.create("outcome", tt.script, time.Minute)
		got := e.waitState(r.ID, tt.state)
		if got.Status.Reason != tt.reason {
			t.Errorf("%q: reason %q, want %q", tt.script, got.Status.Reason, tt.reason)
		}
		if got.Status.StartedAt == nil || got.Status.FinishedAt == nil || got.Status.LogPath == "" {
			t.Errorf("%q: status missing times or log: %+v", tt.script, got.Status)
		}
	}
}

func TestInfrastructureFailureIsError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(e.exec, nil)
	r, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{
		Job: "unit", Type: run.Postsubmit, Cause: run.CauseEvent, Script: "true", Timeout: time.Minute,
		Refs:       run.Refs{Repo: "acme/widget", CloneURL: filepath.Join(t.TempDir(), "no-such-repo"), BaseRef: "main"},
		TriggerKey: "clone-fails",
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := e.waitState(r.ID, run.Error)
	if got.Status.Reason != executor.ReasonClone {
		t.Errorf("reason %q, want %q", got.Status.Reason, executor.ReasonClone)
	}
}

// TestMaxConcurrency runs 50 runs of a job with max_concurrency 2 and
// checks, from inside the jobs' own processes, that no more than 2 ever
// ran at once.
func TestMaxConcurrency(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Repos: map[string]*config.Repo{"acme/widget": {
		Periodics: []config.Periodic{{JobBase: config.JobBase{Name: "capped", Run: "true", MaxConcurrency: 2}, Interval: config.Duration{Duration: time.Hour}}},
	}}}
	e := newEnv(t, cfg)
	// The jobs count each other through a directory of the host, which
	// the sandbox would hide from them.
	e.exec = local.New(local.Options{WorkDir: filepath.Join(e.dir, "work"), LogDir: filepath.Join(e.dir, "logs"), Sandbox: local.SandboxOff})
	t.Cleanup(func() { _ = e.exec.Shutdown(context.Background()) })
	live := filepath.Join(e.dir, "live")
	if err := os.MkdirAll(live, 0o755); err != nil {
		t.Fatal(err)
	}
	counts := filepath.Join(e.dir, "counts")
	// Each run marks itself live, counts the live runs, works a little,
	// and unmarks itself.
	script := fmt.Sprintf(`touch %[1]s/$BUILD_ID
ls %[1]s | wc -l >> %[2]s
sleep 0.02
rm %[1]s/$BUILD_ID`, live, counts)
	var ids []run.ID
	for range 50 {
		ids = append(ids, e.create("capped", script, time.Minute).ID)
	}
	e.start(e.exec, nil)
	for _, id := range ids {
		e.waitState(id, run.Success)
	}
	data, err := os.ReadFile(counts)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(data))
	if len(lines) != 50 {
		t.Fatalf("%d runs counted, want 50", len(lines))
	}
	maxSeen := 0
	for _, l := range lines {
		n, _ := strconv.Atoi(l)
		maxSeen = max(maxSeen, n)
	}
	if maxSeen > 2 || maxSeen < 1 {
		t.Errorf("at most %d runs were live at once, want at most 2 (and at least 1)", maxSeen)
	}
}

func TestTimeoutAbortsAndKills(t *testing.T) {
	t.Parallel()
	clk := clocktesting.NewFakeClock(time.Now())
	e := newEnv(t, nil)
	e.start(e.exec, clk)
	r := e.create("hang", "sleep 1000 & sleep 1000; wait", 10*time.Minute)
	running := e.waitState(r.ID, run.Running)
	waitFor(t, "process group to exist", func() bool { return alive(t, running) })
	clk.Step(9 * time.Minute)
	if got, _ := e.store.GetRun(context.Background(), r.ID); got.Status.State != run.Running {
		t.Fatalf("state %s before the timeout, want running", got.Status.State)
	}
	clk.Step(time.Minute)
	got := e.waitState(r.ID, run.Aborted)
	if got.Status.Reason != runner.ReasonTimeout {
		t.Errorf("reason %q, want %q", got.Status.Reason, runner.ReasonTimeout)
	}
	waitFor(t, "process group to be gone", func() bool { return !alive(t, running) })
}

func TestAbortRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start(e.exec, nil)
	r := e.create("long", "sleep 1000", time.Hour)
	running := e.waitState(r.ID, run.Running)
	requestAbort(t, e.store, r.ID, "ByUser")
	got := e.waitState(r.ID, run.Aborted)
	if got.Status.Reason != "ByUser" {
		t.Errorf("reason %q, want ByUser", got.Status.Reason)
	}
	waitFor(t, "process group to be gone", func() bool { return !alive(t, running) })
}

func TestAbortBeforeStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := e.create("never", "touch should-not-exist", time.Hour)
	requestAbort(t, e.store, r.ID, "Superseded")
	e.start(e.exec, nil)
	got := e.waitState(r.ID, run.Aborted)
	if got.Status.StartedAt != nil || got.Status.LogPath != "" {
		t.Errorf("an aborted pending run was started: %+v", got.Status)
	}
}

// TestInterruptedAfterRestart stops a runner while its run is under way
// and leaves the run's processes behind, as a crash would; a new runner
// with a new executor must end the run as error/Interrupted and kill what
// was left.
func TestInterruptedAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	stop := e.start(e.exec, nil)
	r := e.create("long", "sleep 1000 & sleep 1000; wait", time.Hour)
	running := e.waitState(r.ID, run.Running)
	waitFor(t, "process group to exist", func() bool { return alive(t, running) })
	stop() // the first executor is not shut down: its processes live on

	e.start(e.newExecutor(), nil)
	got := e.waitState(r.ID, run.Error)
	if got.Status.Reason != runner.ReasonInterrupted {
		t.Errorf("reason %q, want %q", got.Status.Reason, runner.ReasonInterrupted)
	}
	waitFor(t, "orphaned process group to be gone", func() bool { return !alive(t, running) })
}

// TestInterruptedOnNewLeader is TestInterruptedAfterRestart across a
// leader change: the run records the replica that started it, and the
// new leader's runner ends it as error/Interrupted naming that replica.
func TestInterruptedOnNewLeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	stop := e.startAs("ci-1", e.exec, nil)
	r := e.create("long", "sleep 1000", time.Hour)
	running := e.waitState(r.ID, run.Running)
	if running.Status.Replica != "ci-1" {
		t.Errorf("status.replica: got %q, want ci-1", running.Status.Replica)
	}
	stop()

	e.startAs("ci-2", e.newExecutor(), nil)
	got := e.waitState(r.ID, run.Error)
	if got.Status.Reason != runner.ReasonInterrupted || !strings.Contains(got.Status.Message, "replica ci-1") {
		t.Errorf("got %s %q, want %s naming replica ci-1", got.Status.Reason, got.Status.Message, runner.ReasonInterrupted)
	}
}

func requestAbort(t *testing.T, st store.Runs, id run.ID, reason string) {
	t.Helper()
	err := store.RetryOnConflict(context.Background(), func() error {
		r, err := st.GetRun(context.Background(), id)
		if err != nil {
			return err
		}
		if !r.RequestAbort(reason, "") {
			return errors.New("run cannot be aborted")
		}
		_, err = st.UpdateRun(context.Background(), r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// alive reports whether any process of r's execution is alive.
func alive(t *testing.T, r *run.Run) bool {
	t.Helper()
	ok, err := local.Alive(r.Status.Handle)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestMachineWideLimit runs jobs of two repositories under
// local.max_concurrency 1: one at a time, repositories and jobs in turn,
// oldest first within a job, and a waiting run says why on its status.
func TestMachineWideLimit(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Local.MaxConcurrency = 1
	e := newEnv(t, cfg)
	// The jobs meet the test at a FIFO in its temporary directory, which a
	// sandboxed job, with a /tmp of its own, would not see: the test is of
	// admission, not of the sandbox.
	e.exec = local.New(local.Options{
		WorkDir: filepath.Join(e.dir, "work"), LogDir: filepath.Join(e.dir, "logs"),
		Sandbox: local.SandboxOff,
	})
	t.Cleanup(func() { _ = e.exec.Shutdown(context.Background()) })
	order := filepath.Join(e.dir, "order")
	gate := filepath.Join(e.dir, "gate")
	if out, err := exec.Command("mkfifo", gate).CombinedOutput(); err != nil {
		t.Fatalf("mkfifo: %v %s", err, out)
	}
	mk := func(repo, job, script string) run.ID {
		r, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{
			Job: job, Type: run.Periodic, Refs: run.Refs{Repo: repo},
			Cause: run.CauseCLI, Script: script, Timeout: time.Minute,
			TriggerKey: fmt.Sprintf("test/%s/%s/%d", repo, job, e.seq.Add(1)),
		}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	record := fmt.Sprintf(`echo "$JOB_NAME $BUILD_ID" >> %s`, order)
	// The first run holds the only slot until the test opens the gate.
	first := mk("acme/one", "a", record+"\nread x < "+gate)
	var want []string
	want = append(want, fmt.Sprintf("a %d", first))
	var a, b, c []run.ID
	for range 4 {
		a = append(a, mk("acme/one", "a", record))
	}
	for range 2 {
		b = append(b, mk("acme/one", "b", record))
		c = append(c, mk("acme/two", "c", record))
	}
	e.start(e.exec, nil)
	e.waitState(first, run.Running)
	// More runs of a arrive while the slot is taken.
	for range 2 {
		a = append(a, mk("acme/one", "a", record))
	}
	waiting := c[0]
	waitFor(t, "a waiting run to say why", func() bool {
		r, err := e.store.GetRun(context.Background(), waiting)
		if err != nil {
			t.Fatal(err)
		}
		cond, ok := r.Status.Condition(runner.ConditionAdmitted)
		return r.Status.State == run.Pending && ok && !cond.Status && cond.Reason == runner.ReasonWaitingForSlot &&
			strings.Contains(cond.Message, "local.max_concurrency")
	})
	if err := os.WriteFile(gate, []byte("go\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// a's first run was served; then c, b, c, a, b, a, a, a, a.
	for _, id := range []run.ID{c[0], b[0], c[1], a[0], b[1], a[1], a[2], a[3], a[4], a[5]} {
		r, err := e.store.GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s %d", r.Spec.Job, id))
	}
	for _, id := range append(append(a, b...), c...) {
		e.waitState(id, run.Success)
	}
	data, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(string(data)), "\n")); diff != "" {
		t.Errorf("order of the runs (-want +got):\n%s", diff)
	}
}

// TestSandboxUnavailable runs on a machine without bubblewrap: a
// presubmit ends as error SandboxUnavailable and never runs, a periodic
// runs with the Sandboxed condition false saying why.
func TestSandboxUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.exec = local.New(local.Options{
		WorkDir: filepath.Join(e.dir, "work"), LogDir: filepath.Join(e.dir, "logs"),
		BwrapPath: filepath.Join(e.dir, "no-bwrap"),
	})
	t.Cleanup(func() { _ = e.exec.Shutdown(context.Background()) })
	pre, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{
		Job: "unit", Type: run.Presubmit, Refs: run.Refs{Repo: "acme/widget", Pull: 1, HeadSHA: "abc"},
		Cause: run.CauseEvent, Script: "echo ran", Timeout: time.Minute, TriggerKey: "presubmit",
	}})
	if err != nil {
		t.Fatal(err)
	}
	per := e.create("nightly", "echo ran", time.Minute)
	e.start(e.exec, nil)

	got := e.waitState(pre.ID, run.Error)
	if got.Status.Reason != local.ReasonSandboxUnavailable || !strings.Contains(got.Status.Message, "install bubblewrap") {
		t.Errorf("presubmit ended %s: %s, want reason %s saying how to install bubblewrap", got.Status.Reason, got.Status.Message, local.ReasonSandboxUnavailable)
	}
	if got.Status.LogPath != "" {
		t.Errorf("the refused presubmit has a log %s: it must not have run", got.Status.LogPath)
	}
	got = e.waitState(per.ID, run.Success)
	c, ok := got.Status.Condition(local.ConditionSandboxed)
	if !ok || c.Status || c.Reason != local.ReasonSandboxUnavailable {
		t.Errorf("periodic's Sandboxed condition: got %+v (found %v), want false with reason %s", c, ok, local.ReasonSandboxUnavailable)
	}
}

package periodic

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// waitTimeout bounds every wait in these tests; reaching it is a failure.
const waitTimeout = 30 * time.Second

// start is the fake clock's starting time: half a minute past midnight,
// so that per-minute schedules are not due at once.
var start = time.Date(2026, 3, 1, 0, 0, 30, 0, time.UTC)

// env is a store in a real SQLite file, a fake clock it shares with the
// controllers under test, and the configuration they read.
type env struct {
	t     testing.TB
	store *sqlite.Store
	clk   *clocktesting.FakeClock
	cfg   atomic.Pointer[config.Config]
	dir   string
}

func newEnv(t testing.TB, yaml string) *env {
	t.Helper()
	e := &env{t: t, clk: clocktesting.NewFakeClock(start), dir: t.TempDir()}
	st, err := sqlite.Open(context.Background(), filepath.Join(e.dir, "lockstep.db"),
		sqlite.WithClock(e.clk), sqlite.WithPollInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.setConfig(yaml)
	return e
}

func (e *env) setConfig(yaml string) {
	e.t.Helper()
	c, err := config.Parse(strings.NewReader(yaml), "test.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		e.t.Fatalf("Validate: %v\n%s", err, yaml)
	}
	e.cfg.Store(c)
}

func (e *env) config() *config.Config { return e.cfg.Load() }

// quietLogger discards what the controllers log, except errors.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// scheduler is a Scheduler under test and its metrics.
type scheduler struct {
	*Scheduler
	reg *prometheus.Registry
}

// fired returns how many due times s handled with the outcome.
func (s *scheduler) fired(outcome string) int {
	return int(testutil.ToFloat64(s.metrics.fires.WithLabelValues(outcome)))
}

// startScheduler runs a Scheduler on e until the test ends or the
// returned stop is called.
func (e *env) startScheduler(opts Options) (*scheduler, func()) {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	opts.Store = e.store
	opts.Config = e.config
	opts.Clock = e.clk
	opts.Registerer = reg
	if opts.Resync == 0 {
		opts.Resync = 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var stopped atomic.Bool
	stop := func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Scheduler.Run: %v", err)
		}
	}
	e.t.Cleanup(stop)
	return &scheduler{Scheduler: s, reg: reg}, stop
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// schedule returns the stored schedule of job in repo, nil when there is
// none yet.
func (e *env) schedule(repo, job string) *store.Schedule {
	e.t.Helper()
	sc, err := e.store.GetSchedule(context.Background(), repo, job)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return sc
}

// caughtUp waits until every due time of the jobs passed at the clock's
// now is handled: each schedule's next due time is in the future.
func (e *env) caughtUp(repo string, jobs ...string) {
	e.t.Helper()
	now := e.clk.Now()
	for _, j := range jobs {
		waitFor(e.t, "schedule "+j+" to pass "+now.String(), func() bool {
			sc := e.schedule(repo, j)
			return sc != nil && sc.Next.After(now)
		})
	}
}

// runs returns every run of job in repo, oldest first.
func (e *env) runs(repo, job string) []*run.Run {
	e.t.Helper()
	var out []*run.Run
	opts := store.ListOptions{Repo: repo, Job: job, Limit: store.MaxLimit}
	for {
		page, err := e.store.ListRuns(context.Background(), opts)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, page.Runs...)
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// finish moves run id through the states to state, as the runner would,
// recording output as what the job wrote to its build file.
func (e *env) finish(id run.ID, state run.State, output string) *run.Run {
	e.t.Helper()
	ctx := context.Background()
	r, err := e.store.GetRun(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, st := range []run.State{run.Scheduled, run.Running, state} {
		if r.Status.State == st {
			continue
		}
		r.Status.State = st
		if st.Terminal() {
			now := e.clk.Now()
			r.Status.FinishedAt = &now
			r.Status.BuildOutput = output
		}
		if r, err = e.store.UpdateRunStatus(ctx, r); err != nil {
			e.t.Fatalf("move run %d to %s: %v", id, st, err)
		}
	}
	return r
}

// newGitRepo returns a local git repository with one commit on main, for
// jobs the local executor clones.
func newGitRepo(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"commit", "-q", "--allow-empty", "-m", "init"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
			"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
		)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return dir
}

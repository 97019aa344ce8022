package builds

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

const waitTimeout = 30 * time.Second

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// testConfig has a build postsubmit, a gate periodic and a marker.
const testConfig = `repos:
  acme/kops:
    postsubmits:
      - name: build
        run: make build
        produces_build: true
      - name: lint
        run: make lint
    periodics:
      - name: updown
        interval: 1h
        run: make updown
        build: {branch: main}
      - name: soak
        interval: 24h
        run: make soak
        build: {marker: latest-green}
markers:
  - name: latest-green
    repo: acme/kops
    branch: main
    gate: updown
    max_age: 48h
`

type env struct {
	t     testing.TB
	store *sqlite.Store
	clk   *clocktesting.FakeClock
	cfg   atomic.Pointer[config.Config]
	dir   string
	seq   atomic.Int64
}

func newEnv(t testing.TB, yaml string) *env {
	t.Helper()
	e := &env{t: t, clk: clocktesting.NewFakeClock(t0), dir: t.TempDir()}
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
		e.t.Fatalf("Validate: %v", err)
	}
	e.cfg.Store(c)
}

func (e *env) config() *config.Config { return e.cfg.Load() }

// newController returns a Controller on e, not running.
func (e *env) newController(reg prometheus.Registerer) *Controller {
	e.t.Helper()
	c, err := New(Options{
		Store: e.store, Config: e.config, Clock: e.clk, Registerer: reg,
		MarkerDir: filepath.Join(e.dir, "markers"),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// start runs c until the test ends.
func (e *env) start(c *Controller) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Controller.Run: %v", err)
		}
	})
}

// createRun creates a run of job, a postsubmit on main at sha unless
// edit changes it.
func (e *env) createRun(job string, edit func(*run.Run)) *run.Run {
	e.t.Helper()
	n := e.seq.Add(1)
	r := &run.Run{Spec: run.Spec{
		Job: job, Type: run.Postsubmit, Cause: run.CauseEvent, Script: "make",
		Refs:       run.Refs{Repo: "acme/kops", BaseRef: "main", BaseSHA: fmt.Sprintf("sha%d", n)},
		TriggerKey: fmt.Sprintf("test/%s/%d", job, n),
	}}
	if edit != nil {
		edit(r)
	}
	got, err := e.store.CreateRun(context.Background(), r)
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

// finish moves run id to state, recording output as its build file.
func (e *env) finish(id run.ID, state run.State, output string) *run.Run {
	e.t.Helper()
	ctx := context.Background()
	r, err := e.store.GetRun(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, st := range []run.State{run.Scheduled, run.Running, state} {
		r.Status.State = st
		if st.Terminal() {
			r.Status.BuildOutput = output
		}
		if r, err = e.store.UpdateRunStatus(ctx, r); err != nil {
			e.t.Fatalf("move run %d to %s: %v", id, st, err)
		}
	}
	return r
}

// build makes a successful build run of version and records its build
// directly in the store.
func (e *env) build(version string) *store.Build {
	e.t.Helper()
	r := e.finish(e.createRun("build", nil).ID, run.Success, version)
	b, err := e.store.CreateBuild(context.Background(), &store.Build{
		Repo: "acme/kops", Branch: "main", Commit: r.Spec.Refs.BaseSHA, Version: version, Job: "build", Run: r.ID,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// gateRun makes a run of the gate testing build b, finished in state.
func (e *env) gateRun(b *store.Build, state run.State) *run.Run {
	e.t.Helper()
	r := e.createRun("updown", func(r *run.Run) {
		r.Spec.Type, r.Spec.Cause = run.Periodic, run.CauseCron
		r.Spec.Refs = run.Refs{Repo: "acme/kops", BaseRef: "main"}
		r.Spec.Build = &run.BuildUnderTest{BuildID: b.ID, Version: b.Version, Commit: b.Commit}
	})
	return e.finish(r.ID, state, "")
}

func (e *env) marker() *store.Marker {
	e.t.Helper()
	m, err := e.store.GetMarker(context.Background(), "latest-green")
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

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

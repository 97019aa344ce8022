package runner_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
)

// TestRoutesByExecutorName runs each run on the executor its spec names:
// the default one for no name and "local", the named one otherwise, and
// ends a run naming an executor lockstep does not have as error.
func TestRoutesByExecutorName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	other := local.New(local.Options{WorkDir: filepath.Join(e.dir, "other-work"), LogDir: filepath.Join(e.dir, "other-logs")})
	t.Cleanup(func() { _ = other.Shutdown(context.Background()) })
	r := runner.New(runner.Options{
		Store: e.store, Executor: e.exec, Logger: slog.New(slog.DiscardHandler),
		Executors: map[string]executor.Executor{"other": other},
		Config:    func() *config.Config { return e.cfg },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	create := func(name string) run.ID {
		rn, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{
			Job: "j", Type: run.Periodic, Refs: run.Refs{Repo: "acme/widget"}, Cause: run.CauseCLI,
			Script: "true", Timeout: time.Minute, Executor: name,
			TriggerKey: fmt.Sprintf("route/%s/%d", name, e.seq.Add(1)),
		}})
		if err != nil {
			t.Fatal(err)
		}
		return rn.ID
	}
	for _, tc := range []struct{ name, logDir string }{
		{"", "logs"}, {"local", "logs"}, {"other", "other-logs"},
	} {
		got := e.waitState(create(tc.name), run.Success)
		if want := filepath.Join(e.dir, tc.logDir); filepath.Dir(got.Status.LogPath) != want {
			t.Errorf("executor %q: log %s, want it under %s", tc.name, got.Status.LogPath, want)
		}
	}
	got := e.waitState(create("nope"), run.Error)
	if got.Status.Reason != executor.ReasonUnknownExecutor || !strings.Contains(got.Status.Message, `"nope"`) {
		t.Errorf("run on executor nope ended %s/%s: %s, want error/%s naming it", got.Status.State, got.Status.Reason, got.Status.Message, executor.ReasonUnknownExecutor)
	}
}

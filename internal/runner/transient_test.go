package runner_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
)

// flaky is the local executor behind an API that fails now and then: its
// Status fails for the first statusFails calls on a scheduled run, and
// its Start refuses the first startRetries calls with a RetryError.
type flaky struct {
	executor.Executor
	statusFails, startRetries atomic.Int64
}

func (f *flaky) Status(ctx context.Context, r *run.Run) (executor.Outcome, error) {
	if r.Status.State == run.Scheduled && f.statusFails.Add(-1) >= 0 {
		return executor.Outcome{}, errors.New("the API server is away")
	}
	return f.Executor.Status(ctx, r)
}

func (f *flaky) Start(ctx context.Context, r *run.Run, notify func()) (executor.Started, error) {
	if f.startRetries.Add(-1) >= 0 {
		return executor.Started{}, &executor.RetryError{Reason: "QuotaExceeded", Err: errors.New("pods exceeded quota"), After: 10 * time.Millisecond}
	}
	return f.Executor.Start(ctx, r, notify)
}

// TestTransientStartErrors retries a scheduled run whose Status fails for
// a reason other than ErrUnknown, and whose Start is refused for a reason
// that may pass, instead of ending it as error/StartFailed.
func TestTransientStartErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	f := &flaky{Executor: e.exec}
	f.statusFails.Store(3)
	f.startRetries.Store(3)
	e.start(f, nil)
	r := e.create("j", "true", time.Minute)
	got := e.waitState(r.ID, run.Success)
	if got.Status.State != run.Success {
		t.Fatalf("run ended %s/%s %q, want success", got.Status.State, got.Status.Reason, got.Status.Message)
	}
	c, ok := got.Status.Condition(runner.ConditionStarted)
	if !ok || !c.Status {
		t.Errorf("condition %s = %+v, want true after the refused starts", runner.ConditionStarted, c)
	}
	if f.statusFails.Load() >= 0 || f.startRetries.Load() >= 0 {
		t.Errorf("the flaky executor was not asked enough: %d status failures and %d refusals left", f.statusFails.Load(), f.startRetries.Load())
	}
}

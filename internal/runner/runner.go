// Package runner is the run reconciler: it admits pending runs under their
// job's max_concurrency, starts them on an executor, enforces timeouts,
// carries out abort requests and records each outcome. It is the only
// writer of a run's state.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Reasons the runner records on runs it ends.
const (
	ReasonInterrupted = "Interrupted" // lockstep stopped while the run was under way
	ReasonTimeout     = "Timeout"     // the run outlived its job's timeout
	ReasonExited      = "ScriptExited"
	ReasonCanceled    = "Canceled" // the execution was canceled outside lockstep
)

// Condition types the runner sets.
const (
	ConditionAdmitted = "Admitted"
)

// Options configure a Runner. Store, Executor and Config are required.
type Options struct {
	Store store.Runs
	// Executor runs the runs whose spec names no executor, or "local".
	Executor executor.Executor
	// Executors maps other executor names (run.Spec.Executor, from a
	// job's `executor:`) to the executors that run them. A run naming an
	// executor found in neither ends as error/UnknownExecutor.
	Executors map[string]executor.Executor
	// Config returns the current configuration; the runner reads each
	// job's max_concurrency from it at admission time.
	Config func() *config.Config
	Clock  clock.WithTicker
	Logger *slog.Logger
	// Workers is how many runs are reconciled at once; default 8.
	Workers int
	// AtCapacityRetry is how soon a run refused admission is looked at
	// again if nothing wakes it earlier; default 30 s. A finishing run
	// wakes the pending runs of its job at once.
	AtCapacityRetry time.Duration
	// Resync is how often every unfinished run is listed again; default
	// five minutes.
	Resync time.Duration
	// MetricsProvider and OnError, if set, receive the workqueue's
	// metrics and every reconcile error.
	MetricsProvider workqueue.MetricsProvider
	OnError         func(error)
}

// Runner is the run reconciler. Create it with New and call Run.
type Runner struct {
	opts Options
	ctrl *controller.Controller[run.ID]
	log  *slog.Logger
	// from is the store revision read when Run started; the watch
	// begins there.
	from int64

	// admitting serializes admission per job, so that counting the job's
	// active runs and admitting one more is atomic. lockstep runs one
	// runner per store (on the elected leader at scale), so an in-process
	// lock suffices.
	admitting sync.Map // "repo/job" → *sync.Mutex
}

// New returns a Runner.
func New(opts Options) *Runner {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.AtCapacityRetry <= 0 {
		opts.AtCapacityRetry = 30 * time.Second
	}
	r := &Runner{opts: opts, log: opts.Logger.With("controller", "runner")}
	r.ctrl = controller.New(controller.Options[run.ID]{
		Name:       "runner",
		Reconciler: r,
		Workers:    opts.Workers,
		Clock:      opts.Clock,
		Resync:     opts.Resync,
		Logger:     opts.Logger,
		Sources:    []controller.Source[run.ID]{r.watch},
		List:       r.listUnfinished,

		MetricsProvider: opts.MetricsProvider,
		OnError:         opts.OnError,
	})
	return r
}

// Run reconciles runs until ctx is done.
func (r *Runner) Run(ctx context.Context) error {
	// The watch starts from the revision read before the first listing,
	// so that every write is seen by one or the other.
	rev, err := r.opts.Store.Revision(ctx)
	if err != nil {
		return fmt.Errorf("runner: read store revision: %w", err)
	}
	r.from = rev
	return r.ctrl.Run(ctx)
}

// Enqueue asks the runner to look at run id soon.
func (r *Runner) Enqueue(id run.ID) { r.ctrl.Add(id) }

// watch feeds the runner every run written since Run started.
func (r *Runner) watch(ctx context.Context, enqueue func(run.ID)) error {
	return r.opts.Store.WatchRuns(ctx, r.from, func(ev store.RunEvent) error {
		enqueue(ev.Run.ID)
		return nil
	})
}

// listUnfinished enqueues every run that is not finished: at start this
// finds the runs a previous process left running.
func (r *Runner) listUnfinished(ctx context.Context, enqueue func(run.ID)) error {
	opts := store.ListOptions{State: []run.State{run.Pending, run.Scheduled, run.Running}, Limit: store.MaxLimit}
	for {
		page, err := r.opts.Store.ListRuns(ctx, opts)
		if err != nil {
			return fmt.Errorf("list unfinished runs: %w", err)
		}
		for _, rn := range page.Runs {
			enqueue(rn.ID)
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// Reconcile moves run id one step forward.
func (r *Runner) Reconcile(ctx context.Context, id run.ID) (controller.Result, error) {
	rn, err := r.opts.Store.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	switch rn.Status.State {
	case run.Pending:
		return r.syncPending(ctx, rn)
	case run.Scheduled:
		return r.syncScheduled(ctx, rn)
	case run.Running:
		return r.syncRunning(ctx, rn)
	default:
		return controller.Result{}, nil
	}
}

func (r *Runner) syncPending(ctx context.Context, rn *run.Run) (controller.Result, error) {
	if reason, msg, ok := rn.AbortRequested(); ok {
		return controller.Result{}, r.finish(ctx, rn, run.Aborted, reason, msg, executor.Outcome{})
	}
	max := r.maxConcurrency(rn)
	mu := r.admissionLock(rn)
	mu.Lock()
	defer mu.Unlock()
	if max > 0 {
		active, err := r.opts.Store.ListRuns(ctx, store.ListOptions{
			Repo: rn.Spec.Refs.Repo, Job: rn.Spec.Job,
			State: []run.State{run.Scheduled, run.Running}, Limit: max,
		})
		if err != nil {
			return controller.Result{}, fmt.Errorf("count active runs of %s: %w", rn.Spec.Job, err)
		}
		if len(active.Runs) >= max {
			_, _, err := r.update(ctx, rn.ID, func(cur *run.Run) bool {
				return cur.Status.State == run.Pending && cur.Status.SetCondition(run.Condition{
					Type: ConditionAdmitted, Status: false, Reason: "AtCapacity",
					Message: fmt.Sprintf("job %s already has %d of its max_concurrency %d runs under way", rn.Spec.Job, len(active.Runs), max),
					Time:    r.opts.Clock.Now(),
				})
			})
			return controller.Result{RequeueAfter: r.opts.AtCapacityRetry}, err
		}
	}
	_, _, err := r.update(ctx, rn.ID, func(cur *run.Run) bool {
		if cur.Status.State != run.Pending {
			return false
		}
		cur.Status.State = run.Scheduled
		cur.Status.SetCondition(run.Condition{Type: ConditionAdmitted, Status: true, Reason: "Admitted", Time: r.opts.Clock.Now()})
		return true
	})
	return controller.Result{}, err
}

func (r *Runner) syncScheduled(ctx context.Context, rn *run.Run) (controller.Result, error) {
	if reason, msg, ok := rn.AbortRequested(); ok {
		// Nothing was started for a scheduled run, except by a process
		// that died between starting it and recording it: Kill finds what
		// the executor knows of it.
		if err := r.exec(rn).Kill(ctx, rn); err != nil {
			return controller.Result{}, fmt.Errorf("kill run %d: %w", rn.ID, err)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Aborted, reason, msg, executor.Outcome{})
	}
	// A run with a handle was started and waits for resources outside
	// lockstep (a pending GitLab pipeline): follow it like a running one.
	if rn.Status.Handle != "" {
		return r.syncRunning(ctx, rn)
	}
	// A run this process already started (its status write failed) is
	// not started twice.
	if _, err := r.exec(rn).Status(ctx, rn); !errors.Is(err, executor.ErrUnknown) {
		if err := r.exec(rn).Kill(ctx, rn); err != nil {
			return controller.Result{}, fmt.Errorf("kill run %d: %w", rn.ID, err)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Error, executor.ReasonStart,
			"the run was started but its start could not be recorded", executor.Outcome{})
	}
	started, err := r.exec(rn).Start(ctx, rn, func() { r.ctrl.Add(rn.ID) })
	if err != nil {
		reason := executor.ReasonStart
		var infra *executor.InfraError
		if errors.As(err, &infra) {
			reason = infra.Reason
		}
		return controller.Result{}, r.finish(ctx, rn, run.Error, reason, err.Error(), executor.Outcome{})
	}
	now := r.opts.Clock.Now()
	updated, _, err := r.update(ctx, rn.ID, func(cur *run.Run) bool {
		if cur.Status.State != run.Scheduled {
			return false
		}
		if !started.Waiting {
			cur.Status.State = run.Running
			cur.Status.StartedAt = &now
		}
		cur.Status.Handle = started.Handle
		cur.Status.LogPath = started.LogPath
		cur.Status.ExternalURL = started.URL
		if c := started.Condition; c != nil {
			cond := *c
			cond.Time = now
			cur.Status.SetCondition(cond)
		}
		return true
	})
	if err != nil {
		return controller.Result{}, err
	}
	r.log.Info("run started", "run", rn.ID, "job", rn.Spec.Job, "repo", rn.Spec.Refs.Repo, "handle", started.Handle)
	return r.syncRunning(ctx, updated)
}

func (r *Runner) syncRunning(ctx context.Context, rn *run.Run) (controller.Result, error) {
	if reason, msg, ok := rn.AbortRequested(); ok {
		if err := r.exec(rn).Kill(ctx, rn); err != nil {
			return controller.Result{}, fmt.Errorf("kill run %d: %w", rn.ID, err)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Aborted, reason, msg, executor.Outcome{})
	}
	out, err := r.exec(rn).Status(ctx, rn)
	if errors.Is(err, executor.ErrUnknown) {
		// Started by a process that is gone: make sure nothing of it
		// survives, then say what happened.
		if err := r.exec(rn).Kill(ctx, rn); err != nil {
			return controller.Result{}, fmt.Errorf("kill interrupted run %d: %w", rn.ID, err)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Error, ReasonInterrupted,
			"lockstep stopped while the run was under way", executor.Outcome{})
	}
	if err != nil {
		return controller.Result{}, fmt.Errorf("status of run %d: %w", rn.ID, err)
	}
	now := r.opts.Clock.Now()
	if rn.Status.State == run.Scheduled && (out.Done || !out.Waiting) {
		// A waiting execution got its resources, or ended before the
		// runner saw it run: it is running first, so that it can end in
		// any state.
		updated, _, err := r.update(ctx, rn.ID, func(cur *run.Run) bool {
			if cur.Status.State != run.Scheduled {
				return false
			}
			cur.Status.State = run.Running
			cur.Status.StartedAt = &now
			return true
		})
		if err != nil {
			return controller.Result{}, err
		}
		rn = updated
	}
	deadline := r.deadline(rn)
	switch {
	case out.Done && out.Infra != nil:
		return controller.Result{}, r.finish(ctx, rn, run.Error, out.Infra.Reason, out.Infra.Err.Error(), out)
	case out.Done && out.Canceled:
		return controller.Result{}, r.finish(ctx, rn, run.Aborted, ReasonCanceled, out.Message, out)
	case out.Done && out.ExitCode == 0:
		return controller.Result{}, r.finish(ctx, rn, run.Success, "", "", out)
	case out.Done && !now.Before(deadline):
		// Killed for its timeout by an earlier attempt whose write failed.
		return controller.Result{}, r.finish(ctx, rn, run.Aborted, ReasonTimeout, r.timeoutMessage(rn), out)
	case out.Done:
		msg := out.Message
		if msg == "" {
			msg = fmt.Sprintf("the job's script exited with status %d", out.ExitCode)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Failure, ReasonExited, msg, out)
	case !now.Before(deadline):
		if err := r.exec(rn).Kill(ctx, rn); err != nil {
			return controller.Result{}, fmt.Errorf("kill timed-out run %d: %w", rn.ID, err)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Aborted, ReasonTimeout, r.timeoutMessage(rn), out)
	default:
		// The executor's notification wakes the run when it ends or stops
		// waiting; the deadline wakes it for the timeout.
		return controller.Result{RequeueAfter: deadline.Sub(now)}, nil
	}
}

// exec returns the executor that runs rn.
func (r *Runner) exec(rn *run.Run) executor.Executor {
	name := rn.Spec.Executor
	if name == "" || name == config.ExecutorLocal {
		if e, ok := r.opts.Executors[config.ExecutorLocal]; ok {
			return e
		}
		return r.opts.Executor
	}
	if e, ok := r.opts.Executors[name]; ok {
		return e
	}
	return unknownExecutor(name)
}

// unknownExecutor stands for an executor name lockstep has no executor
// for: its runs end as error/UnknownExecutor when started.
type unknownExecutor string

func (u unknownExecutor) Start(context.Context, *run.Run, func()) (executor.Started, error) {
	return executor.Started{}, &executor.InfraError{Reason: executor.ReasonUnknownExecutor,
		Err: fmt.Errorf("lockstep has no executor %q: configure it, or change the job's executor", string(u))}
}

func (u unknownExecutor) Status(context.Context, *run.Run) (executor.Outcome, error) {
	return executor.Outcome{}, executor.ErrUnknown
}

func (unknownExecutor) Kill(context.Context, *run.Run) error    { return nil }
func (unknownExecutor) Cleanup(context.Context, *run.Run) error { return nil }

func (r *Runner) deadline(rn *run.Run) time.Time {
	start := rn.CreatedAt
	if rn.Status.StartedAt != nil {
		start = *rn.Status.StartedAt
	}
	timeout := rn.Spec.Timeout
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	return start.Add(timeout)
}

func (r *Runner) timeoutMessage(rn *run.Run) string {
	timeout := rn.Spec.Timeout
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	return fmt.Sprintf("the run exceeded its timeout of %s and was stopped", timeout)
}

// finish records a terminal state and what the job wrote to its build
// file, lets the executor forget the execution, and wakes the runs waiting
// for capacity in the same job.
func (r *Runner) finish(ctx context.Context, rn *run.Run, state run.State, reason, message string, out executor.Outcome) error {
	now := r.opts.Clock.Now()
	updated, wrote, err := r.update(ctx, rn.ID, func(cur *run.Run) bool {
		if cur.Status.State.Terminal() {
			return false
		}
		cur.Status.State = state
		cur.Status.Reason = reason
		cur.Status.Message = message
		cur.Status.FinishedAt = &now
		if out.HaveBuild {
			cur.Status.BuildOutput = out.BuildOutput
		}
		return true
	})
	if err != nil || !wrote {
		return err
	}
	r.log.Info("run finished", "run", rn.ID, "job", rn.Spec.Job, "repo", rn.Spec.Refs.Repo, "state", state, "reason", reason)
	if err := r.exec(updated).Cleanup(ctx, updated); err != nil && ctx.Err() == nil {
		r.log.Warn("clean up execution", "run", rn.ID, "err", err)
	}
	if r.maxConcurrency(rn) > 0 {
		if err := r.wakePending(ctx, rn); err != nil && ctx.Err() == nil {
			r.log.Warn("wake pending runs", "job", rn.Spec.Job, "err", err)
		}
	}
	return nil
}

// wakePending enqueues the pending runs of rn's job, which may now fit
// under max_concurrency.
func (r *Runner) wakePending(ctx context.Context, rn *run.Run) error {
	page, err := r.opts.Store.ListRuns(ctx, store.ListOptions{
		Repo: rn.Spec.Refs.Repo, Job: rn.Spec.Job, State: []run.State{run.Pending}, Limit: store.MaxLimit,
	})
	if err != nil {
		return err
	}
	for _, p := range page.Runs {
		r.ctrl.Add(p.ID)
	}
	return nil
}

// update re-reads run id, applies mutate and writes the status, retrying
// on conflicts. mutate returns false when the change no longer applies;
// update then returns the run as read and wrote false.
func (r *Runner) update(ctx context.Context, id run.ID, mutate func(*run.Run) bool) (out *run.Run, wrote bool, err error) {
	err = store.RetryOnConflict(ctx, func() error {
		cur, err := r.opts.Store.GetRun(ctx, id)
		if err != nil {
			return err
		}
		if wrote = mutate(cur); !wrote {
			out = cur
			return nil
		}
		out, err = r.opts.Store.UpdateRunStatus(ctx, cur)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("update run %d: %w", id, err)
	}
	return out, wrote, nil
}

func (r *Runner) maxConcurrency(rn *run.Run) int {
	cfg := r.opts.Config()
	if cfg == nil {
		return 0
	}
	job, ok := cfg.Job(rn.Spec.Refs.Repo, rn.Spec.Job)
	if !ok {
		return 0
	}
	return job.MaxConcurrency
}

func (r *Runner) admissionLock(rn *run.Run) *sync.Mutex {
	mu, _ := r.admitting.LoadOrStore(rn.Spec.Refs.Repo+"/"+rn.Spec.Job, new(sync.Mutex))
	return mu.(*sync.Mutex)
}

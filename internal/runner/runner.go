// Package runner is the run reconciler: it admits pending runs under the
// machine-wide limit and their job's max_concurrency, fairly across jobs
// and repositories and oldest first within a job, starts them on an executor, enforces timeouts,
// carries out abort requests and records each outcome. It is the only
// writer of a run's state.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// ConditionStarted is set false, with the executor's reason, while
	// starting the run's execution is refused for a reason that may pass.
	ConditionStarted = "Started"
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
	// Replica names this lockstep replica; it is recorded in the runs it
	// starts (run.Status.Replica).
	Replica string
	// MaxConcurrency returns how many local runs may execute at once in
	// all, read at every admission; zero or less means no cap. Default:
	// the configuration's local.max_concurrency (the number of CPUs
	// unless set).
	MaxConcurrency func() int
	Clock          clock.WithTicker
	Logger         *slog.Logger
	// Workers is how many runs are reconciled at once; default 8.
	Workers int
	// AtCapacityRetry is how soon a run refused admission is looked at
	// again if nothing wakes it earlier; default 30 s. A finishing run
	// hands its slot to the next waiting run at once.
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

	// adm decides which pending runs start. lockstep runs one runner per
	// store (on the elected leader at scale), so in-memory bookkeeping,
	// seeded from the store when Run starts, suffices.
	adm *admission
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
	if opts.MaxConcurrency == nil {
		opts.MaxConcurrency = func() int {
			if cfg := opts.Config(); cfg != nil {
				return cfg.Local.EffectiveMaxConcurrency()
			}
			return 0
		}
	}
	r := &Runner{opts: opts, log: opts.Logger.With("controller", "runner"), adm: newAdmission()}
	r.ctrl = controller.New(controller.Options[run.ID]{
		Name:       "runner",
		Reconciler: r,
		Workers:    opts.Workers,
		Clock:      opts.Clock,
		Resync:     opts.Resync,
		Logger:     opts.Logger,
		Watches: []controller.Watch[run.ID]{controller.NewStoreSource(controller.RunFeed(opts.Store),
			func(ev store.RunEvent, enqueue func(run.ID)) { r.onRunEvent(ev, enqueue) }, opts.Clock, opts.Logger)},
		List: r.listUnfinished,

		MetricsProvider: opts.MetricsProvider,
		OnError:         opts.OnError,
	})
	return r
}

// Run reconciles runs until ctx is done.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.seed(ctx); err != nil {
		return err
	}
	return r.ctrl.Run(ctx)
}

// seed tells admission about the runs under way and waiting, before any
// is reconciled, so that a restart neither admits past the limits nor
// serves the newest pending runs first.
func (r *Runner) seed(ctx context.Context) error {
	opts := store.ListOptions{State: []run.State{run.Pending, run.Scheduled, run.Running}, Limit: store.MaxLimit}
	for {
		page, err := r.opts.Store.ListRuns(ctx, opts)
		if err != nil {
			return fmt.Errorf("runner: list unfinished runs: %w", err)
		}
		for _, rn := range page.Runs {
			if rn.Status.State == run.Pending {
				r.adm.wait(rn.ID, keyOf(rn))
			} else {
				r.adm.running(rn.ID, keyOf(rn))
			}
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// Enqueue asks the runner to look at run id soon.
func (r *Runner) Enqueue(id run.ID) { r.ctrl.Add(id) }

// onRunEvent feeds the runner every run written.
func (r *Runner) onRunEvent(ev store.RunEvent, enqueue func(run.ID)) {
	// Events come in the order of the writes, so new runs join their
	// job's queue in the order they were created.
	if ev.Run.Status.State == run.Pending {
		if r.adm.wait(ev.Run.ID, keyOf(ev.Run)) && waitingSaidWhy(ev.Run) {
			// The write was the runner's own note that the run waits:
			// there is nothing new to look at. A slot freeing up wakes
			// it.
			return
		}
	}
	enqueue(ev.Run.ID)
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
		r.release(id)
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	switch rn.Status.State {
	case run.Pending:
		return r.syncPending(ctx, rn)
	case run.Scheduled:
		r.adm.running(rn.ID, keyOf(rn))
		return r.syncScheduled(ctx, rn)
	case run.Running:
		r.adm.running(rn.ID, keyOf(rn))
		return r.syncRunning(ctx, rn)
	default:
		r.release(id)
		return controller.Result{}, nil
	}
}

// Reasons of the Admitted condition of a pending run.
const (
	ReasonAdmitted       = "Admitted"
	ReasonAtCapacity     = "AtCapacity"     // its job is at its max_concurrency
	ReasonWaitingForSlot = "WaitingForSlot" // the machine is at local.max_concurrency
)

func (r *Runner) syncPending(ctx context.Context, rn *run.Run) (controller.Result, error) {
	if reason, msg, ok := rn.AbortRequested(); ok {
		return controller.Result{}, r.finish(ctx, rn, run.Aborted, reason, msg, executor.Outcome{})
	}
	l := r.limits()
	k := keyOf(rn)
	ok, woken := r.adm.admit(rn.ID, k, l)
	r.wake(woken)
	if !ok {
		// The message stays the same while the run waits, so that a
		// waiting run is written once, not at every look.
		cond := run.Condition{Type: ConditionAdmitted, Status: false, Reason: ReasonWaitingForSlot, Time: r.opts.Clock.Now(),
			Message: fmt.Sprintf("waiting for one of the %d execution slots of this machine (local.max_concurrency), all in use; runs start oldest first within a job, jobs and repositories in turn", l.slots)}
		if full, busy := r.adm.waitingFor(k, l); full {
			cond.Reason = ReasonAtCapacity
			cond.Message = fmt.Sprintf("job %s already has %d of its max_concurrency %d runs under way", rn.Spec.Job, busy, l.jobMax(k))
		}
		_, _, err := r.update(ctx, rn.ID, func(cur *run.Run) bool {
			return cur.Status.State == run.Pending && cur.Status.SetCondition(cond)
		})
		return controller.Result{RequeueAfter: r.opts.AtCapacityRetry}, err
	}
	updated, wrote, err := r.update(ctx, rn.ID, func(cur *run.Run) bool {
		if cur.Status.State != run.Pending {
			return false
		}
		cur.Status.State = run.Scheduled
		cur.Status.SetCondition(run.Condition{Type: ConditionAdmitted, Status: true, Reason: ReasonAdmitted, Time: r.opts.Clock.Now()})
		return true
	})
	if err != nil {
		// The slot stays granted: the retry finds it.
		return controller.Result{}, err
	}
	if !wrote {
		// No longer pending: the watch brings the run back, and its
		// reconcile accounts for what it became.
		return controller.Result{}, nil
	}
	r.adm.running(rn.ID, k)
	// Start it now rather than after the write comes back through the
	// watch: with few slots, every hop between two runs counts.
	return r.syncScheduled(ctx, updated)
}

// waitingSaidWhy reports whether pending run rn already says why it
// waits, and has no abort request to carry out.
func waitingSaidWhy(rn *run.Run) bool {
	if _, _, abort := rn.AbortRequested(); abort {
		return false
	}
	c, ok := rn.Status.Condition(ConditionAdmitted)
	return ok && !c.Status
}

// limits returns the admission limits in force now.
func (r *Runner) limits() limits {
	cfg := r.opts.Config()
	return limits{
		slots: r.opts.MaxConcurrency(),
		jobMax: func(k jobKey) int {
			if cfg == nil {
				return 0
			}
			job, ok := cfg.Job(k.repo, k.job)
			if !ok {
				return 0
			}
			return job.MaxConcurrency
		},
	}
}

// release frees what run id held in admission and wakes the runs granted
// its slot.
func (r *Runner) release(id run.ID) { r.wake(r.adm.release(id, r.limits())) }

func (r *Runner) wake(ids []run.ID) {
	for _, id := range ids {
		r.ctrl.Add(id)
	}
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
	// A transient error from Status (an API server briefly away) says
	// nothing about the run: try again later rather than end it.
	switch _, err := r.exec(rn).Status(ctx, rn); {
	case errors.Is(err, executor.ErrUnknown):
	case err != nil:
		return controller.Result{}, fmt.Errorf("status of scheduled run %d: %w", rn.ID, err)
	default:
		if err := r.exec(rn).Kill(ctx, rn); err != nil {
			return controller.Result{}, fmt.Errorf("kill run %d: %w", rn.ID, err)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Error, executor.ReasonStart,
			"the run was started but its start could not be recorded", executor.Outcome{})
	}
	started, err := r.exec(rn).Start(ctx, rn, func() { r.ctrl.Add(rn.ID) })
	var retry *executor.RetryError
	if errors.As(err, &retry) {
		// The execution may start later (a quota frees up): say why the
		// run waits, and try again.
		_, _, uerr := r.update(ctx, rn.ID, func(cur *run.Run) bool {
			return cur.Status.State == run.Scheduled && cur.Status.SetCondition(run.Condition{
				Type: ConditionStarted, Status: false, Reason: retry.Reason, Message: retry.Err.Error(),
				Time: r.opts.Clock.Now(),
			})
		})
		return controller.Result{RequeueAfter: retry.After}, uerr
	}
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
		cur.Status.Replica = r.opts.Replica
		cur.Status.LogPath = started.LogPath
		if c, ok := cur.Status.Condition(ConditionStarted); ok && !c.Status {
			cur.Status.SetCondition(run.Condition{Type: ConditionStarted, Status: true, Reason: "Started", Time: now})
		}
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
		msg := "lockstep stopped while the run was under way"
		if rn.Status.Replica != "" && rn.Status.Replica != r.opts.Replica {
			msg = fmt.Sprintf("replica %s, which ran it, stopped leading (it died or lost the lease) while the run was under way", rn.Status.Replica)
		}
		return controller.Result{}, r.finish(ctx, rn, run.Error, ReasonInterrupted, msg, executor.Outcome{})
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
// file, lets the executor forget the execution, and hands its slot to the
// next waiting run.
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
	r.release(rn.ID)
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

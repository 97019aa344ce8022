package periodic

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/lockstep-ci/lockstep/internal/builds"
	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// fire handles what is due of entry e at the clock's now: it plans the
// schedule again if its configuration changed, or fires or skips its due
// time, and leaves e with the schedule as stored. When another scheduler
// wrote the schedule first (a conflict), e takes the schedule as that
// one left it; if something is still due, the loop hands e out again.
func (s *Scheduler) fire(ctx context.Context, e *entry) {
	s.mu.Lock()
	j, ok := s.jobs[e.key]
	cfg := s.cfg
	s.mu.Unlock()
	if !ok || cfg == nil {
		return
	}
	sched := e.sched
	now := s.opts.Clock.Now()
	var next *store.Schedule
	var err error
	switch {
	case sched.Spec != j.spec:
		next, err = s.replan(ctx, e.key, j, sched, now)
	case sched.Next.After(now):
		e.next = sched.Next // not due: a resync brought it forward
		return
	default:
		next, err = s.fireDue(ctx, cfg, e.key, j, sched, now)
	}
	if errors.Is(err, store.ErrConflict) {
		next, err = s.opts.Store.GetSchedule(ctx, e.key.repo, e.key.job)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("handle due time; retrying later", "repo", e.key.repo, "job", e.key.job,
				"err", err, "retry_in", s.opts.RetryDelay)
		}
		e.next = now.Add(s.opts.RetryDelay)
		return
	}
	e.sched, e.next = next, next.Next
}

// replan writes sched with the next due time of j's new schedule.
func (s *Scheduler) replan(ctx context.Context, k jobKey, j job, sched *store.Schedule, now time.Time) (*store.Schedule, error) {
	next := *sched
	next.Spec, next.Next = j.spec, firstDue(k, j, now)
	got, err := s.opts.Store.UpdateSchedule(ctx, &next)
	if err == nil {
		s.log.Info("periodic schedule changed", "repo", k.repo, "job", k.job, "schedule", j.spec, "next", got.Next)
	}
	return got, err
}

// plan is what a schedule's due times up to some time come to.
type plan struct {
	// due is the latest due time passed, the one that fires.
	due time.Time
	// missed counts the due times before due, from firstMissed to
	// lastMissed, that fire nothing.
	missed                  int
	firstMissed, lastMissed time.Time
	// next is the first due time after due.
	next time.Time
}

// maxCronSteps bounds the due times of a cron schedule walked to find
// the latest one passed; beyond it (years of per-minute due times) the
// count of missed due times is a lower bound.
const maxCronSteps = 1 << 20

// planDue returns the plan of schedule j from its due time from (not
// after now) to now.
func planDue(j job, from, now time.Time) plan {
	if iv := j.periodic.Interval.Duration; j.periodic.Cron == "" && iv > 0 {
		n := now.Sub(from) / iv
		p := plan{due: from.Add(n * iv), missed: int(n), firstMissed: from}
		p.lastMissed = p.due.Add(-iv)
		p.next = p.due.Add(iv)
		return p
	}
	p := plan{due: from, firstMissed: from}
	for range maxCronSteps {
		t := j.schedule.Next(p.due)
		if t.After(now) {
			p.next = t
			break
		}
		p.lastMissed = p.due
		p.missed++
		p.due = t
	}
	if p.next.IsZero() {
		p.next = j.schedule.Next(now)
	}
	return p
}

// fireDue handles the due times of sched passed at now: the latest fires
// a run, or is skipped, by the job's policies; earlier ones are recorded
// as missed.
func (s *Scheduler) fireDue(ctx context.Context, cfg *config.Config, k jobKey, j job, sched *store.Schedule, now time.Time) (*store.Schedule, error) {
	p := planDue(j, sched.Next, now)
	due := p.due
	next := *sched
	next.Next = p.next
	next.LastDue = &due
	if p.missed > 0 {
		next.AddSkip(store.Skip{
			Due: p.firstMissed, Last: p.lastMissed, Count: p.missed, Reason: ReasonMissed, At: now,
			Message: fmt.Sprintf("%d due %s from %s to %s passed while no scheduler was running; one run fires for %s instead",
				p.missed, plural(p.missed, "time", "times"), stamp(p.firstMissed), stamp(p.lastMissed), stamp(due)),
		})
	}
	skip := func(reason, msg string) (*store.Schedule, error) {
		next.AddSkip(store.Skip{Due: due, Last: due, Count: 1, Reason: reason, Message: msg, At: now})
		got, err := s.opts.Store.UpdateSchedule(ctx, &next)
		if err == nil {
			s.recordMissed(k, p)
			s.metrics.fires.WithLabelValues(outcomeSkipped).Inc()
			s.log.Info("periodic due time skipped", "repo", k.repo, "job", k.job, "due", due, "reason", reason, "message", msg)
		}
		return got, err
	}

	policy := j.periodic.EffectiveConcurrencyPolicy()
	var prev *run.Run
	if sched.LastRun != 0 && policy != config.ConcurrencyAllow {
		r, err := s.opts.Store.GetRun(ctx, sched.LastRun)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("read previous run %d: %w", sched.LastRun, err)
		case !r.Status.State.Terminal():
			prev = r
		}
	}
	if prev != nil && policy == config.ConcurrencyForbid {
		return skip(ReasonPreviousRunUnfinished, fmt.Sprintf(
			"the previous run, %d, is still %s; concurrency_policy forbid skips this due time", prev.ID, prev.Status.State))
	}

	r := newRun(k, j, due)
	if src := j.periodic.Build; src != nil {
		res, err := builds.Resolve(ctx, s.opts.Store, cfg, k.repo, *src, now)
		if err != nil {
			return nil, fmt.Errorf("resolve the build to test: %w", err)
		}
		onStale := src.EffectiveOnStale()
		switch {
		case res.Build == nil && onStale == config.OnStaleFail:
			failRun(r, ReasonNoBuild, res.Message, now)
		case res.Build == nil:
			return skip(ReasonNoBuild, res.Message+"; there is no build to test")
		case res.Stale && onStale == config.OnStaleSkip:
			return skip(ReasonStaleBuild, fmt.Sprintf("build %s is stale (%s); on_stale skip skips this due time", res.Build.Version, res.Message))
		case res.Stale:
			res.UnderTest.Decision = onStale
			if onStale == config.OnStaleFail {
				failRun(r, ReasonStaleBuild, fmt.Sprintf("build %s is stale (%s); on_stale fail fails this run without running it", res.Build.Version, res.Message), now)
			}
		}
		r.Spec.Build = res.UnderTest
		if env := builds.Env(res); len(env) > 0 {
			merged := make(map[string]string, len(r.Spec.Env)+len(env))
			maps.Copy(merged, r.Spec.Env)
			maps.Copy(merged, env)
			r.Spec.Env = merged
		}
	}

	if prev != nil && policy == config.ConcurrencyReplace && !r.Status.State.Terminal() {
		if err := s.requestAbort(ctx, prev.ID, due); err != nil {
			return nil, err
		}
	}
	got, created, err := s.opts.Store.FireSchedule(ctx, &next, r)
	if err != nil {
		return nil, err
	}
	s.recordMissed(k, p)
	outcome := outcomeRun
	if created.Status.State.Terminal() {
		outcome = outcomeFailed
	}
	s.metrics.fires.WithLabelValues(outcome).Inc()
	s.metrics.lateness.Observe(s.opts.Clock.Now().Sub(due).Seconds())
	s.log.Debug("periodic fired", "repo", k.repo, "job", k.job, "due", due, "run", created.ID, "state", created.Status.State)
	return got, nil
}

// recordMissed logs and counts the due times p missed.
func (s *Scheduler) recordMissed(k jobKey, p plan) {
	if p.missed == 0 {
		return
	}
	s.metrics.fires.WithLabelValues(outcomeMissed).Add(float64(p.missed))
	s.log.Warn("periodic missed due times", "repo", k.repo, "job", k.job, "missed", p.missed,
		"first", p.firstMissed, "last", p.lastMissed, "fired", p.due)
}

// newRun returns the run of j for due time due.
func newRun(k jobKey, j job, due time.Time) *run.Run {
	p := j.periodic
	var env map[string]string
	if len(p.Env) > 0 {
		env = maps.Clone(p.Env)
	}
	cause := run.CauseCron
	if p.Cron == "" {
		cause = run.CauseInterval
	}
	return &run.Run{Spec: run.Spec{
		Job:        p.Name,
		Type:       run.Periodic,
		Refs:       run.Refs{Repo: k.repo, CloneURL: j.cloneURL, BaseRef: p.Branch},
		Cause:      cause,
		Requester:  "lockstep",
		Script:     p.Run,
		Env:        env,
		Timeout:    p.EffectiveTimeout(),
		Secrets:    slices.Clone(p.Secrets),
		NoNetwork:  p.Sandbox.NoNetwork(),
		TriggerKey: run.PeriodicKey(k.repo, p.Name, due),

		Executor:       p.Executor,
		ExecutorConfig: j.executorConfig,
	}}
}

// failRun makes r a run created already failed, with reason and msg.
func failRun(r *run.Run, reason, msg string, now time.Time) {
	r.Status = run.Status{State: run.Failure, Reason: reason, Message: msg, FinishedAt: &now}
}

// requestAbort asks the runner to abort run id, replaced by the run of
// due time due.
func (s *Scheduler) requestAbort(ctx context.Context, id run.ID, due time.Time) error {
	err := store.RetryOnConflict(ctx, func() error {
		r, err := s.opts.Store.GetRun(ctx, id)
		if err != nil {
			return err
		}
		if !r.RequestAbort(ReasonReplaced, fmt.Sprintf("replaced by the run of due time %s (concurrency_policy replace)", stamp(due))) {
			return nil
		}
		_, err = s.opts.Store.UpdateRun(ctx, r)
		return err
	})
	if err != nil {
		return fmt.Errorf("request abort of run %d: %w", id, err)
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

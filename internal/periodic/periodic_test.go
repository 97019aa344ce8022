package periodic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// TestEightSchedulersFireEachDueTimeOnce runs eight Schedulers on one
// store through 1,000 simulated minutes of a cron and an interval
// periodic: every due time fires exactly once, none is missed.
func TestEightSchedulersFireEachDueTimeOnce(t *testing.T) {
	t.Parallel()
	const dueTimes = 1000
	e := newEnv(t, `repos:
  acme/widget:
    periodics:
      - name: tick
        cron: "* * * * *"
        run: "true"
        concurrency_policy: allow
      - name: tock
        interval: 1m
        run: "true"
        concurrency_policy: allow
`)
	var scheds []*scheduler
	for range 8 {
		s, _ := e.startScheduler(Options{Workers: 2})
		scheds = append(scheds, s)
	}
	waitFor(t, "schedules to be created", func() bool {
		return e.schedule("acme/widget", "tick") != nil && e.schedule("acme/widget", "tock") != nil
	})
	first := map[string]time.Time{
		"tick": e.schedule("acme/widget", "tick").Next,
		"tock": e.schedule("acme/widget", "tock").Next,
	}
	if want := start.Truncate(time.Minute).Add(time.Minute); !first["tick"].Equal(want) {
		t.Fatalf("tick first due at %v, want %v", first["tick"], want)
	}
	for range dueTimes {
		e.clk.Step(time.Minute)
		e.caughtUp("acme/widget", "tick", "tock")
	}

	// A cron periodic's runs say cron; an interval periodic's, interval.
	causes := map[string]run.Cause{"tick": run.CauseCron, "tock": run.CauseInterval}
	for job, from := range first {
		var want, got []string
		for i := range dueTimes {
			want = append(want, run.PeriodicKey("acme/widget", job, from.Add(time.Duration(i)*time.Minute)))
		}
		for _, r := range e.runs("acme/widget", job) {
			got = append(got, r.Spec.TriggerKey)
			if r.Spec.Type != run.Periodic || r.Spec.Cause != causes[job] {
				t.Fatalf("run %d: type %s cause %s, want periodic %s", r.ID, r.Spec.Type, r.Spec.Cause, causes[job])
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: trigger keys of the runs (-want +got):\n%s", job, diff)
		}
		if sc := e.schedule("acme/widget", job); len(sc.Skips) != 0 {
			t.Errorf("%s: skips recorded: %+v", job, sc.Skips)
		}
	}
	// A fire is counted once its transaction returns, which the store
	// shows a moment before.
	count := func(outcome string) int {
		var n int
		for _, s := range scheds {
			n += s.fired(outcome)
		}
		return n
	}
	waitFor(t, "the fires to be counted", func() bool { return count(outcomeRun) >= 2*dueTimes })
	if fired, missed := count(outcomeRun), count(outcomeMissed); fired != 2*dueTimes || missed != 0 {
		t.Errorf("the schedulers fired %d due times and missed %d, want %d and 0", fired, missed, 2*dueTimes)
	}
}

// TestCatchUpAfterDowntime stops the only Scheduler for three days: the
// next one fires one catch-up run and records the due times missed.
func TestCatchUpAfterDowntime(t *testing.T) {
	t.Parallel()
	for _, schedule := range []string{`cron: "0 * * * *"`, `interval: 1h`} {
		t.Run(schedule, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fmt.Sprintf(`repos:
  acme/widget:
    periodics:
      - name: hourly
        %s
        run: "true"
`, schedule))
			_, stop := e.startScheduler(Options{})
			waitFor(t, "the schedule", func() bool { return e.schedule("acme/widget", "hourly") != nil })
			firstDue := e.schedule("acme/widget", "hourly").Next
			e.clk.SetTime(firstDue)
			e.caughtUp("acme/widget", "hourly")
			runs := e.runs("acme/widget", "hourly")
			if len(runs) != 1 {
				t.Fatalf("%d runs before the downtime, want 1", len(runs))
			}
			// The run ends before the downtime, so forbid does not skip
			// the catch-up.
			e.finish(runs[0].ID, run.Success, "")
			stop()

			e.clk.Step(72 * time.Hour)
			s, _ := e.startScheduler(Options{})
			e.caughtUp("acme/widget", "hourly")

			latest := firstDue.Add(72 * time.Hour)
			runs = e.runs("acme/widget", "hourly")
			var keys []string
			for _, r := range runs {
				keys = append(keys, r.Spec.TriggerKey)
			}
			want := []string{run.PeriodicKey("acme/widget", "hourly", firstDue), run.PeriodicKey("acme/widget", "hourly", latest)}
			if diff := cmp.Diff(want, keys); diff != "" {
				t.Fatalf("runs after three days down (-want +got):\n%s", diff)
			}
			sc := e.schedule("acme/widget", "hourly")
			if len(sc.Skips) != 1 {
				t.Fatalf("skips = %+v, want one record of the missed due times", sc.Skips)
			}
			k := sc.Skips[0]
			if k.Reason != ReasonMissed || k.Count != 71 || !k.Due.Equal(firstDue.Add(time.Hour)) || !k.Last.Equal(latest.Add(-time.Hour)) {
				t.Errorf("missed = %+v, want 71 due times from %v to %v", k, firstDue.Add(time.Hour), latest.Add(-time.Hour))
			}
			if !sc.Next.Equal(latest.Add(time.Hour)) || sc.LastRun != runs[1].ID || !sc.LastDue.Equal(latest) {
				t.Errorf("schedule = next %v, last due %v, last run %d; want %v, %v, %d", sc.Next, sc.LastDue, sc.LastRun, latest.Add(time.Hour), latest, runs[1].ID)
			}
			waitFor(t, "the missed due times to be counted", func() bool { return s.fired(outcomeMissed) >= 71 })
			if got := s.fired(outcomeMissed); got != 71 {
				t.Errorf("missed counter = %d, want 71", got)
			}
		})
	}
}

// TestForbidHungRunAbortedAtTimeout has a run hang under concurrency
// policy forbid: the due times meanwhile are skipped and recorded, the
// real runner aborts the run at its timeout, and the next due time fires.
func TestForbidHungRunAbortedAtTimeout(t *testing.T) {
	t.Parallel()
	repo := newGitRepo(t)
	e := newEnv(t, fmt.Sprintf(`repos:
  acme/widget:
    clone_url: %s
    periodics:
      - name: hang
        cron: "* * * * *"
        run: sleep 1000
        timeout: 4m30s
`, repo))
	x := local.New(local.Options{WorkDir: filepath.Join(e.dir, "work"), LogDir: filepath.Join(e.dir, "logs")})
	t.Cleanup(func() { _ = x.Shutdown(context.Background()) })
	rn := runner.New(runner.Options{Store: e.store, Executor: x, Config: e.config, Clock: e.clk, Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rn.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	e.startScheduler(Options{})

	waitFor(t, "the schedule", func() bool { return e.schedule("acme/widget", "hang") != nil })
	minute := start.Truncate(time.Minute)
	e.clk.SetTime(minute.Add(time.Minute)) // 00:01
	e.caughtUp("acme/widget", "hang")
	hung := e.runs("acme/widget", "hang")[0]
	waitFor(t, "the first run to be running", func() bool {
		r, err := e.store.GetRun(context.Background(), hung.ID)
		return err == nil && r.Status.State == run.Running
	})

	for m := 2; m <= 5; m++ {
		e.clk.SetTime(minute.Add(time.Duration(m) * time.Minute))
		e.caughtUp("acme/widget", "hang")
	}
	if runs := e.runs("acme/widget", "hang"); len(runs) != 1 {
		t.Fatalf("%d runs while the first hangs, want 1", len(runs))
	}
	sc := e.schedule("acme/widget", "hang")
	var skipped []time.Time
	for _, k := range sc.Skips {
		if k.Reason != ReasonPreviousRunUnfinished || k.Count != 1 {
			t.Errorf("skip %+v, want one due time skipped for the unfinished run", k)
		}
		skipped = append(skipped, k.Due)
	}
	want := []time.Time{minute.Add(5 * time.Minute), minute.Add(4 * time.Minute), minute.Add(3 * time.Minute), minute.Add(2 * time.Minute)}
	if diff := cmp.Diff(want, skipped); diff != "" {
		t.Errorf("skipped due times, newest first (-want +got):\n%s", diff)
	}

	// 00:05:30: the run's timeout.
	e.clk.SetTime(minute.Add(5*time.Minute + 30*time.Second))
	waitFor(t, "the hung run to be aborted", func() bool {
		r, err := e.store.GetRun(context.Background(), hung.ID)
		return err == nil && r.Status.State == run.Aborted
	})
	if r, _ := e.store.GetRun(context.Background(), hung.ID); r.Status.Reason != runner.ReasonTimeout {
		t.Errorf("hung run aborted with reason %q, want %q", r.Status.Reason, runner.ReasonTimeout)
	}
	e.clk.SetTime(minute.Add(6 * time.Minute))
	e.caughtUp("acme/widget", "hang")
	runs := e.runs("acme/widget", "hang")
	if len(runs) != 2 || runs[1].Spec.TriggerKey != run.PeriodicKey("acme/widget", "hang", minute.Add(6*time.Minute)) {
		t.Fatalf("runs after the timeout = %d, want the 00:06 due time to fire a second run", len(runs))
	}
}

func TestConcurrencyPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy string
		// want is the number of runs after the second due time, and
		// whether the first was asked to abort.
		runs    int
		aborted bool
		skips   int
	}{
		{config.ConcurrencyForbid, 1, false, 1},
		{config.ConcurrencyAllow, 2, false, 0},
		{config.ConcurrencyReplace, 2, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fmt.Sprintf(`repos:
  acme/widget:
    periodics:
      - name: job
        cron: "* * * * *"
        run: make
        concurrency_policy: %s
`, tt.policy))
			e.startScheduler(Options{})
			waitFor(t, "the schedule", func() bool { return e.schedule("acme/widget", "job") != nil })
			e.clk.Step(30 * time.Second)
			e.caughtUp("acme/widget", "job")
			e.clk.Step(time.Minute)
			e.caughtUp("acme/widget", "job")
			runs := e.runs("acme/widget", "job")
			if len(runs) != tt.runs {
				t.Fatalf("%d runs, want %d", len(runs), tt.runs)
			}
			reason, msg, aborted := runs[0].AbortRequested()
			if aborted != tt.aborted {
				t.Errorf("first run asked to abort: %v (%s: %s), want %v", aborted, reason, msg, tt.aborted)
			}
			if aborted && reason != ReasonReplaced {
				t.Errorf("abort reason %q, want %q", reason, ReasonReplaced)
			}
			if sc := e.schedule("acme/widget", "job"); len(sc.Skips) != tt.skips {
				t.Errorf("skips = %+v, want %d", sc.Skips, tt.skips)
			}
		})
	}
}

// TestScheduleChange follows a configuration change: the new schedule
// replaces the old without firing for the change itself; a removed job
// stops firing.
func TestScheduleChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `repos:
  acme/widget:
    periodics:
      - name: job
        cron: "0 * * * *"
        run: make
`)
	s, _ := e.startScheduler(Options{})
	waitFor(t, "the schedule", func() bool { return e.schedule("acme/widget", "job") != nil })
	e.setConfig(`repos:
  acme/widget:
    periodics:
      - name: job
        cron: "*/5 * * * *"
        run: make
      - name: other
        cron: "0 0 * * *"
        run: make
`)
	s.Wake()
	waitFor(t, "the schedule to follow the configuration", func() bool {
		sc := e.schedule("acme/widget", "job")
		return sc.Spec == "cron */5 * * * * UTC" && e.schedule("acme/widget", "other") != nil
	})
	if sc := e.schedule("acme/widget", "job"); !sc.Next.Equal(start.Truncate(time.Minute).Add(5 * time.Minute)) {
		t.Errorf("next due %v after the change, want 00:05", sc.Next)
	}
	if runs := e.runs("acme/widget", "job"); len(runs) != 0 {
		t.Errorf("the change fired %d runs", len(runs))
	}
	e.clk.Step(5 * time.Minute)
	e.caughtUp("acme/widget", "job")
	if runs := e.runs("acme/widget", "job"); len(runs) != 1 {
		t.Fatalf("%d runs at 00:05, want 1", len(runs))
	}

	e.setConfig(`repos:
  acme/widget:
    periodics:
      - name: other
        cron: "0 0 * * *"
        run: make
`)
	s.Wake()
	waitFor(t, "the job to leave the scheduler", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.entries[jobKey{"acme/widget", "job"}]
		return !ok
	})
	e.clk.Step(time.Hour)
	e.caughtUp("acme/widget", "other")
	if runs := e.runs("acme/widget", "job"); len(runs) != 1 {
		t.Errorf("%d runs of the removed job, want still 1", len(runs))
	}
}

func TestRunSpec(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `repos:
  acme/widget:
    clone_url: https://git.example.com/widget.git
    periodics:
      - name: nightly
        cron: "0 3 * * *"
        time_zone: Europe/Paris
        branch: release-1.2
        run: make e2e
        timeout: 3h
        env: {FOO: bar}
`)
	e.startScheduler(Options{})
	waitFor(t, "the schedule", func() bool { return e.schedule("acme/widget", "nightly") != nil })
	due := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC) // 03:00 in Paris
	if sc := e.schedule("acme/widget", "nightly"); !sc.Next.Equal(due) || sc.Spec != "cron 0 3 * * * Europe/Paris" {
		t.Fatalf("schedule = next %v spec %q, want %v", sc.Next, sc.Spec, due)
	}
	e.clk.SetTime(due)
	e.caughtUp("acme/widget", "nightly")
	runs := e.runs("acme/widget", "nightly")
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	want := run.Spec{
		Job: "nightly", Type: run.Periodic,
		Refs:  run.Refs{Repo: "acme/widget", CloneURL: "https://git.example.com/widget.git", BaseRef: "release-1.2"},
		Cause: run.CauseCron, Requester: "lockstep", Script: "make e2e", Env: map[string]string{"FOO": "bar"},
		Timeout: 3 * time.Hour, TriggerKey: "acme/widget/nightly@2026-03-01T02:00:00Z",
	}
	if diff := cmp.Diff(want, runs[0].Spec); diff != "" {
		t.Errorf("run spec (-want +got):\n%s", diff)
	}
}

func TestPlanDue(t *testing.T) {
	t.Parallel()
	hourly := job{periodic: config.Periodic{Interval: config.Duration{Duration: time.Hour}}}
	cronJob := func(expr string) job {
		p := config.Periodic{Cron: expr}
		p.JobBase.Name = "x"
		s, err := p.Schedule()
		if err != nil {
			t.Fatal(err)
		}
		return job{periodic: p, schedule: s}
	}
	t0 := time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		j         job
		from, now time.Time
		want      plan
	}{
		{"interval on time", hourly, t0, t0, plan{due: t0, next: t0.Add(time.Hour), firstMissed: t0, lastMissed: t0.Add(-time.Hour)}},
		{"interval late", hourly, t0, t0.Add(59 * time.Minute), plan{due: t0, next: t0.Add(time.Hour), firstMissed: t0, lastMissed: t0.Add(-time.Hour)}},
		{"interval missed two", hourly, t0, t0.Add(2*time.Hour + time.Minute), plan{due: t0.Add(2 * time.Hour), missed: 2, firstMissed: t0, lastMissed: t0.Add(time.Hour), next: t0.Add(3 * time.Hour)}},
		{"cron on time", cronJob("0 * * * *"), t0, t0, plan{due: t0, next: t0.Add(time.Hour), firstMissed: t0}},
		{"cron missed a day", cronJob("0 1 * * *"), t0, t0.Add(49 * time.Hour), plan{due: t0.Add(48 * time.Hour), missed: 2, firstMissed: t0, lastMissed: t0.Add(24 * time.Hour), next: t0.Add(72 * time.Hour)}},
	}
	for _, tt := range tests {
		got := planDue(tt.j, tt.from, tt.now)
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(plan{})); diff != "" {
			t.Errorf("%s: plan (-want +got):\n%s", tt.name, diff)
		}
	}
}

// TestFirstDueSpreadsIntervals checks that interval periodics sharing an
// interval are due at different times within it, each within one
// interval.
func TestFirstDueSpreadsIntervals(t *testing.T) {
	t.Parallel()
	j := job{periodic: config.Periodic{Interval: config.Duration{Duration: time.Minute}}}
	seconds := map[int]bool{}
	for i := range 100 {
		due := firstDue(jobKey{"acme/widget", fmt.Sprintf("job-%d", i)}, j, start)
		if !due.After(start) || due.After(start.Add(time.Minute)) {
			t.Fatalf("job-%d first due at %v, want within a minute after %v", i, due, start)
		}
		seconds[due.Second()] = true
	}
	if len(seconds) < 30 {
		t.Errorf("100 jobs fall on %d distinct seconds of the minute, want them spread", len(seconds))
	}
	a := firstDue(jobKey{"acme/widget", "job-1"}, j, start)
	b := firstDue(jobKey{"acme/widget", "job-1"}, j, start.Add(10*time.Second))
	if !a.Equal(b) && !b.Equal(a.Add(time.Minute)) {
		t.Errorf("the phase of job-1 moved: %v, then %v", a, b)
	}
}

// fixedStore is a store.Schedules listing fixed schedules, for the API.
type fixedStore []*store.Schedule

func (f fixedStore) ListSchedules(context.Context) ([]*store.Schedule, error) { return f, nil }

// TestOnStale fires a job consuming a marker's build once while the
// marker is fresh and once after its max_age: on_stale decides the
// second fire, and what it decided is visible.
func TestOnStale(t *testing.T) {
	t.Parallel()
	tests := []struct {
		onStale string
		// noBuild leaves the marker without a build.
		noBuild bool
		// state is the second run's state, empty when it is skipped;
		// reason the run's or the skip's reason.
		state  run.State
		reason string
	}{
		{onStale: "run", state: run.Pending},
		{onStale: "skip", reason: ReasonStaleBuild},
		{onStale: "fail", state: run.Failure, reason: ReasonStaleBuild},
		{onStale: "run", noBuild: true, reason: ReasonNoBuild},
		{onStale: "fail", noBuild: true, state: run.Failure, reason: ReasonNoBuild},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/nobuild=%v", tt.onStale, tt.noBuild), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fmt.Sprintf(`repos:
  acme/kops:
    postsubmits:
      - name: build
        run: make
        produces_build: true
    periodics:
      - name: updown
        cron: "0 0 1 1 *"
        run: make
        build: {branch: main}
      - name: e2e
        cron: "0 * * * *"
        run: make
        build: {marker: latest-green, on_stale: %s}
markers:
  - {name: latest-green, repo: acme/kops, branch: main, gate: updown, max_age: 1h}
`, tt.onStale))
			ctx := context.Background()
			var b *store.Build
			if !tt.noBuild {
				br, err := e.store.CreateRun(ctx, &run.Run{Spec: run.Spec{
					Job: "build", Type: run.Postsubmit, Refs: run.Refs{Repo: "acme/kops", BaseRef: "main", BaseSHA: "c1"},
					TriggerKey: "build/1", Script: "make",
				}, Status: run.Status{State: run.Success, BuildOutput: "v1\ngs://b/v1"}})
				if err != nil {
					t.Fatal(err)
				}
				if b, err = e.store.CreateBuild(ctx, &store.Build{Repo: "acme/kops", Branch: "main", Commit: "c1", Version: "v1",
					Artifacts: []string{"gs://b/v1"}, Job: "build", Run: br.ID}); err != nil {
					t.Fatal(err)
				}
				m, err := e.store.CreateMarker(ctx, &store.Marker{Name: "latest-green", Repo: "acme/kops", Branch: "main"})
				if err != nil {
					t.Fatal(err)
				}
				m.BuildID = b.ID
				if _, err := e.store.UpdateMarker(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			e.startScheduler(Options{})
			waitFor(t, "the schedule", func() bool { return e.schedule("acme/kops", "e2e") != nil })

			hour := start.Truncate(time.Hour)
			e.clk.SetTime(hour.Add(time.Hour)) // the marker is 59m30s old
			e.caughtUp("acme/kops", "e2e")
			if !tt.noBuild {
				runs := e.runs("acme/kops", "e2e")
				if len(runs) != 1 || runs[0].Spec.Build == nil || runs[0].Spec.Build.Stale || runs[0].Spec.Build.Decision != "" {
					t.Fatalf("fresh fire: %d runs, first testing %+v", len(runs), runs[0].Spec.Build)
				}
				wantEnv := map[string]string{"LOCKSTEP_BUILD_ID": fmt.Sprint(b.ID), "LOCKSTEP_BUILD_VERSION": "v1", "LOCKSTEP_BUILD_COMMIT": "c1",
					"LOCKSTEP_BUILD_ARTIFACTS": "gs://b/v1", "LOCKSTEP_BUILD_MARKER": "latest-green", "LOCKSTEP_BUILD_STALE": "false"}
				if diff := cmp.Diff(wantEnv, runs[0].Spec.Env); diff != "" {
					t.Errorf("environment of the run (-want +got):\n%s", diff)
				}
				e.finish(runs[0].ID, run.Success, "")
			}

			e.clk.SetTime(hour.Add(2 * time.Hour)) // 1h59m30s: stale
			e.caughtUp("acme/kops", "e2e")
			runs := e.runs("acme/kops", "e2e")
			sc := e.schedule("acme/kops", "e2e")
			if tt.state == "" {
				if len(sc.Skips) == 0 || sc.Skips[0].Reason != tt.reason || !sc.Skips[0].Due.Equal(hour.Add(2*time.Hour)) {
					t.Fatalf("skips = %+v, want the 02:00 due time skipped with %s", sc.Skips, tt.reason)
				}
				if want := map[bool]int{true: 0, false: 1}[tt.noBuild]; len(runs) != want {
					t.Errorf("%d runs, want %d", len(runs), want)
				}
				return
			}
			last := runs[len(runs)-1]
			if last.Spec.TriggerKey != run.PeriodicKey("acme/kops", "e2e", hour.Add(2*time.Hour)) || last.Status.State != tt.state || last.Status.Reason != tt.reason {
				t.Fatalf("the 02:00 run: key %s state %s reason %q, want %s %q", last.Spec.TriggerKey, last.Status.State, last.Status.Reason, tt.state, tt.reason)
			}
			if tt.noBuild {
				return
			}
			if bt := last.Spec.Build; bt == nil || !bt.Stale || bt.Decision != tt.onStale || bt.MarkerAge != 2*time.Hour-30*time.Second {
				t.Errorf("the 02:00 run tests %+v, want a stale build, decision %s", bt, tt.onStale)
			}
			if tt.state == run.Failure && last.Status.FinishedAt == nil {
				t.Errorf("the failed run has no finish time")
			}
		})
	}
}

func TestAPIHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `repos:
  acme/kops:
    postsubmits:
      - name: build
        run: make
        produces_build: true
    periodics:
      - name: updown
        interval: 1h
        run: make
        build: {branch: main}
      - name: e2e
        cron: "0 3 * * *"
        time_zone: Europe/Paris
        concurrency_policy: replace
        branch: main
        run: make
        build: {marker: green, max_age: 24h}
markers:
  - {name: green, repo: acme/kops, branch: main, gate: updown}
`)
	next := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	last := next.Add(-24 * time.Hour)
	skip := store.Skip{Due: last, Last: last, Count: 1, Reason: ReasonStaleBuild, Message: "stale", At: last}
	st := fixedStore{{Repo: "acme/kops", Job: "e2e", Next: next, LastDue: &last, LastRun: 7, Skips: []store.Skip{skip}}}
	mux := http.NewServeMux()
	h := APIHandler(APIOptions{Store: st, Config: e.config})
	for _, p := range APIPatterns() {
		mux.Handle(p, h)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/periodics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got struct{ Periodics []APIPeriodic }
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []APIPeriodic{
		{Repo: "acme/kops", Job: "updown", Schedule: "interval 1h0m0s", ConcurrencyPolicy: "forbid", Build: &APIBuild{Branch: "main"}},
		{Repo: "acme/kops", Job: "e2e", Schedule: "cron 0 3 * * * Europe/Paris", ConcurrencyPolicy: "replace", Branch: "main",
			Build: &APIBuild{Marker: "green", MaxAge: "24h0m0s", OnStale: "run"},
			Next:  &next, LastDue: &last, LastRun: 7, Skips: []store.Skip{skip}},
	}
	if diff := cmp.Diff(want, got.Periodics); diff != "" {
		t.Errorf("periodics (-want +got):\n%s", diff)
	}
}

package web

import (
	"context"
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/periodic"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// seeded names the objects seed made that tests look at.
type seeded struct {
	// Now is the time the seeded history leads up to.
	Now time.Time
	// PullFailed is a finished failure on pull request 42's old head;
	// PullHead its unit run on the head; Periodic a nightly run that
	// tested a stale build.
	PullFailed, PullHead, Periodic run.ID
	// PullError is an infrastructure error on pull request 42's head.
	PullError run.ID
	// Filler counts the runs of acme/gadgets, made to fill pages.
	Filler int
}

// Seeded data.
const (
	seedRepo      = "acme/widgets"
	seedPull      = 42
	seedOldHead   = "3f9c2a71d05be84c6a1f0e2d7b93c4a8e6f15d20"
	seedHead      = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
	seedMain      = "main"
	seedFiller    = 120
	staleMarker   = "stable"
	freshMarker   = "latest"
	seedTitle     = "Fix flaky retry"
	seedStaleText = "The gate job release-gate failed 11 times in a row since its last success; the marker has named v1.4.2 for 8 days while 13 newer builds of main exist."
)

// seed fills the SQLite store at dbPath with a realistic history that
// leads up to now: pull requests with runs on several commits, postsubmit
// builds, a fresh and a stale marker, periodic schedules and runs,
// webhook deliveries, and acme/gadgets filler runs. It writes the
// finished runs' logs under logDir and closes the store.
func seed(t testing.TB, dbPath, logDir string, now time.Time) seeded {
	t.Helper()
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(now.Add(-10 * 24 * time.Hour))
	s, err := sqlite.Open(ctx, dbPath, sqlite.WithClock(clk))
	if err != nil {
		t.Fatalf("open store to seed: %v", err)
	}
	defer s.Close()
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := seeded{Now: now, Filler: seedFiller}
	n := 0
	// mk creates a finished (or given-state) run at the clock's time,
	// which lasted d, with a log.
	mk := func(r *run.Run, state run.State, d time.Duration, log string) *run.Run {
		t.Helper()
		n++
		if r.Spec.TriggerKey == "" {
			r.Spec.TriggerKey = fmt.Sprintf("seed/%d", n)
		}
		if r.Spec.Script == "" {
			r.Spec.Script = "make " + r.Spec.Job
		}
		if r.Spec.Timeout == 0 {
			r.Spec.Timeout = time.Hour
		}
		start := clk.Now().Add(3 * time.Second)
		r.Status.State = state
		r.Status.Conditions = []run.Condition{{Type: "Admitted", Status: true, Reason: "Admitted", Time: clk.Now().Add(time.Second)}}
		if state != run.Pending {
			r.Status.StartedAt = &start
			r.Status.Handle = fmt.Sprintf("pgid:%d", 4000+n)
			r.Status.LogPath = filepath.Join(logDir, fmt.Sprintf("seed-%d.log", n))
			if err := os.WriteFile(r.Status.LogPath, []byte(log), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if state.Terminal() && r.Spec.Refs.Pull != 0 && r.Status.Reported == nil {
			r.Status.Reported = map[string]string{"github": string(state)}
		}
		if state.Terminal() {
			end := start.Add(d)
			r.Status.FinishedAt = &end
			switch state {
			case run.Failure:
				r.Status.Reason, r.Status.Message = "ScriptExited", "the job's script exited with status 1"
			case run.Aborted:
				if r.Status.Reason == "" {
					r.Status.Reason, r.Status.Message = "Superseded", "a newer commit was pushed to the pull request"
				}
			}
		}
		got, err := s.CreateRun(ctx, r)
		if err != nil {
			t.Fatalf("seed run %s: %v", r.Spec.TriggerKey, err)
		}
		return got
	}
	pr := func(job, sha, key string, cause run.Cause) *run.Run {
		return &run.Run{Spec: run.Spec{
			Job: job, Type: run.Presubmit, Cause: cause, Requester: "octocat",
			Refs: run.Refs{Repo: seedRepo, CloneURL: "https://github.com/acme/widgets.git", BaseRef: seedMain,
				BaseSHA: "0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5", Pull: seedPull, HeadSHA: sha, HeadRef: "fix-flaky-retry", Author: "octocat",
				Title: seedTitle},
			TriggerKey: key,
		}}
	}

	// Postsubmit builds of main, one a day and then a few hours apart,
	// and the markers following them.
	latest, err := s.CreateMarker(ctx, &store.Marker{Name: freshMarker, Repo: seedRepo, Branch: seedMain})
	if err != nil {
		t.Fatal(err)
	}
	stable, err := s.CreateMarker(ctx, &store.Marker{Name: staleMarker, Repo: seedRepo, Branch: seedMain})
	if err != nil {
		t.Fatal(err)
	}
	var builds []*store.Build
	for i := 0; i < 16; i++ {
		clk.Step(14 * time.Hour)
		if i >= 10 {
			clk.SetTime(now.Add(-time.Duration(16-i) * 3 * time.Hour))
		}
		sha := fakeSHA("main", i)
		version := fmt.Sprintf("v1.4.%d", i)
		rn := mk(&run.Run{Spec: run.Spec{
			Job: "build", Type: run.Postsubmit, Cause: run.CauseEvent, Requester: "github",
			Refs: run.Refs{Repo: seedRepo, BaseRef: seedMain, BaseSHA: sha},
		}}, run.Success, 4*time.Minute, "go build ./...\nwrote dist/widgets-"+version+".tar.gz\n")
		b, err := s.CreateBuild(ctx, &store.Build{Repo: seedRepo, Branch: seedMain, Commit: sha, Version: version,
			Artifacts: []string{"https://artifacts.example.com/widgets/" + version + ".tar.gz"}, Job: "build", Run: rn.ID})
		if err != nil {
			t.Fatal(err)
		}
		builds = append(builds, b)
		latest.BuildID, latest.Run = b.ID, rn.ID
		if latest, err = s.UpdateMarker(ctx, latest); err != nil {
			t.Fatal(err)
		}
		if i <= 2 {
			stable.BuildID, stable.Run = b.ID, rn.ID
			if stable, err = s.UpdateMarker(ctx, stable); err != nil {
				t.Fatal(err)
			}
		}
	}
	newestAt := builds[len(builds)-1].CreatedAt
	failingSince := builds[3].CreatedAt.Add(time.Hour)
	clk.SetTime(now.Add(-10 * time.Minute))
	stable.Status = store.MarkerStatus{
		Conditions: []run.Condition{{Type: ConditionStale, Status: true, Reason: "GateFailing",
			Message: seedStaleText, Time: failingSince.Add(24 * time.Hour)}},
		NewerBuilds: 13, NewestBuildID: builds[15].ID, NewestVersion: builds[15].Version, NewestAt: &newestAt,
		GateFailures: 11, GateFailingSince: &failingSince,
	}
	if _, err := s.UpdateMarker(ctx, stable); err != nil {
		t.Fatal(err)
	}
	latest.Status = store.MarkerStatus{Conditions: []run.Condition{{Type: ConditionStale, Status: false, Reason: "Fresh", Time: now}}}
	if _, err := s.UpdateMarker(ctx, latest); err != nil {
		t.Fatal(err)
	}

	// Nightly periodic runs, testing the stable marker's build as it
	// falls behind.
	var nightly *run.Run
	for day := 7; day >= 1; day-- {
		clk.SetTime(now.Add(-time.Duration(day)*24*time.Hour + 3*time.Hour))
		newer := 13 - day
		if newer < 0 {
			newer = 0
		}
		state := run.Failure
		if day >= 6 {
			state = run.Success
		}
		nightly = mk(&run.Run{Spec: run.Spec{
			Job: "nightly-e2e", Type: run.Periodic, Cause: run.CauseCron, Requester: "scheduler",
			Refs: run.Refs{Repo: seedRepo, BaseRef: seedMain},
			Build: &run.BuildUnderTest{Marker: staleMarker, BuildID: builds[2].ID, Version: builds[2].Version, Commit: builds[2].Commit,
				MarkerAge: clk.Now().Sub(*stable.MovedAt), NewerBuilds: newer, NewestAge: 3 * time.Hour, Stale: day <= 5, Decision: map[bool]string{true: "run"}[day <= 5]},
			TriggerKey: run.PeriodicKey(seedRepo, "nightly-e2e", clk.Now()),
		}}, state, 23*time.Minute, nightlyLog(state))
	}
	out.Periodic = nightly.ID
	clk.SetTime(now.Add(-50 * time.Minute))
	smoke := mk(&run.Run{Spec: run.Spec{
		Job: "hourly-smoke", Type: run.Periodic, Cause: run.CauseInterval, Requester: "scheduler",
		Refs:  run.Refs{Repo: seedRepo, BaseRef: seedMain},
		Build: &run.BuildUnderTest{Marker: freshMarker, BuildID: builds[15].ID, Version: builds[15].Version, Commit: builds[15].Commit, MarkerAge: 2 * time.Hour},
	}}, run.Success, 2*time.Minute, "smoke test passed\n")
	lastNightly := now.Add(-24*time.Hour + 3*time.Hour).Truncate(time.Hour)
	for _, sc := range []*store.Schedule{
		{Repo: seedRepo, Job: "nightly-e2e", Spec: "cron 0 3 * * * UTC", Next: lastNightly.Add(24 * time.Hour), LastDue: &lastNightly, LastRun: nightly.ID},
		{Repo: seedRepo, Job: "hourly-smoke", Spec: "interval 1h0m0s", Next: now.Add(10 * time.Minute), LastDue: ptr(now.Add(-50 * time.Minute)), LastRun: smoke.ID,
			Skips: []store.Skip{{Due: now.Add(-5 * time.Hour), Last: now.Add(-5 * time.Hour), Count: 1, Reason: "PreviousRunUnfinished",
				Message: "the previous run was still running and the concurrency policy is forbid", At: now.Add(-5 * time.Hour)}}},
	} {
		if _, err := s.CreateSchedule(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}

	// Pull request 42: a first commit that failed, then a new head.
	clk.SetTime(now.Add(-5 * time.Hour))
	failed := mk(pr("unit", seedOldHead, run.AutoKey(seedRepo, seedPull, seedOldHead, "unit"), run.CauseEvent), run.Failure, 3*time.Minute, unitLog(false))
	out.PullFailed = failed.ID
	mk(pr("lint", seedOldHead, run.AutoKey(seedRepo, seedPull, seedOldHead, "lint"), run.CauseEvent), run.Success, 40*time.Second, "golangci-lint run\n0 issues.\n")
	clk.Step(20 * time.Minute)
	mk(pr("unit", seedOldHead, run.RequestKey(seedRepo, seedPull, seedOldHead, "unit", "c1001"), run.CauseCommand), run.Failure, 3*time.Minute, unitLog(false))
	clk.SetTime(now.Add(-40 * time.Minute))
	head := mk(pr("unit", seedHead, run.AutoKey(seedRepo, seedPull, seedHead, "unit"), run.CauseEvent), run.Success, 3*time.Minute, unitLog(true))
	out.PullHead = head.ID
	mk(pr("lint", seedHead, run.AutoKey(seedRepo, seedPull, seedHead, "lint"), run.CauseEvent), run.Failure, 50*time.Second,
		"golangci-lint run\nretry.go:41:2: ineffectual assignment to err (ineffassign)\n1 issue.\n")
	// An infrastructure error: lockstep's fault, not the tests'.
	broken := pr("integration", seedHead, run.AutoKey(seedRepo, seedPull, seedHead, "integration"), run.CauseEvent)
	broken.Status.Reason, broken.Status.Message = "CloneFailed", "git fetch https://github.com/acme/widgets.git: connection reset by peer"
	broken = mk(broken, run.Error, 5*time.Second, "lockstep: cloning https://github.com/acme/widgets.git\nfatal: unable to access 'https://github.com/acme/widgets.git/': Connection reset by peer\n")
	out.PullError = broken.ID
	for _, p := range []*store.PullState{
		{Repo: seedRepo, Number: seedPull, Title: seedTitle, State: "open", Author: "octocat", HeadSHA: seedHead, HeadRef: "fix-flaky-retry",
			BaseRef: seedMain, Labels: []string{"ok-to-test"}, Mergeable: ptr(true), UpdatedAt: now.Add(-41 * time.Minute)},
		{Repo: seedRepo, Number: 43, Title: "Fix a typo in the README", State: "open", Author: "newcomer", HeadSHA: "feedface" + strings.Repeat("0", 32), HeadRef: "typo",
			BaseRef: seedMain, Labels: []string{"needs-ok-to-test"}, UpdatedAt: now.Add(-2 * time.Hour)},
		{Repo: seedRepo, Number: 44, Title: "Split the store into packages", State: "open", Author: "octocat", HeadSHA: "c0ffee" + strings.Repeat("0", 34), HeadRef: "big-refactor",
			BaseRef: seedMain, Mergeable: ptr(false), UpdatedAt: now.Add(-3 * time.Hour)},
	} {
		if _, err := s.PutPullState(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	// Webhook deliveries, and what each caused.
	deliveries := []struct {
		id, event string
		state     store.DeliveryState
		outcome   store.Outcome
		ago       time.Duration
	}{
		{"72d3162e-cc78-11e3-81ab-4c9367dc0958", "pull_request", store.DeliveryDone, store.Outcome{Repo: seedRepo, Pull: seedPull, Action: "opened", Sender: "octocat", Runs: []run.ID{failed.ID, failed.ID + 1}}, 5 * time.Hour},
		{"9a1b0f44-0c11-4a52-9d7e-1f2d3c4b5a69", "issue_comment", store.DeliveryDone, store.Outcome{Repo: seedRepo, Pull: seedPull, Action: "created", Sender: "octocat", Runs: []run.ID{failed.ID + 2}, Notes: []string{"/test unit"}}, 4*time.Hour + 40*time.Minute},
		{"b0e4c6d2-7a1f-4e3b-8c9d-0a1b2c3d4e5f", "pull_request", store.DeliveryDone, store.Outcome{Repo: seedRepo, Pull: 43, Action: "opened", Sender: "newcomer", Ignored: "the author newcomer is not trusted: waiting for /ok-to-test", Notes: []string{"added label needs-ok-to-test", "posted the welcome comment"}}, 2 * time.Hour},
		{"c1f5d7e3-8b2a-4f4c-9dae-1b2c3d4e5f60", "issue_comment", store.DeliveryDone, store.Outcome{Repo: seedRepo, Pull: 17, Action: "created", Sender: "someone", Ignored: "the comment is on an issue, not a pull request"}, 90 * time.Minute},
		{"d2a6e8f4-9c3b-4a5d-8ebf-2c3d4e5f6071", "pull_request", store.DeliveryDone, store.Outcome{Repo: seedRepo, Pull: seedPull, Action: "synchronize", Sender: "octocat", Runs: []run.ID{head.ID, head.ID + 1}, Aborted: []run.ID{failed.ID + 1}}, 41 * time.Minute},
		{"e3b7f9a5-ad4c-4b6e-9fc0-3d4e5f607182", "pull_request", store.DeliveryDone, store.Outcome{Repo: seedRepo, Pull: seedPull, Action: "synchronize", Sender: "octocat", Stale: true}, 39 * time.Minute},
		{"f4c8a0b6-be5d-4c7f-a0d1-4e5f60718293", "push", store.DeliveryFailed, store.Outcome{Repo: seedRepo, Action: "push", Error: "read configuration: GitHub answered 502 Bad Gateway"}, 20 * time.Minute},
		{"05d9b1c7-cf6e-4d80-b1e2-5f6071829304", "check_suite", store.DeliveryPending, store.Outcome{}, time.Minute},
	}
	for _, d := range deliveries {
		if _, err := s.AcceptDelivery(ctx, &store.Delivery{ID: d.id, Event: d.event, ReceivedAt: now.Add(-d.ago), Body: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		if d.state != store.DeliveryPending {
			if err := s.FinishDelivery(ctx, d.id, d.state, d.outcome); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Deliveries the intake refused.
	if err := s.RecordRefusals(ctx, []store.Refusal{
		{ID: "1c0ffee0-aaaa-4bbb-8ccc-000000000001", Event: "pull_request", ReceivedAt: now.Add(-3 * time.Hour), Status: 401, Outcome: "unauthorized",
			Message: "signature does not match the body: check that the webhook's secret is lockstep's", Remote: "192.0.2.10:41234"},
		{ID: "1c0ffee0-aaaa-4bbb-8ccc-000000000002", Event: "push", ReceivedAt: now.Add(-2 * time.Hour), Status: 415, Outcome: "unsupported_media",
			Message: `content type "application/x-www-form-urlencoded" is not application/json: set the webhook's content type to application/json`, Remote: "192.0.2.10:41240"},
		{ID: "1c0ffee0-aaaa-4bbb-8ccc-000000000003", Event: "pull_request", ReceivedAt: now.Add(-30 * time.Minute), Status: 413, Outcome: "too_large",
			Message: "body is larger than 26214400 bytes", Remote: "192.0.2.10:41300"},
	}); err != nil {
		t.Fatal(err)
	}

	// Filler: many runs of another repository.
	clk.SetTime(now.Add(-3 * time.Hour))
	for i := 0; i < seedFiller; i++ {
		clk.Step(time.Minute)
		job := []string{"unit", "lint", "integration"}[i%3]
		state := run.Success
		if i%9 == 4 {
			state = run.Failure
		}
		pull := 100 + i/6
		sha := fakeSHA("gadgets", i/6)
		mk(&run.Run{Spec: run.Spec{
			Job: job, Type: run.Presubmit, Cause: run.CauseEvent, Requester: "dependabot[bot]",
			Refs: run.Refs{Repo: "acme/gadgets", BaseRef: "main", Pull: pull, HeadSHA: sha, Author: "dependabot[bot]"},
		}}, state, time.Duration(30+i)*time.Second, "ok\n")
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// fakeSHA returns a commit SHA that looks real and is the same every time.
func fakeSHA(branch string, i int) string {
	return fmt.Sprintf("%x", sha1.Sum([]byte(fmt.Sprintf("%s/%d", branch, i))))
}

func unitLog(pass bool) string {
	var b strings.Builder
	b.WriteString("lockstep: cloning https://github.com/acme/widgets.git\nlockstep: merging a1b2c3d4e5\n")
	b.WriteString("go test -race ./...\n")
	for _, p := range []string{"api", "cache", "client", "config", "retry", "server", "store"} {
		if !pass && p == "retry" {
			b.WriteString("\x1b[1;31m--- FAIL: TestRetryBackoff (0.31s)\x1b[0m\n    retry_test.go:88: got 3 attempts, want 5\nFAIL\n")
			b.WriteString("\x1b[31mFAIL\x1b[0m\tgithub.com/acme/widgets/" + p + "\t0.412s\n")
			continue
		}
		b.WriteString("\x1b[32mok\x1b[0m  \tgithub.com/acme/widgets/" + p + "\t1.2" + fmt.Sprint(len(p)) + "s\n")
	}
	if !pass {
		b.WriteString("make: *** [Makefile:12: unit] Error 1\n")
	}
	return b.String()
}

func nightlyLog(state run.State) string {
	var b strings.Builder
	b.WriteString("fetching widgets v1.4.2 from https://artifacts.example.com/widgets/v1.4.2.tar.gz\n")
	b.WriteString("starting 3-node cluster\ncluster ready in 41s\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&b, "[e2e] scenario %02d/12 ... ok\n", i)
	}
	if state == run.Failure {
		b.WriteString("[e2e] upgrade-from-v1.3 ... FAILED\n  expected schema version 7, got 6 (fixed in v1.4.9)\n")
		b.WriteString("1 of 13 scenarios failed\n")
	}
	return b.String()
}

// seedConfig configures the seeded periodics.
const seedConfig = `repos:
  acme/widgets:
    clone_url: https://github.com/acme/widgets.git
    periodics:
      - name: nightly-e2e
        cron: "0 3 * * *"
        run: make e2e
        build: {marker: stable}
      - name: hourly-smoke
        interval: 1h
        run: make smoke
      - name: release-gate
        interval: 24h
        run: make gate
        build: {branch: main}
markers:
  - name: stable
    repo: acme/widgets
    branch: main
    gate: release-gate
  - name: latest
    repo: acme/widgets
    branch: main
    gate: release-gate
`

// seedPeriodics starts the seeded periodics at once, as lockstep serve
// does: periodic.RunNow over the store and seedConfig.
func seedPeriodics(t testing.TB, st periodic.RunNowStore, now func() time.Time) PeriodicStarter {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(seedConfig), "seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return PeriodicStarterFunc(func(ctx context.Context, repo, job, request string) (*run.Run, bool, error) {
		return periodic.RunNow(ctx, st, cfg, repo, job, request, now())
	})
}

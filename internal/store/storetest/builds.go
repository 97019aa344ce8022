package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// BuildsStore is what RunBuilds tests: the runs, schedules, builds and
// markers of one store.
type BuildsStore interface {
	store.Runs
	store.Schedules
	store.Builds
	store.Markers
}

// RunBuilds runs the conformance suite of schedules, builds and markers
// against the stores newStore makes, under the same contract as Run.
func RunBuilds(t *testing.T, newStore func(t *testing.T) BuildsStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s BuildsStore)
	}{
		{"ScheduleCreateGet", testScheduleCreateGet},
		{"ScheduleStaleVersion", testScheduleStaleVersion},
		{"ScheduleConcurrentCAS", testScheduleConcurrentCAS},
		{"ScheduleSkipsCapped", testScheduleSkipsCapped},
		{"FireSchedule", testFireSchedule},
		{"FireScheduleStaleCreatesNothing", testFireScheduleStale},
		{"FireScheduleExistingRun", testFireScheduleExistingRun},
		{"FireScheduleConcurrent", testFireScheduleConcurrent},
		{"BuildCreateGet", testBuildCreateGet},
		{"BuildOnePerRun", testBuildOnePerRun},
		{"BuildInvalid", testBuildInvalid},
		{"BuildListAndCount", testBuildListAndCount},
		{"MarkerCreateGet", testMarkerCreateGet},
		{"MarkerMovesForward", testMarkerMovesForward},
		{"MarkerRefusesBadMoves", testMarkerRefusesBadMoves},
		{"MarkerStatusCAS", testMarkerStatusCAS},
		{"MarkerConcurrentMoves", testMarkerConcurrentMoves},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// schedT0 is the time the schedules of the suite start from.
func schedT0() time.Time { return time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) }

func makeSchedule(job string) *store.Schedule {
	return &store.Schedule{Repo: "acme/widgets", Job: job, Spec: "interval 1m0s", Next: schedT0().Add(time.Minute)}
}

func mustCreateSchedule(t *testing.T, s BuildsStore, sc *store.Schedule) *store.Schedule {
	t.Helper()
	got, err := s.CreateSchedule(t.Context(), sc)
	if err != nil {
		t.Fatalf("CreateSchedule(%s): %v", sc.Job, err)
	}
	return got
}

func testScheduleCreateGet(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	before := mustRevision(t, s)
	created := mustCreateSchedule(t, s, makeSchedule("nightly"))
	if created.ResourceVersion <= before || created.CreatedAt.IsZero() {
		t.Errorf("created schedule: version %d (revision before %d), created %v; want a newer version and a time",
			created.ResourceVersion, before, created.CreatedAt)
	}
	if !created.Next.Equal(schedT0().Add(time.Minute)) || created.Spec != "interval 1m0s" {
		t.Errorf("created schedule = %+v, want the next time and spec given", created)
	}
	got, err := s.GetSchedule(ctx, "acme/widgets", "nightly")
	if err != nil {
		t.Fatalf("GetSchedule: %v", err)
	}
	if diff := cmp.Diff(created, got); diff != "" {
		t.Errorf("GetSchedule differs from CreateSchedule (-create +get):\n%s", diff)
	}
	again := makeSchedule("nightly")
	again.Next = schedT0().Add(time.Hour)
	existing, err := s.CreateSchedule(ctx, again)
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second CreateSchedule: got %v, want ErrAlreadyExists", err)
	}
	if diff := cmp.Diff(created, existing); diff != "" {
		t.Errorf("second CreateSchedule returned (-first +returned):\n%s", diff)
	}
	if _, err := s.GetSchedule(ctx, "acme/widgets", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSchedule(nope): got %v, want ErrNotFound", err)
	}
	if _, err := s.CreateSchedule(ctx, &store.Schedule{Repo: "acme/widgets"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateSchedule without a job: got %v, want ErrInvalid", err)
	}
	mustCreateSchedule(t, s, makeSchedule("alpha"))
	all, err := s.ListSchedules(ctx)
	if err != nil {
		t.Fatalf("ListSchedules: %v", err)
	}
	var jobs []string
	for _, sc := range all {
		jobs = append(jobs, sc.Job)
	}
	if diff := cmp.Diff([]string{"alpha", "nightly"}, jobs); diff != "" {
		t.Errorf("ListSchedules jobs (-want +got):\n%s", diff)
	}
}

func testScheduleStaleVersion(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	created := mustCreateSchedule(t, s, makeSchedule("nightly"))
	next := *created
	next.Next = created.Next.Add(time.Minute)
	due := created.Next
	next.LastDue = &due
	updated, err := s.UpdateSchedule(ctx, &next)
	if err != nil {
		t.Fatalf("UpdateSchedule: %v", err)
	}
	if updated.ResourceVersion <= created.ResourceVersion || !updated.Next.Equal(next.Next) || !updated.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("updated = %+v, want a newer version, the new Next and the creation time kept", updated)
	}
	stale := *created
	stale.Next = schedT0().Add(24 * time.Hour)
	if _, err := s.UpdateSchedule(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("UpdateSchedule with a stale version: got %v, want ErrConflict", err)
	}
	got, err := s.GetSchedule(ctx, "acme/widgets", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(updated, got); diff != "" {
		t.Errorf("a conflicting update changed the schedule (-want +got):\n%s", diff)
	}
	missing := makeSchedule("missing")
	if _, err := s.UpdateSchedule(ctx, missing); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSchedule of a missing schedule: got %v, want ErrNotFound", err)
	}
}

// testScheduleConcurrentCAS advances one schedule from many goroutines,
// each re-reading on conflict: every advance lands, none is lost.
func testScheduleConcurrentCAS(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	mustCreateSchedule(t, s, makeSchedule("nightly"))
	const writers, each = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				errs <- retryConflicts(ctx, func() error {
					cur, err := s.GetSchedule(ctx, "acme/widgets", "nightly")
					if err != nil {
						return err
					}
					cur.Next = cur.Next.Add(time.Minute)
					_, err = s.UpdateSchedule(ctx, cur)
					return err
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetSchedule(ctx, "acme/widgets", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if want := schedT0().Add(time.Minute + writers*each*time.Minute); !got.Next.Equal(want) {
		t.Errorf("Next = %v, want %v: an advance was lost", got.Next, want)
	}
}

// retryConflicts calls fn until it returns something other than
// store.ErrConflict, as a controller's queue retries a key.
func retryConflicts(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func testScheduleSkipsCapped(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	sc := mustCreateSchedule(t, s, makeSchedule("nightly"))
	for i := range store.MaxSkips + 5 {
		due := schedT0().Add(time.Duration(i) * time.Minute)
		sc.AddSkip(store.Skip{Due: due, Last: due, Count: 1, Reason: "PreviousRunUnfinished", Message: fmt.Sprint(i), At: due})
	}
	got, err := s.UpdateSchedule(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Skips) != store.MaxSkips {
		t.Fatalf("%d skips kept, want %d", len(got.Skips), store.MaxSkips)
	}
	if first, last := got.Skips[0].Message, got.Skips[len(got.Skips)-1].Message; first != fmt.Sprint(store.MaxSkips+4) || last != "5" {
		t.Errorf("skips run from %s to %s, want the newest (%d) first and the oldest kept (5) last", first, last, store.MaxSkips+4)
	}
}

func makePeriodicRun(job string, due time.Time) *run.Run {
	return &run.Run{Spec: run.Spec{
		Job: job, Type: run.Periodic, Cause: run.CauseCron,
		Refs:   run.Refs{Repo: "acme/widgets"},
		Script: "make e2e", Timeout: time.Hour,
		Build:      &run.BuildUnderTest{Marker: "latest-green", BuildID: 3, Version: "v1.2.3", NewerBuilds: 2, Stale: true, Decision: "run"},
		TriggerKey: run.PeriodicKey("acme/widgets", job, due),
	}}
}

func testFireSchedule(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	sc := mustCreateSchedule(t, s, makeSchedule("nightly"))
	due := sc.Next
	next := *sc
	next.Next, next.LastDue = due.Add(time.Minute), &due
	gotSched, gotRun, err := s.FireSchedule(ctx, &next, makePeriodicRun("nightly", due))
	if err != nil {
		t.Fatalf("FireSchedule: %v", err)
	}
	if gotRun.ID <= 0 || gotRun.Status.State != run.Pending || gotRun.Spec.Build == nil || gotRun.Spec.Build.Version != "v1.2.3" {
		t.Errorf("fired run = %+v, want a pending run with its build", gotRun)
	}
	if gotSched.LastRun != gotRun.ID || !gotSched.Next.Equal(due.Add(time.Minute)) || gotSched.ResourceVersion <= sc.ResourceVersion {
		t.Errorf("fired schedule = %+v, want LastRun %d, the next time and a newer version", gotSched, gotRun.ID)
	}
	stored := mustGet(t, s, gotRun.ID)
	if diff := cmp.Diff(gotRun, stored); diff != "" {
		t.Errorf("GetRun differs from the fired run (-fired +get):\n%s", diff)
	}
	// A run may be created finished, for a fire whose policy fails it.
	failed := makePeriodicRun("nightly", next.Next)
	failed.Status = run.Status{State: run.Failure, Reason: "StaleBuild"}
	next2 := *gotSched
	next2.Next = next.Next.Add(time.Minute)
	_, gotFailed, err := s.FireSchedule(ctx, &next2, failed)
	if err != nil {
		t.Fatalf("FireSchedule with a failed run: %v", err)
	}
	if gotFailed.Status.State != run.Failure || gotFailed.Status.Reason != "StaleBuild" {
		t.Errorf("fired failed run: state %s reason %s, want failure StaleBuild", gotFailed.Status.State, gotFailed.Status.Reason)
	}
	bad := makePeriodicRun("nightly", schedT0())
	bad.Spec.Job = ""
	if _, _, err := s.FireSchedule(ctx, gotSched, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("FireSchedule with an invalid run: got %v, want ErrInvalid", err)
	}
}

func testFireScheduleStale(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	sc := mustCreateSchedule(t, s, makeSchedule("nightly"))
	moved := *sc
	moved.Next = sc.Next.Add(time.Minute)
	if _, err := s.UpdateSchedule(ctx, &moved); err != nil {
		t.Fatal(err)
	}
	r := makePeriodicRun("nightly", sc.Next)
	if _, _, err := s.FireSchedule(ctx, sc, r); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("FireSchedule with a stale version: got %v, want ErrConflict", err)
	}
	page, err := s.ListRuns(ctx, store.ListOptions{Job: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Runs) != 0 {
		t.Errorf("a conflicting fire created runs %v", keys(page.Runs))
	}
}

func testFireScheduleExistingRun(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	sc := mustCreateSchedule(t, s, makeSchedule("nightly"))
	existing := mustCreate(t, s, makePeriodicRun("nightly", sc.Next))
	next := *sc
	next.Next = sc.Next.Add(time.Minute)
	gotSched, gotRun, err := s.FireSchedule(ctx, &next, makePeriodicRun("nightly", sc.Next))
	if err != nil {
		t.Fatalf("FireSchedule with an existing key: %v", err)
	}
	if gotRun.ID != existing.ID || gotSched.LastRun != existing.ID || !gotSched.Next.Equal(next.Next) {
		t.Errorf("got run %d, schedule LastRun %d Next %v; want the existing run %d and the schedule advanced",
			gotRun.ID, gotSched.LastRun, gotSched.Next, existing.ID)
	}
}

// testFireScheduleConcurrent has many schedulers fire one due time from
// the same read: one wins, the others conflict, and one run exists.
func testFireScheduleConcurrent(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	sc := mustCreateSchedule(t, s, makeSchedule("nightly"))
	const schedulers = 8
	var wg sync.WaitGroup
	results := make(chan error, schedulers)
	for range schedulers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := *sc
			due := sc.Next
			next.Next, next.LastDue = due.Add(time.Minute), &due
			_, _, err := s.FireSchedule(ctx, &next, makePeriodicRun("nightly", due))
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	var won int
	for err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("FireSchedule: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d fires won, want 1", won)
	}
	page, err := s.ListRuns(ctx, store.ListOptions{Job: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Runs) != 1 {
		t.Errorf("%d runs, want 1: %v", len(page.Runs), keys(page.Runs))
	}
}

// producer creates a run that can produce a build, and returns its ID.
func buildProducer(t *testing.T, s BuildsStore, key string) run.ID {
	t.Helper()
	r := newRun(key)
	r.Spec.Type, r.Spec.Refs.Pull, r.Spec.Refs.HeadSHA = run.Postsubmit, 0, ""
	return mustCreate(t, s, r).ID
}

func makeBuild(t *testing.T, s BuildsStore, branch, version string) *store.Build {
	t.Helper()
	id := buildProducer(t, s, "build/"+branch+"/"+version)
	b, err := s.CreateBuild(t.Context(), &store.Build{
		Repo: "acme/widgets", Branch: branch, Commit: "c-" + version, Version: version,
		Artifacts: []string{"gs://builds/" + version}, Job: "build", Run: id,
	})
	if err != nil {
		t.Fatalf("CreateBuild(%s): %v", version, err)
	}
	return b
}

func testBuildCreateGet(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	b := makeBuild(t, s, "main", "v1.0.0")
	if b.ID <= 0 || b.CreatedAt.IsZero() || b.ResourceVersion <= 0 {
		t.Errorf("created build = %+v, want an ID, a creation time and a version", b)
	}
	got, err := s.GetBuild(ctx, b.ID)
	if err != nil {
		t.Fatalf("GetBuild: %v", err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Errorf("GetBuild differs from CreateBuild (-create +get):\n%s", diff)
	}
	if got.Version != "v1.0.0" || got.Commit != "c-v1.0.0" || !slices.Equal(got.Artifacts, []string{"gs://builds/v1.0.0"}) {
		t.Errorf("build fields = %+v", got)
	}
	if _, err := s.GetBuild(ctx, b.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBuild(missing): got %v, want ErrNotFound", err)
	}
}

func testBuildOnePerRun(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	first := makeBuild(t, s, "main", "v1.0.0")
	again, err := s.CreateBuild(ctx, &store.Build{Repo: "acme/widgets", Branch: "main", Version: "v9", Job: "build", Run: first.Run})
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second CreateBuild for run %d: got %v, want ErrAlreadyExists", first.Run, err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("second CreateBuild returned (-first +returned):\n%s", diff)
	}
	if n, err := s.CountBuilds(ctx, store.BuildListOptions{}); err != nil || n != 1 {
		t.Errorf("CountBuilds = %d, %v; want 1", n, err)
	}
}

func testBuildInvalid(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	for _, b := range []store.Build{
		{Branch: "main", Version: "v1", Run: 1},
		{Repo: "acme/widgets", Version: "v1", Run: 1},
		{Repo: "acme/widgets", Branch: "main", Run: 1},
		{Repo: "acme/widgets", Branch: "main", Version: "v1"},
	} {
		if _, err := s.CreateBuild(ctx, &b); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateBuild(%+v): got %v, want ErrInvalid", b, err)
		}
	}
}

func testBuildListAndCount(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	var main []int64
	for i := range 5 {
		main = append(main, makeBuild(t, s, "main", fmt.Sprintf("v1.%d", i)).ID)
		makeBuild(t, s, "release-1", fmt.Sprintf("v0.%d", i))
	}
	ids := func(bs []*store.Build) []int64 {
		var out []int64
		for _, b := range bs {
			out = append(out, b.ID)
		}
		return out
	}
	rev := slices.Clone(main)
	slices.Reverse(rev)
	tests := []struct {
		name string
		opts store.BuildListOptions
		want []int64
	}{
		{"branch, newest first", store.BuildListOptions{Repo: "acme/widgets", Branch: "main"}, rev},
		{"limit", store.BuildListOptions{Branch: "main", Limit: 2}, rev[:2]},
		{"after", store.BuildListOptions{Branch: "main", AfterID: main[2]}, rev[:2]},
		{"before", store.BuildListOptions{Branch: "main", BeforeID: main[2]}, rev[3:]},
		{"other repo", store.BuildListOptions{Repo: "acme/other"}, nil},
	}
	for _, tt := range tests {
		got, err := s.ListBuilds(ctx, tt.opts)
		if err != nil {
			t.Fatalf("%s: ListBuilds: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, ids(got)); diff != "" {
			t.Errorf("%s: ListBuilds (-want +got):\n%s", tt.name, diff)
		}
		opts := tt.opts
		opts.Limit = 0
		n, err := s.CountBuilds(ctx, opts)
		if err != nil {
			t.Fatalf("%s: CountBuilds: %v", tt.name, err)
		}
		if tt.opts.Limit == 0 && n != len(tt.want) {
			t.Errorf("%s: CountBuilds = %d, want %d", tt.name, n, len(tt.want))
		}
	}
	all, err := s.ListBuilds(ctx, store.BuildListOptions{})
	if err != nil || len(all) != 10 {
		t.Errorf("ListBuilds(all) = %d builds, %v; want 10", len(all), err)
	}
}

func mustCreateMarkerOn(t *testing.T, s BuildsStore, name, branch string) *store.Marker {
	t.Helper()
	m, err := s.CreateMarker(t.Context(), &store.Marker{Name: name, Repo: "acme/widgets", Branch: branch})
	if err != nil {
		t.Fatalf("CreateMarker(%s): %v", name, err)
	}
	return m
}

func testMarkerCreateGet(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	m := mustCreateMarkerOn(t, s, "latest-green", "main")
	if m.BuildID != 0 || m.MovedAt != nil || m.CreatedAt.IsZero() || m.ResourceVersion <= 0 {
		t.Errorf("created marker = %+v, want no build, a creation time and a version", m)
	}
	got, err := s.GetMarker(ctx, "latest-green")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("GetMarker differs (-create +get):\n%s", diff)
	}
	again, err := s.CreateMarker(ctx, &store.Marker{Name: "latest-green", Repo: "acme/widgets", Branch: "dev"})
	if !errors.Is(err, store.ErrAlreadyExists) || again.Branch != "main" {
		t.Errorf("second CreateMarker: got %+v, %v; want the first marker and ErrAlreadyExists", again, err)
	}
	if _, err := s.GetMarker(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetMarker(nope): got %v, want ErrNotFound", err)
	}
	if _, err := s.CreateMarker(ctx, &store.Marker{Name: "x", Repo: "acme/widgets"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateMarker without a branch: got %v, want ErrInvalid", err)
	}
	mustCreateMarkerOn(t, s, "a-first", "main")
	all, err := s.ListMarkers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "a-first" || all[1].Name != "latest-green" {
		t.Errorf("ListMarkers = %v, want a-first then latest-green", all)
	}
}

func moveMarkerTo(ctx context.Context, s BuildsStore, m *store.Marker, build int64, by run.ID) (*store.Marker, error) {
	next := *m
	next.BuildID, next.Run = build, by
	return s.UpdateMarker(ctx, &next)
}

func testMarkerMovesForward(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	m := mustCreateMarkerOn(t, s, "latest-green", "main")
	b1 := makeBuild(t, s, "main", "v1")
	b2 := makeBuild(t, s, "main", "v2")
	b3 := makeBuild(t, s, "main", "v3")
	m, err := moveMarkerTo(ctx, s, m, b1.ID, 11)
	if err != nil {
		t.Fatalf("move to b1: %v", err)
	}
	if m.BuildID != b1.ID || m.Version != "v1" || m.Commit != "c-v1" || m.MovedAt == nil || m.Run != 11 {
		t.Errorf("after the first move: %+v, want build %d, its version and commit, a move time and run 11", m, b1.ID)
	}
	// Jumping over a build is a move forward.
	m, err = moveMarkerTo(ctx, s, m, b3.ID, 13)
	if err != nil {
		t.Fatalf("move to b3: %v", err)
	}
	if m.BuildID != b3.ID || m.Version != "v3" {
		t.Errorf("after the jump: %+v, want build %d", m, b3.ID)
	}
	// The same build again is no move and, with nothing else changed,
	// no write.
	same, err := moveMarkerTo(ctx, s, m, b3.ID, 99)
	if err != nil {
		t.Fatal(err)
	}
	if same.ResourceVersion != m.ResourceVersion || same.Run != 13 {
		t.Errorf("a no-op update wrote: version %d -> %d, run %d", m.ResourceVersion, same.ResourceVersion, same.Run)
	}
	hist, err := s.MarkerHistory(ctx, "latest-green", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.MarkerMove{
		{Marker: "latest-green", FromBuild: b1.ID, ToBuild: b3.ID, Version: "v3", Run: 13},
		{Marker: "latest-green", FromBuild: 0, ToBuild: b1.ID, Version: "v1", Run: 11},
	}
	for i := range hist {
		if hist[i].At.IsZero() {
			t.Errorf("history[%d] has no time", i)
		}
		hist[i].At = time.Time{}
	}
	if diff := cmp.Diff(want, hist); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if _, err := moveMarkerTo(ctx, s, m, b2.ID, 12); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("move back to b2: got %v, want ErrInvalid", err)
	}
}

func testMarkerRefusesBadMoves(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	m := mustCreateMarkerOn(t, s, "latest-green", "main")
	main1 := makeBuild(t, s, "main", "v1")
	main2 := makeBuild(t, s, "main", "v2")
	other := makeBuild(t, s, "release-1", "v0.9")
	m, err := moveMarkerTo(ctx, s, m, main2.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*store.Marker)
	}{
		{"backward", func(m *store.Marker) { m.BuildID = main1.ID }},
		{"other branch", func(m *store.Marker) { m.BuildID = other.ID }},
		{"missing build", func(m *store.Marker) { m.BuildID = other.ID + 1000 }},
		{"changed branch", func(m *store.Marker) { m.Branch = "release-1" }},
		{"changed repo", func(m *store.Marker) { m.Repo = "acme/other" }},
	}
	for _, tt := range tests {
		next := *m
		tt.edit(&next)
		if _, err := s.UpdateMarker(ctx, &next); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tt.name, err)
		}
	}
	got, err := s.GetMarker(ctx, "latest-green")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("refused moves changed the marker (-want +got):\n%s", diff)
	}
	if hist, _ := s.MarkerHistory(ctx, "latest-green", 0); len(hist) != 1 {
		t.Errorf("history has %d moves, want 1", len(hist))
	}
}

func testMarkerStatusCAS(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	m := mustCreateMarkerOn(t, s, "latest-green", "main")
	next := *m
	next.Status = store.MarkerStatus{
		Conditions:  []run.Condition{{Type: "Stale", Status: true, Reason: "MaxAgeExceeded", Message: "old", Time: schedT0()}},
		NewerBuilds: 3, GateFailures: 2, GateFailingSince: schedPtr(schedT0()),
	}
	updated, err := s.UpdateMarker(ctx, &next)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(next.Status, updated.Status); diff != "" {
		t.Errorf("status (-written +stored):\n%s", diff)
	}
	if updated.ResourceVersion <= m.ResourceVersion || updated.BuildID != 0 {
		t.Errorf("updated = %+v, want a newer version and no build", updated)
	}
	stale := *m
	stale.Status.NewerBuilds = 7
	if _, err := s.UpdateMarker(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale UpdateMarker: got %v, want ErrConflict", err)
	}
	if _, err := s.UpdateMarker(ctx, &store.Marker{Name: "nope", Repo: "acme/widgets", Branch: "main"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateMarker(nope): got %v, want ErrNotFound", err)
	}
}

// testMarkerConcurrentMoves has many writers move one marker, each to its
// own build, re-reading on conflict and giving up when the marker is
// already at or past its build: the marker ends on the newest build, and
// its history only ever goes forward.
func testMarkerConcurrentMoves(t *testing.T, s BuildsStore) {
	ctx := t.Context()
	mustCreateMarkerOn(t, s, "latest-green", "main")
	const n = 12
	var builds []int64
	for i := range n {
		builds = append(builds, makeBuild(t, s, "main", fmt.Sprintf("v%d", i)).ID)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, id := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- retryConflicts(ctx, func() error {
				cur, err := s.GetMarker(ctx, "latest-green")
				if err != nil {
					return err
				}
				if cur.BuildID >= id {
					return nil
				}
				_, err = moveMarkerTo(ctx, s, cur, id, run.ID(i+1))
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("move: %v", err)
		}
	}
	got, err := s.GetMarker(ctx, "latest-green")
	if err != nil {
		t.Fatal(err)
	}
	if want := builds[n-1]; got.BuildID != want {
		t.Errorf("marker ends on build %d, want the newest, %d", got.BuildID, want)
	}
	hist, err := s.MarkerHistory(ctx, "latest-green", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, mv := range hist {
		if mv.ToBuild <= mv.FromBuild {
			t.Errorf("history[%d] moves backward: %d -> %d", i, mv.FromBuild, mv.ToBuild)
		}
		if i+1 < len(hist) && hist[i+1].ToBuild != mv.FromBuild {
			t.Errorf("history[%d] starts at %d, but the move before it ended at %d", i, mv.FromBuild, hist[i+1].ToBuild)
		}
	}
}

func schedPtr[T any](v T) *T { return &v }

package builds

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

func TestParseBuildOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want BuildOutput
	}{
		{"", BuildOutput{}},
		{"v1.2.3", BuildOutput{Version: "v1.2.3"}},
		{"\n  v1.2.3  \n\ngs://b/v1.2.3/\n commit=abc \nhttps://x/y\n", BuildOutput{
			Version: "v1.2.3", Commit: "abc", Artifacts: []string{"gs://b/v1.2.3/", "https://x/y"},
		}},
		{"v1\r\nart\r\n", BuildOutput{Version: "v1", Artifacts: []string{"art"}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ParseBuildOutput(tt.in)); diff != "" {
			t.Errorf("ParseBuildOutput(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestRecordBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	c := e.newController(nil)
	ctx := context.Background()
	reconcile := func(id run.ID) {
		t.Helper()
		if _, err := c.Reconcile(ctx, Key{Run: id}); err != nil {
			t.Fatalf("Reconcile(run %d): %v", id, err)
		}
	}
	good := e.finish(e.createRun("build", func(r *run.Run) { r.Spec.Refs.BaseRef = "refs/heads/main" }).ID,
		run.Success, "v1.0.0\ngs://builds/v1.0.0\n")
	reconcile(good.ID)
	reconcile(good.ID) // idempotent
	for _, r := range []*run.Run{
		e.finish(e.createRun("build", nil).ID, run.Failure, "v1.0.1"), // failed
		e.finish(e.createRun("build", nil).ID, run.Success, "  \n"),   // wrote nothing
		e.finish(e.createRun("lint", nil).ID, run.Success, "v9"),      // produces no builds
		e.createRun("build", nil),                                     // unfinished
	} {
		reconcile(r.ID)
	}
	reconcile(9999) // missing
	bs, err := e.store.ListBuilds(ctx, store.BuildListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 {
		t.Fatalf("%d builds, want 1: %+v", len(bs), bs)
	}
	want := &store.Build{
		ID: bs[0].ID, ResourceVersion: bs[0].ResourceVersion, CreatedAt: t0,
		Repo: "acme/kops", Branch: "main", Commit: good.Spec.Refs.BaseSHA, Version: "v1.0.0",
		Artifacts: []string{"gs://builds/v1.0.0"}, Job: "build", Run: good.ID,
	}
	if diff := cmp.Diff(want, bs[0]); diff != "" {
		t.Errorf("build (-want +got):\n%s", diff)
	}
}

// TestControllerFollowsRuns runs the Controller: a build finished before
// it started is found by its listing, one finished after by its watch,
// and a gate success moves the marker.
func TestControllerFollowsRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	before := e.finish(e.createRun("build", nil).ID, run.Success, "v1")
	e.start(e.newController(nil))
	count := func() int {
		n, err := e.store.CountBuilds(context.Background(), store.BuildListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, "the build made before the start", func() bool { return count() == 1 })
	e.finish(e.createRun("build", nil).ID, run.Success, "v2")
	waitFor(t, "the build made after the start", func() bool { return count() == 2 })
	bs, _ := e.store.ListBuilds(context.Background(), store.BuildListOptions{})
	if bs[1].Run != before.ID || bs[0].Version != "v2" {
		t.Errorf("builds %+v, %+v", bs[0], bs[1])
	}
	e.gateRun(bs[0], run.Success)
	waitFor(t, "the marker to move", func() bool {
		m, err := e.store.GetMarker(context.Background(), "latest-green")
		return err == nil && m.BuildID == bs[0].ID
	})
	waitFor(t, "the marker file", func() bool {
		b, err := os.ReadFile(filepath.Join(e.dir, "markers", "latest-green.txt"))
		return err == nil && string(b) == "v2\n"
	})
}

// TestConcurrentGateRuns has gate runs for different builds finish at
// once and be reconciled by many goroutines of two Controllers, in every
// order: the marker ends on the newest build and never moved backward.
func TestConcurrentGateRuns(t *testing.T) {
	t.Parallel()
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, testConfig)
			var gates []*run.Run
			var newest int64
			for i := range 6 {
				b := e.build(fmt.Sprintf("v%d", i))
				gates = append(gates, e.gateRun(b, run.Success))
				newest = b.ID
			}
			ctrls := []*Controller{e.newController(nil), e.newController(nil)}
			var wg sync.WaitGroup
			errs := make(chan error, 4*len(gates))
			for i := range 4 * len(gates) {
				g := gates[(i*7+round)%len(gates)]
				c := ctrls[i%2]
				wg.Add(1)
				go func() {
					defer wg.Done()
					// A failed reconcile is retried, as the controller's
					// queue would.
					for attempt := 0; ; attempt++ {
						_, err := c.Reconcile(context.Background(), Key{Run: g.ID})
						if err == nil || attempt == 20 {
							errs <- err
							return
						}
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
			if m := e.marker(); m.BuildID != newest {
				t.Fatalf("the marker ends on build %d, want the newest, %d", m.BuildID, newest)
			}
			hist, err := e.store.MarkerHistory(context.Background(), "latest-green", 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, mv := range hist {
				if mv.ToBuild <= mv.FromBuild {
					t.Errorf("the marker moved backward: %+v", mv)
				}
			}
		})
	}
}

func TestMarkerStalenessByGate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `repos:
  acme/kops:
    postsubmits:
      - name: build
        run: make build
        produces_build: true
    periodics:
      - name: updown
        interval: 1h
        run: make updown
        build: {branch: main}
markers:
  - name: latest-green
    repo: acme/kops
    branch: main
    gate: updown
`)
	reg := prometheus.NewRegistry()
	c := e.newController(reg)
	ctx := context.Background()
	evaluate := func() run.Condition {
		t.Helper()
		if _, err := c.Reconcile(ctx, Key{Marker: "latest-green"}); err != nil {
			t.Fatal(err)
		}
		cond, _ := (&run.Status{Conditions: e.marker().Status.Conditions}).Condition(ConditionStale)
		return cond
	}
	if cond := evaluate(); cond.Status || cond.Reason != ReasonNoBuild {
		t.Errorf("new marker: %+v, want not stale, NoBuild", cond)
	}
	b1 := e.build("v1")
	if _, err := c.Reconcile(ctx, Key{Run: e.gateRun(b1, run.Success).ID}); err != nil {
		t.Fatal(err)
	}
	if cond := evaluate(); cond.Status || cond.Reason != ReasonFresh || cond.Message != "marker latest-green has named build v1 for 0 seconds; no newer build" {
		t.Errorf("after the first green run: %+v", cond)
	}
	b2 := e.build("v2")
	for i := range 3 {
		e.clk.Step(time.Hour)
		e.gateRun(b2, run.Failure)
		cond := evaluate()
		if want := i == 2; cond.Status != want {
			t.Errorf("after %d gate failures: stale %v, want %v (%s)", i+1, cond.Status, want, cond.Message)
		}
	}
	cond := evaluate()
	if cond.Reason != ReasonGateFailing ||
		cond.Message != "marker latest-green has named build v1 for 3 hours; gate job updown failed 3 times since 2026-03-01; newest build v2 is 0 seconds newer (1 newer build)" {
		t.Errorf("condition = %+v", cond)
	}
	if n, err := testutil.GatherAndCount(reg, "lockstep_marker_stale", "lockstep_marker_age_seconds", "lockstep_marker_newer_builds"); err != nil || n != 3 {
		t.Errorf("gauges: %d series, %v; want 3", n, err)
	}
	// An aborted gate run (replaced) neither passes nor fails.
	e.gateRun(b2, run.Aborted)
	if cond := evaluate(); !cond.Status || e.marker().Status.GateFailures != 3 {
		t.Errorf("after an aborted run: %+v, failures %d", cond, e.marker().Status.GateFailures)
	}
	// The gate passes on v2: the marker moves and is fresh.
	if _, err := c.Reconcile(ctx, Key{Run: e.gateRun(b2, run.Success).ID}); err != nil {
		t.Fatal(err)
	}
	if cond := evaluate(); cond.Status || e.marker().BuildID != b2.ID {
		t.Errorf("after the gate passed: %+v, marker on build %d", cond, e.marker().BuildID)
	}
	// A marker removed from the configuration leaves the gauges.
	e.setConfig(`repos: {}`)
	if _, err := c.Reconcile(ctx, Key{Marker: "latest-green"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg); n != 0 {
		t.Errorf("%d series after the marker was removed, want 0", n)
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	mc, _ := e.config().Marker("latest-green")
	zero := 0
	noGate := mc
	noGate.MaxGateFailures = &zero
	moved := t0
	build := &store.Build{ID: 3, Version: "v3", CreatedAt: t0.Add(-time.Hour)}
	newest := &store.Build{ID: 9, Version: "v9", CreatedAt: t0.Add(5 * 24 * time.Hour)}
	newestEarly := &store.Build{ID: 9, Version: "v9", CreatedAt: t0}
	since := t0.Add(24 * time.Hour)
	m := &store.Marker{Name: "latest-green", CreatedAt: t0.Add(-time.Hour), BuildID: 3, Version: "v3", MovedAt: &moved}
	failing := observation{build: build, newer: 6, newest: newest, gateRuns: 4, gateFailures: 4, gateFailingSince: &since}
	tests := []struct {
		name    string
		mc      *store.Marker
		cfgGate bool
		obs     observation
		now     time.Time
		stale   bool
		reason  string
		message string
		recheck time.Duration
	}{
		{
			name: "fresh", mc: m, cfgGate: true, obs: observation{build: build, gateRuns: 1}, now: t0.Add(time.Hour),
			reason: ReasonFresh, message: "marker latest-green has named build v3 for 1 hour; no newer build",
			recheck: 47*time.Hour + time.Millisecond,
		},
		{
			name: "past max_age", mc: m, cfgGate: true, obs: observation{build: build, gateRuns: 1}, now: t0.Add(49 * time.Hour),
			stale: true, reason: ReasonMaxAgeExceeded,
			message: "marker latest-green has named build v3 for 2 days, longer than its max_age of 48h0m0s; no newer build",
		},
		{
			name: "gate failing with newer builds", mc: m, cfgGate: true, obs: failing, now: t0.Add(10 * time.Hour),
			stale: true, reason: ReasonGateFailing, recheck: 38*time.Hour + time.Millisecond,
			message: "marker latest-green has named build v3 for 10 hours; gate job updown failed 4 times since 2026-03-02; newest build v9 is 5 days newer (6 newer builds)",
		},
		{
			name: "gate rule off", mc: m, obs: failing, now: t0.Add(time.Hour),
			reason: ReasonFresh, recheck: 47*time.Hour + time.Millisecond,
			message: "marker latest-green has named build v3 for 1 hour; gate job updown failed 4 times since 2026-03-02; newest build v9 is 5 days newer (6 newer builds)",
		},
		{
			name: "no build, no gate run", mc: &store.Marker{Name: "latest-green", CreatedAt: t0}, cfgGate: true,
			obs: observation{newer: 1, newest: newestEarly}, now: t0.Add(24 * time.Hour),
			reason: ReasonNoBuild, recheck: 24*time.Hour + time.Millisecond,
			message: "marker latest-green names no build yet (created 1 day ago); gate job updown has no finished runs; newest build v9 was made 1 day ago (1 newer build)",
		},
	}
	for _, tt := range tests {
		cfg := mc
		if !tt.cfgGate {
			cfg = noGate
		}
		ev := evaluate(cfg, tt.mc, tt.obs, tt.now)
		if ev.stale != tt.stale || ev.reason != tt.reason || ev.message != tt.message || ev.recheck != tt.recheck {
			t.Errorf("%s: got stale %v reason %s recheck %v\n%q\nwant stale %v reason %s recheck %v\n%q",
				tt.name, ev.stale, ev.reason, ev.recheck, ev.message, tt.stale, tt.reason, tt.recheck, tt.message)
		}
	}
}

func TestMarkerStaleness(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	mc, _ := e.config().Marker("latest-green")
	moved := t0
	staleCond := []run.Condition{{Type: ConditionStale, Status: true, Reason: ReasonGateFailing, Message: "gate job updown failed 3 times since 2026-03-01"}}
	tests := []struct {
		name    string
		m       store.Marker
		maxAge  time.Duration
		now     time.Time
		stale   bool
		reason  string
		message string
	}{
		{"fresh", store.Marker{BuildID: 3, Version: "v3", MovedAt: &moved}, 0, t0.Add(time.Hour), false, ReasonFresh, ""},
		{"marker's max_age", store.Marker{BuildID: 3, Version: "v3", MovedAt: &moved}, 0, t0.Add(49 * time.Hour), true, ReasonMaxAgeExceeded,
			"marker latest-green has named build v3 for 2 days, longer than the max_age of 48h0m0s"},
		{"consumer's max_age", store.Marker{BuildID: 3, Version: "v3", MovedAt: &moved}, 2 * time.Hour, t0.Add(3 * time.Hour), true, ReasonMaxAgeExceeded,
			"marker latest-green has named build v3 for 3 hours, longer than the max_age of 2h0m0s"},
		{"recorded condition", store.Marker{BuildID: 3, Version: "v3", MovedAt: &moved, Status: store.MarkerStatus{ObservedBuildID: 3, Conditions: staleCond}},
			0, t0.Add(time.Hour), true, ReasonGateFailing, "gate job updown failed 3 times since 2026-03-01"},
		{"condition of an older build", store.Marker{BuildID: 4, Version: "v4", MovedAt: &moved, Status: store.MarkerStatus{ObservedBuildID: 3, Conditions: staleCond}},
			0, t0.Add(time.Hour), false, ReasonFresh, ""},
		{"no build", store.Marker{CreatedAt: t0}, 0, t0.Add(time.Hour), false, ReasonNoBuild, ""},
	}
	for _, tt := range tests {
		tt.m.Name = "latest-green"
		got := MarkerStaleness(mc, &tt.m, tt.maxAge, tt.now)
		if got.Stale != tt.stale || got.Reason != tt.reason || got.Message != tt.message {
			t.Errorf("%s: got %+v, want stale %v reason %s message %q", tt.name, got, tt.stale, tt.reason, tt.message)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig)
	ctx := context.Background()
	cfg := e.config()
	branch := func() Resolution {
		t.Helper()
		res, err := Resolve(ctx, e.store, cfg, "acme/kops", configBuild("", "main", 0), e.clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	fromMarker := func(maxAge time.Duration) Resolution {
		t.Helper()
		res, err := Resolve(ctx, e.store, cfg, "acme/other", configBuild("latest-green", "", maxAge), e.clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := branch(); res.Build != nil || res.Reason != ReasonNoBuild || res.Message != "acme/kops@main has no build yet" {
		t.Errorf("branch without builds: %+v", res)
	}
	if res := fromMarker(0); res.Build != nil || res.Reason != ReasonNoBuild {
		t.Errorf("marker not stored: %+v", res)
	}
	b1 := e.build("v1")
	c := e.newController(nil)
	if _, err := c.Reconcile(ctx, Key{Run: e.gateRun(b1, run.Success).ID}); err != nil {
		t.Fatal(err)
	}
	e.clk.Step(time.Hour)
	b2 := e.build("v2")
	e.clk.Step(time.Hour)
	if res := branch(); res.Build == nil || res.Build.ID != b2.ID || *res.UnderTest != (run.BuildUnderTest{BuildID: b2.ID, Version: "v2", Commit: b2.Commit}) {
		t.Errorf("branch: %+v", res)
	}
	res := fromMarker(0)
	want := run.BuildUnderTest{Marker: "latest-green", BuildID: b1.ID, Version: "v1", Commit: b1.Commit,
		MarkerAge: 2 * time.Hour, NewerBuilds: 1, NewestAge: time.Hour}
	if res.Stale || res.UnderTest == nil || *res.UnderTest != want {
		t.Errorf("marker: %+v\nunder test %+v\nwant %+v", res, res.UnderTest, want)
	}
	res = fromMarker(time.Hour)
	if !res.Stale || !res.UnderTest.Stale || res.Reason != ReasonMaxAgeExceeded {
		t.Errorf("marker past the consumer's max_age: %+v", res)
	}
	wantEnv := map[string]string{
		EnvBuildID: fmt.Sprint(b1.ID), EnvBuildVersion: "v1", EnvBuildCommit: b1.Commit, EnvBuildArtifacts: "",
		EnvBuildMarker: "latest-green", EnvBuildStale: "true",
	}
	if diff := cmp.Diff(wantEnv, Env(res)); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
	if Env(Resolution{}) != nil {
		t.Error("Env of no build is not nil")
	}
}

func configBuild(marker, branch string, maxAge time.Duration) config.BuildSource {
	return config.BuildSource{Marker: marker, Branch: branch, MaxAge: config.Duration{Duration: maxAge}}
}

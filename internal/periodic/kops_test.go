package periodic

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockstep-ci/lockstep/internal/builds"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a
// logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const kopsConfig = `repos:
  acme/kops:
    periodics:
      - name: build
        cron: "0 1 * * *"
        run: make build
        branch: main
        produces_build: true
      - name: updown
        cron: "0 2 * * *"
        run: make updown
        build: {branch: main}
      - name: e2e
        cron: "0 3 * * *"
        run: make e2e
        build: {marker: latest-green}
markers:
  - name: latest-green
    repo: acme/kops
    branch: main
    gate: updown
    max_age: 48h
`

// TestKopsSequence replays kops #16533: a build every day for 30 days,
// and the gate job updown failing from day 3 to day 19. Every e2e run
// meanwhile reports the same build with a growing lag; the marker turns
// stale on the day its max_age passes, with a gauge, a condition and one
// warning; when the gate passes again on day 20 the marker jumps to the
// newest green build and the stale condition clears.
func TestKopsSequence(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kopsConfig)
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	markerDir := filepath.Join(e.dir, "markers")
	bc, err := builds.New(builds.Options{
		Store: e.store, Config: e.config, Clock: e.clk, Registerer: reg, MarkerDir: markerDir,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("builds controller: %v", err)
		}
	})
	e.startScheduler(Options{})
	waitFor(t, "the schedules", func() bool {
		return e.schedule("acme/kops", "build") != nil && e.schedule("acme/kops", "updown") != nil && e.schedule("acme/kops", "e2e") != nil
	})

	marker := func() *store.Marker {
		m, err := e.store.GetMarker(context.Background(), "latest-green")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	staleCondition := func() run.Condition {
		c, _ := (&run.Status{Conditions: marker().Status.Conditions}).Condition(builds.ConditionStale)
		return c
	}
	gauge := func(name string) float64 {
		t.Helper()
		out, err := testutil.GatherAndCount(reg, name)
		if err != nil || out != 1 {
			t.Fatalf("gather %s: %d series, %v", name, out, err)
		}
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return 0
	}

	var buildIDs []int64
	version := func(d int) string { return fmt.Sprintf("v1.29.0-alpha.4+%d", d) }
	day := func(d, hour int) time.Time { return time.Date(2026, 3, 1+d, hour, 0, 0, 0, time.UTC) }
	gatePasses := func(d int) bool { return d < 3 || d >= 20 }
	lastGreen := 0

	for d := range 30 {
		// 01:00: the build job makes build d.
		e.clk.SetTime(day(d, 1))
		e.caughtUp("acme/kops", "build")
		br := e.runs("acme/kops", "build")[d]
		e.finish(br.ID, run.Success, version(d)+"\nhttps://storage.example.com/kops/"+fmt.Sprint(d)+"/\ncommit=c"+fmt.Sprint(d))
		waitFor(t, fmt.Sprintf("build %d to be recorded", d), func() bool {
			n, err := e.store.CountBuilds(context.Background(), store.BuildListOptions{Repo: "acme/kops", Branch: "main"})
			return err == nil && n == d+1
		})
		bs, _ := e.store.ListBuilds(context.Background(), store.BuildListOptions{Limit: 1})
		if b := bs[0]; b.Version != version(d) || b.Commit != "c"+fmt.Sprint(d) || b.Run != br.ID || len(b.Artifacts) != 1 {
			t.Fatalf("day %d: build %+v", d, b)
		}
		buildIDs = append(buildIDs, bs[0].ID)

		// 02:00: the gate tests the newest build.
		e.clk.SetTime(day(d, 2))
		e.caughtUp("acme/kops", "updown")
		gr := e.runs("acme/kops", "updown")[d]
		if gr.Spec.Build == nil || gr.Spec.Build.BuildID != buildIDs[d] || gr.Spec.Env[builds.EnvBuildVersion] != version(d) {
			t.Fatalf("day %d: the gate run tests %+v, want the newest build %d", d, gr.Spec.Build, buildIDs[d])
		}
		if gatePasses(d) {
			e.finish(gr.ID, run.Success, "")
			lastGreen = d
			waitFor(t, fmt.Sprintf("day %d: the marker to move", d), func() bool { return marker().BuildID == buildIDs[d] })
		} else {
			e.finish(gr.ID, run.Failure, "")
			waitFor(t, fmt.Sprintf("day %d: the gate failure to be observed", d), func() bool {
				return marker().Status.GateFailures == d-2
			})
		}

		// 03:00: e2e tests the marker's build.
		e.clk.SetTime(day(d, 3))
		e.caughtUp("acme/kops", "e2e")
		er := e.runs("acme/kops", "e2e")[d]
		got := er.Spec.Build
		wantStale := d >= 4 && d < 20
		movedAt := day(lastGreen, 2)
		wantDecision := ""
		if wantStale {
			wantDecision = "run"
		}
		want := run.BuildUnderTest{
			Marker: "latest-green", BuildID: buildIDs[lastGreen], Version: version(lastGreen), Commit: "c" + fmt.Sprint(lastGreen),
			MarkerAge: day(d, 3).Sub(movedAt), NewerBuilds: d - lastGreen, Stale: wantStale, Decision: wantDecision,
		}
		if d > lastGreen {
			want.NewestAge = 2 * time.Hour // build d, made at 01:00
		}
		if got == nil {
			t.Fatalf("day %d: the e2e run names no build", d)
		}
		if *got != want {
			t.Errorf("day %d: e2e tested %+v\nwant %+v", d, *got, want)
		}
		if er.Spec.Env[builds.EnvBuildStale] != fmt.Sprint(wantStale) {
			t.Errorf("day %d: %s=%q, want %v", d, builds.EnvBuildStale, er.Spec.Env[builds.EnvBuildStale], wantStale)
		}
		e.finish(er.ID, run.Success, "")

		// The marker's condition, gauges and file follow.
		waitFor(t, fmt.Sprintf("day %d: the marker's condition", d), func() bool {
			c := staleCondition()
			return c.Type != "" && c.Status == wantStale && marker().Status.ObservedBuildID == buildIDs[lastGreen]
		})
		wantGauges := map[string]float64{
			"lockstep_marker_stale":       map[bool]float64{false: 0, true: 1}[wantStale],
			"lockstep_marker_age_seconds": day(d, 3).Sub(movedAt).Seconds(),
		}
		for name, want := range wantGauges {
			waitFor(t, fmt.Sprintf("day %d: %s to be %v (it is %v)", d, name, want, gauge(name)), func() bool { return gauge(name) == want })
		}
		waitFor(t, fmt.Sprintf("day %d: the marker file to hold %s", d, version(lastGreen)), func() bool {
			published, err := os.ReadFile(filepath.Join(markerDir, "latest-green.txt"))
			return err == nil && string(published) == version(lastGreen)+"\n"
		})
		if d == 10 {
			c := staleCondition()
			for _, part := range []string{
				"marker latest-green has named build v1.29.0-alpha.4+2 for 8 days, longer than its max_age of 48h0m0s",
				"gate job updown failed 8 times since 2026-03-04",
				"newest build v1.29.0-alpha.4+10 is 8 days newer (8 newer builds)",
			} {
				if !strings.Contains(c.Message, part) {
					t.Errorf("day 10: the stale condition says %q, missing %q", c.Message, part)
				}
			}
			if c.Reason != builds.ReasonMaxAgeExceeded {
				t.Errorf("day 10: reason %q, want %q", c.Reason, builds.ReasonMaxAgeExceeded)
			}
		}
	}

	m := marker()
	if m.BuildID != buildIDs[29] {
		t.Errorf("the marker ends on build %d, want the last, %d", m.BuildID, buildIDs[29])
	}
	hist, err := e.store.MarkerHistory(context.Background(), "latest-green", 0)
	if err != nil {
		t.Fatal(err)
	}
	var moves []int64
	for i := len(hist) - 1; i >= 0; i-- {
		moves = append(moves, hist[i].ToBuild)
	}
	wantMoves := append(append([]int64{}, buildIDs[:3]...), buildIDs[20:]...)
	if fmt.Sprint(moves) != fmt.Sprint(wantMoves) {
		t.Errorf("the marker moved to builds %v, want %v", moves, wantMoves)
	}
	out := logs.String()
	if n := strings.Count(out, "marker is stale"); n != 1 {
		t.Errorf("%d warnings that the marker is stale, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "marker is no longer stale"); n != 1 {
		t.Errorf("%d notices that the marker is no longer stale, want 1", n)
	}
}

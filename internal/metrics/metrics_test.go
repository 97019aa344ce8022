package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/transport"
)

// series gathers g and returns every sample as "name{k=v,...}" → value;
// a histogram gives its _count.
func series(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			name := mf.GetName()
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count{"+strings.Join(labels, ",")+"}"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func newMetrics(t *testing.T, opts Options) *Metrics {
	t.Helper()
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func TestExposition(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, Options{})

	m.ReconcileErrors("runner")(errors.New("boom"))
	m.ReconcileErrors("runner")(errors.New("boom"))
	m.ConflictRetried("reporter")
	q := m.WorkqueueProvider()
	q.NewDepthMetric("runner").Inc()
	q.NewAddsMetric("runner").Inc()
	q.NewRetriesMetric("runner").Inc()
	q.NewLatencyMetric("runner").Observe(0.5)
	q.NewWorkDurationMetric("runner").Observe(0.5)
	q.NewUnfinishedWorkSecondsMetric("runner").Set(3)
	q.NewLongestRunningProcessorSecondsMetric("runner").Set(2)

	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Remaining", "4999")
		w.Header().Set("X-RateLimit-Resource", "core")
	}))
	defer gh.Close()
	gm, err := transport.NewMetrics(m.Registerer())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: transport.NewInstrument(http.DefaultTransport, gm, nil)}
	resp, err := client.Get(gh.URL + "/repos/acme/widgets/pulls/7")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	got := series(t, m.Gatherer())
	want := map[string]float64{
		`lockstep_controller_reconcile_errors_total{controller=runner}`:           2,
		`lockstep_store_conflicts_retried_total{writer=reporter}`:                 1,
		`lockstep_workqueue_depth{controller=runner}`:                             1,
		`lockstep_workqueue_adds_total{controller=runner}`:                        1,
		`lockstep_workqueue_retries_total{controller=runner}`:                     1,
		`lockstep_workqueue_queue_duration_seconds_count{controller=runner}`:      1,
		`lockstep_workqueue_work_duration_seconds_count{controller=runner}`:       1,
		`lockstep_workqueue_unfinished_work_seconds{controller=runner}`:           3,
		`lockstep_workqueue_longest_running_processor_seconds{controller=runner}`: 2,
		`lockstep_github_rate_limit_remaining{resource=core}`:                     4999,
	}
	want["lockstep_github_requests_total{method=GET,route="+transport.Route("/repos/acme/widgets/pulls/7")+",status=200}"] = 1
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if _, ok := got["go_goroutines{}"]; !ok {
		t.Error("go_goroutines missing: the Go collector is not registered")
	}

	// Names, units and help texts follow Prometheus conventions.
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "lockstep_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}

	// The handler serves the exposition format.
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "lockstep_workqueue_depth{controller=\"runner\"} 1") {
		t.Errorf("GET /metrics: %d\n%s", rec.Code, rec.Body.String())
	}
}

func TestMarkerMetricsCanRegister(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, Options{})
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_marker_age_seconds", Help: "h"}, []string{"marker"})
	if err := m.Registerer().Register(g); err != nil {
		t.Fatalf("Register: %v", err)
	}
	g.WithLabelValues("stable").Set(60)
	if got := series(t, m.Gatherer())["lockstep_marker_age_seconds{marker=stable}"]; got != 60 {
		t.Errorf("got %v, want 60", got)
	}
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newRun(key, job string, cause run.Cause) *run.Run {
	return &run.Run{Spec: run.Spec{
		Job: job, Type: run.Presubmit, Cause: cause,
		Refs:       run.Refs{Repo: "acme/widgets", Pull: 1, HeadSHA: "abc"},
		Script:     "true",
		TriggerKey: key,
	}}
}

// advance moves r through the states to state, as the runner does.
func advance(t *testing.T, s store.Runs, r *run.Run, states ...run.State) *run.Run {
	t.Helper()
	start := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	for _, st := range states {
		r.Status.State = st
		switch {
		case st == run.Running:
			r.Status.StartedAt = &start
		case st.Terminal():
			end := start.Add(90 * time.Second)
			r.Status.FinishedAt = &end
		}
		var err error
		if r, err = s.UpdateRunStatus(context.Background(), r); err != nil {
			t.Fatalf("move run %d to %s: %v", r.ID, st, err)
		}
	}
	return r
}

// eventually polls cond until it holds or ten seconds pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened; last: %s", what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunMetricsFromFeed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openStore(t)

	// Before metrics start: one run finished, one running, one pending.
	done := advance(t, s, mustCreate(t, s, newRun("old/done", "unit", run.CauseEvent)), run.Scheduled, run.Running, run.Success)
	running := advance(t, s, mustCreate(t, s, newRun("old/running", "unit", run.CauseEvent)), run.Scheduled, run.Running)
	mustCreate(t, s, newRun("old/pending", "lint", run.CauseEvent))

	m := newMetrics(t, Options{Runs: s})
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() { defer wg.Done(); runErr = m.Run(ctx) }()

	eventually(t, "initial listing", func() (bool, string) {
		got := series(t, m.Gatherer())
		return got["lockstep_runs{state=running}"] == 1 && got["lockstep_runs{state=pending}"] == 1, fmt.Sprint(got["lockstep_runs{state=running}"])
	})

	// After: a reporter writes the old finished run again (not a new end),
	// the running one ends, and new runs come and go.
	done.Status.Reported = map[string]string{"github": "success"}
	if _, err := s.UpdateRunStatus(ctx, done); err != nil {
		t.Fatal(err)
	}
	advance(t, s, running, run.Failure)
	a := mustCreate(t, s, newRun("new/a", "unit", run.CauseCommand))
	mustCreate(t, s, newRun("new/b", "unit", run.CauseRerun))
	advance(t, s, a, run.Scheduled, run.Running, run.Success)
	c := mustCreate(t, s, newRun("new/c", "e2e", run.CauseCron))
	advance(t, s, c, run.Scheduled)

	want := map[string]float64{
		"lockstep_runs{state=pending}":                                                  2, // old/pending, new/b
		"lockstep_runs{state=scheduled}":                                                1, // new/c
		"lockstep_runs{state=running}":                                                  0,
		"lockstep_runs_created_total{cause=command}":                                    1,
		"lockstep_runs_created_total{cause=rerun}":                                      1,
		"lockstep_runs_created_total{cause=cron}":                                       1,
		"lockstep_run_duration_seconds_count{job=unit,repo=acme/widgets,state=failure}": 1,
		"lockstep_run_duration_seconds_count{job=unit,repo=acme/widgets,state=success}": 1,
	}
	eventually(t, "metrics from the feed", func() (bool, string) {
		got := series(t, m.Gatherer())
		sub := make(map[string]float64)
		for k := range want {
			sub[k] = got[k]
		}
		diff := cmp.Diff(want, sub)
		return diff == "", diff
	})
	got := series(t, m.Gatherer())
	if v, ok := got["lockstep_runs_created_total{cause=event}"]; ok {
		t.Errorf("runs created before metrics started were counted: %v", v)
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Errorf("Run: %v", runErr)
	}
}

func mustCreate(t *testing.T, s store.Runs, r *run.Run) *run.Run {
	t.Helper()
	out, err := s.CreateRun(context.Background(), r)
	if err != nil {
		t.Fatalf("CreateRun(%s): %v", r.Spec.TriggerKey, err)
	}
	return out
}

// TestRunTrackerGaps feeds events out of ID order, as a folding feed may.
func TestRunTrackerGaps(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, Options{})
	tr := &runTracker{m: m, maxID: 10, gaps: map[run.ID]struct{}{}, states: map[run.ID]run.State{}}
	m.active.set(tr.states)
	ev := func(id run.ID, cause run.Cause, state run.State) {
		r := newRun("k", "unit", cause)
		r.ID = id
		r.Status.State = state
		tr.observe(r)
	}
	ev(12, run.CauseEvent, run.Pending) // 11 is a gap
	ev(11, run.CauseCommand, run.Pending)
	ev(11, run.CauseCommand, run.Running)
	ev(9, run.CauseEvent, run.Success) // old, finished before start
	ev(5, run.CauseEvent, run.Pending) // old, unknown: tracked from now on
	got := series(t, m.Gatherer())
	want := map[string]float64{
		"lockstep_runs_created_total{cause=event}":   1,
		"lockstep_runs_created_total{cause=command}": 1,
		"lockstep_runs{state=pending}":               2,
		"lockstep_runs{state=running}":               1,
		"lockstep_runs{state=scheduled}":             0,
	}
	sub := make(map[string]float64)
	for k := range got {
		if strings.HasPrefix(k, "lockstep_runs") {
			sub[k] = got[k]
		}
	}
	if diff := cmp.Diff(want, sub); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if len(tr.gaps) != 0 {
		t.Errorf("gaps left: %v", tr.gaps)
	}

	// A jump far beyond maxGaps keeps the gap set bounded.
	ev(10+3*maxGaps, run.CauseEvent, run.Pending)
	if len(tr.gaps) > maxGaps {
		t.Errorf("got %d gaps, want at most %d", len(tr.gaps), maxGaps)
	}
}

func TestDeliveryOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    store.Delivery
		want string
	}{
		{store.Delivery{State: store.DeliveryFailed, Outcome: store.Outcome{Runs: []run.ID{1}}}, "failed"},
		{store.Delivery{State: store.DeliveryDone, Outcome: store.Outcome{Stale: true}}, "stale"},
		{store.Delivery{State: store.DeliveryDone, Outcome: store.Outcome{Runs: []run.ID{1}, Existing: []run.ID{2}}}, "created"},
		{store.Delivery{State: store.DeliveryDone, Outcome: store.Outcome{Aborted: []run.ID{1}}}, "aborted"},
		{store.Delivery{State: store.DeliveryDone, Outcome: store.Outcome{Existing: []run.ID{2}}}, "existing"},
		{store.Delivery{State: store.DeliveryDone, Outcome: store.Outcome{Ignored: "not a pull request"}}, "ignored"},
		{store.Delivery{State: store.DeliveryDone}, "ignored"},
	}
	for _, tt := range tests {
		if got := DeliveryOutcome(&tt.d); got != tt.want {
			t.Errorf("DeliveryOutcome(%+v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestDeliveryMetricsFromFeed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openStore(t)
	accept := func(id, event string) {
		t.Helper()
		if _, err := s.AcceptDelivery(ctx, &store.Delivery{ID: id, Event: event, ReceivedAt: time.Now(), Body: []byte("{}")}); err != nil {
			t.Fatalf("AcceptDelivery(%s): %v", id, err)
		}
	}
	finish := func(id string, state store.DeliveryState, o store.Outcome) {
		t.Helper()
		if err := s.FinishDelivery(ctx, id, state, o); err != nil {
			t.Fatalf("FinishDelivery(%s): %v", id, err)
		}
	}
	// Processed before metrics start: not counted.
	accept("d0", "pull_request")
	finish("d0", store.DeliveryDone, store.Outcome{Runs: []run.ID{1}})

	feed := &revisionSignal{DeliveryFeed: s, read: make(chan struct{})}
	m := newMetrics(t, Options{Deliveries: feed})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	select {
	case <-feed.read:
	case <-time.After(10 * time.Second):
		t.Fatal("the deliveries feed never read the store revision")
	}
	accept("d1", "pull_request")
	accept("d2", "issue_comment")
	accept("d3", "push")
	accept("d4", "pull_request")
	finish("d1", store.DeliveryDone, store.Outcome{Runs: []run.ID{1, 2}})
	finish("d2", store.DeliveryDone, store.Outcome{Ignored: "comment on an issue"})
	finish("d3", store.DeliveryFailed, store.Outcome{Error: "boom"})
	finish("d4", store.DeliveryDone, store.Outcome{Stale: true})

	want := map[string]float64{
		"lockstep_webhook_deliveries_total{event=pull_request,outcome=created}":  1,
		"lockstep_webhook_deliveries_total{event=issue_comment,outcome=ignored}": 1,
		"lockstep_webhook_deliveries_total{event=push,outcome=failed}":           1,
		"lockstep_webhook_deliveries_total{event=pull_request,outcome=stale}":    1,
	}
	eventually(t, "delivery metrics", func() (bool, string) {
		got := make(map[string]float64)
		for k, v := range series(t, m.Gatherer()) {
			if strings.HasPrefix(k, "lockstep_webhook_deliveries_total") {
				got[k] = v
			}
		}
		diff := cmp.Diff(want, got)
		return diff == "", diff
	})
}

// revisionSignal closes read once Revision has returned, after which the
// watcher sees every write.
type revisionSignal struct {
	DeliveryFeed
	once sync.Once
	read chan struct{}
}

func (r *revisionSignal) Revision(ctx context.Context) (int64, error) {
	rev, err := r.DeliveryFeed.Revision(ctx)
	r.once.Do(func() { close(r.read) })
	return rev, err
}

package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/metrics"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/transport"
)

// TestMetricsEndpoint serves the metrics registry at /metrics and checks
// that every family lockstep promises is exposed with its labels.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	e := newEnv(t, func(o *Options) {
		var err error
		m, err = metrics.New(metrics.Options{Runs: o.Store, Deliveries: o.Deliveries.(metrics.DeliveryFeed)})
		if err != nil {
			t.Fatal(err)
		}
		o.Metrics = m.Handler()
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	// Something for every family: a webhook processed, a run created and
	// finished, a controller's queue and errors, a conflict, a GitHub
	// call.
	scrape := func() string {
		_, body, _ := e.get(t, nil, "/metrics")
		return body
	}
	waitFor(t, "the run feed", func() bool { return strings.Contains(scrape(), `lockstep_runs{state="pending"}`) })
	rn := createRunning(t, e.store, "metrics/1", "")
	end := testNow.Add(time.Minute)
	rn.Status.State, rn.Status.FinishedAt = run.Success, &end
	if _, err := e.store.UpdateRunStatus(ctx, rn); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.AcceptDelivery(ctx, &store.Delivery{ID: "m-1", Event: "pull_request", Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.FinishDelivery(ctx, "m-1", store.DeliveryDone, store.Outcome{Runs: []run.ID{rn.ID}}); err != nil {
		t.Fatal(err)
	}
	m.WorkqueueProvider().NewDepthMetric("runner").Inc()
	m.ReconcileErrors("runner")(errors.New("boom"))
	m.ConflictRetried("runner")
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Remaining", "4321")
	}))
	defer gh.Close()
	gm, err := transport.NewMetrics(m.Registerer())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: transport.NewInstrument(http.DefaultTransport, gm, nil)}).Get(gh.URL + "/repos/acme/widgets")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	want := []string{
		`lockstep_webhook_deliveries_total{event="pull_request",outcome="created"} 1`,
		`lockstep_runs_created_total{cause="event"} 1`,
		`lockstep_runs{state="running"} 0`,
		`lockstep_run_duration_seconds_count{job="e2e",repo="acme/widgets",state="success"} 1`,
		`lockstep_run_duration_seconds_bucket{job="e2e",repo="acme/widgets",state="success",le="120"} 1`,
		`lockstep_workqueue_depth{controller="runner"} 1`,
		`lockstep_controller_reconcile_errors_total{controller="runner"} 1`,
		`lockstep_store_conflicts_retried_total{writer="runner"} 1`,
		`lockstep_github_requests_total{method="GET",`,
		`lockstep_github_rate_limit_remaining{resource="core"} 4321`,
		"# TYPE lockstep_run_duration_seconds histogram",
		"# HELP lockstep_runs ",
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		body := scrape()
		var missing []string
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q\n%s", missing, body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor polls cond until it holds, failing the test after ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package periodic

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

func TestRunNow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `repos:
  acme/widget:
    periodics:
      - name: nightly
        cron: "0 3 * * *"
        run: make e2e
      - name: gated
        interval: 1h
        run: make gated
        build: {branch: main}
`)
	ctx := context.Background()
	first, created, err := RunNow(ctx, e.store, e.config(), "acme/widget", "nightly", "req-1", e.clk.Now())
	if err != nil || !created {
		t.Fatalf("RunNow: created %v, err %v", created, err)
	}
	if first.Spec.Cause != run.CauseRunNow || first.Spec.Requester != RequesterAdmin || first.Spec.Type != run.Periodic || first.Spec.Script != "make e2e" {
		t.Errorf("run spec %+v: want a periodic run-now run asked for by admin", first.Spec)
	}
	// The same request again is the same run; another request, another.
	again, created, err := RunNow(ctx, e.store, e.config(), "acme/widget", "nightly", "req-1", e.clk.Now())
	if err != nil || created || again.ID != first.ID {
		t.Errorf("the same request again: run %v created %v err %v, want run %d, not created", again, created, err, first.ID)
	}
	other, created, err := RunNow(ctx, e.store, e.config(), "acme/widget", "nightly", "req-2", e.clk.Now())
	if err != nil || !created || other.ID == first.ID {
		t.Errorf("another request: run %v created %v err %v, want a new run", other, created, err)
	}
	if _, _, err := RunNow(ctx, e.store, e.config(), "acme/widget", "nope", "req-3", e.clk.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown job: err %v, want ErrNotFound", err)
	}
	// A job testing builds, with no build yet: refused, nothing created.
	if _, _, err := RunNow(ctx, e.store, e.config(), "acme/widget", "gated", "req-4", e.clk.Now()); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("no build to test: err %v, want ErrInvalid", err)
	}
	page, err := e.store.ListRuns(ctx, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Runs) != 2 {
		t.Errorf("%d runs stored, want 2", len(page.Runs))
	}
}

// TestRunNowSpec: a run made now is the run the schedule makes, but for
// its cause, requester and key, whatever executor the job names.
func TestRunNowSpec(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `gitlab:
  url: https://gitlab.example.com/
  token_file: /etc/lockstep/gitlab-token
repos:
  acme/widget:
    periodics:
      - name: local
        cron: "0 3 * * *"
        run: make e2e
        env: {FOO: bar}
      - name: pods
        cron: "0 3 * * *"
        executor: kubernetes
        image: golang:1.25
        run: go test ./...
        namespace: ci
      - name: pipeline
        cron: "0 3 * * *"
        executor: gitlab
        gitlab: {project: acme/widget-mirror, variables: {E2E: "1"}}
`)
	e.startScheduler(Options{})
	jobs := []string{"local", "pods", "pipeline"}
	waitFor(t, "the schedules", func() bool {
		for _, j := range jobs {
			if e.schedule("acme/widget", j) == nil {
				return false
			}
		}
		return true
	})
	e.clk.SetTime(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	e.caughtUp("acme/widget", jobs...)
	for _, j := range jobs {
		scheduled := e.runs("acme/widget", j)
		if len(scheduled) != 1 {
			t.Fatalf("%s: %d scheduled runs, want 1", j, len(scheduled))
		}
		now, _, err := RunNow(context.Background(), e.store, e.config(), "acme/widget", j, "req-"+j, e.clk.Now())
		if err != nil {
			t.Fatalf("RunNow %s: %v", j, err)
		}
		want := scheduled[0].Spec
		want.Cause, want.Requester, want.TriggerKey = run.CauseRunNow, RequesterAdmin, run.RunNowKey("acme/widget", j, "req-"+j)
		if diff := cmp.Diff(want, now.Spec); diff != "" {
			t.Errorf("%s: run now's spec differs from the scheduled run's (-want +got):\n%s", j, diff)
		}
	}
}

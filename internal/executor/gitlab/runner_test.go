package gitlab

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// startRunner runs the real runner over the env's store, with x as its
// gitlab executor, until the test ends.
func (e *env) startRunner(x *Executor) {
	e.t.Helper()
	r := runner.New(runner.Options{
		Store: e.store, Logger: slog.New(slog.DiscardHandler),
		Executors: map[string]executor.Executor{config.ExecutorGitLab: x},
		Config:    func() *config.Config { return config.Default() },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// createRun stores a gitlab run of pull request 7.
func (e *env) createRun(timeout time.Duration) *run.Run {
	e.t.Helper()
	r := e.newRun(true)
	r.ID = 0
	r.Spec.Timeout = timeout
	r.Spec.TriggerKey = "test/" + time.Now().String()
	created, err := e.store.CreateRun(context.Background(), r)
	if err != nil {
		e.t.Fatal(err)
	}
	return created
}

func (e *env) waitState(id run.ID, want ...run.State) *run.Run {
	e.t.Helper()
	var got *run.Run
	e.waitFor("run state "+string(want[0]), func() bool {
		var err error
		if got, err = e.store.GetRun(context.Background(), id); err != nil {
			e.t.Fatal(err)
		}
		for _, w := range want {
			if got.Status.State == w {
				return true
			}
		}
		return false
	})
	return got
}

// TestRunnerFollowsPipelineStates: through the real runner, a pending
// pipeline keeps the run scheduled, a running one makes it running, and
// its end is the run's, with the pipeline's page recorded.
func TestRunnerFollowsPipelineStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	e.startRunner(x)
	r := e.createRun(time.Hour)
	e.waitFor("the pipeline", func() bool { return len(e.gl.Pipelines(testProject)) == 1 })
	id := e.pipeline()
	got := e.waitState(r.ID, run.Scheduled)
	e.waitFor("the handle", func() bool {
		got, _ = e.store.GetRun(context.Background(), r.ID)
		return got.Status.Handle != ""
	})
	if got.Status.State != run.Scheduled || !strings.HasSuffix(got.Status.ExternalURL, "/-/pipelines/"+itoa(id)) {
		t.Errorf("run %s with URL %q while the pipeline is pending, want scheduled with the pipeline's page", got.Status.State, got.Status.ExternalURL)
	}
	jobs := e.jobIDs(id)
	e.gl.StartJob(jobs[0])
	e.waitState(r.ID, run.Running)
	e.gl.FinishJob(jobs[0], "failed", "runner_system_failure")
	got = e.waitState(r.ID, run.Error, run.Failure, run.Success, run.Aborted)
	if got.Status.State != run.Error || got.Status.Reason != "RunnerSystemFailure" || !strings.Contains(got.Status.Message, "runner_system_failure") {
		t.Errorf("run ended %s/%s: %s; want error/RunnerSystemFailure", got.Status.State, got.Status.Reason, got.Status.Message)
	}
	e.waitFor("the ref to be deleted", func() bool { return len(e.gl.Refs(testProject)) == 0 })
}

// TestRunnerScheduledStraightToDone: a pipeline lockstep only ever saw
// pending, then finished (its webhooks lost, found by polling), ends the
// run as it ended, never leaving it scheduled.
func TestRunnerScheduledStraightToDone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.gl.LoseWebhooks(1000)
	x := e.newExecutor(func(o *Options) { o.PollInterval = 100 * time.Millisecond })
	e.startRunner(x)
	r := e.createRun(time.Hour)
	e.waitFor("the pipeline", func() bool { return len(e.gl.Pipelines(testProject)) == 1 })
	id := e.pipeline()
	e.gl.SetPipelineStatus(id, "success") // the jobs' own webhooks never came
	got := e.waitState(r.ID, run.Success, run.Error, run.Failure, run.Aborted)
	if got.Status.State != run.Success || got.Status.StartedAt == nil {
		t.Errorf("run ended %s/%s (started %v), want success", got.Status.State, got.Status.Reason, got.Status.StartedAt)
	}
}

// TestSupersedeCancelsThePipeline: a new push to the pull request asks
// the runner to abort the run (the trigger's Superseded label): the
// pipeline is canceled on GitLab and its ref deleted.
func TestSupersedeCancelsThePipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	e.startRunner(x)
	r := e.createRun(time.Hour)
	e.waitFor("the pipeline", func() bool { return len(e.gl.Pipelines(testProject)) == 1 })
	id := e.pipeline()
	e.gl.StartJob(e.jobIDs(id)[0])
	e.waitState(r.ID, run.Running)
	err := store.RetryOnConflict(context.Background(), func() error {
		cur, err := e.store.GetRun(context.Background(), r.ID)
		if err != nil {
			return err
		}
		cur.RequestAbort(run.ReasonSuperseded, "a newer head")
		_, err = e.store.UpdateRun(context.Background(), cur)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := e.waitState(r.ID, run.Aborted)
	if got.Status.Reason != run.ReasonSuperseded {
		t.Errorf("run aborted for %s, want %s", got.Status.Reason, run.ReasonSuperseded)
	}
	if st := e.gl.Pipelines(testProject)[0].Status; st != "canceled" {
		t.Errorf("pipeline %s, want canceled", st)
	}
	e.waitFor("the ref to be deleted", func() bool { return len(e.gl.Refs(testProject)) == 0 })
}

// TestTimeoutCancelsThePipeline: a run past its timeout is aborted and
// its pipeline canceled.
func TestTimeoutCancelsThePipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	e.startRunner(x)
	r := e.createRun(2 * time.Second)
	got := e.waitState(r.ID, run.Aborted)
	if got.Status.Reason != runner.ReasonTimeout {
		t.Errorf("run aborted for %s, want %s", got.Status.Reason, runner.ReasonTimeout)
	}
	if st := e.gl.Pipelines(testProject)[0].Status; st != "canceled" {
		t.Errorf("pipeline %s, want canceled", st)
	}
}

// TestHookIntake checks POST /hook/gitlab's answers: the token compared,
// the delivery stored before the 2xx, a duplicate harmless, other events
// not stored.
func TestHookIntake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	body := `{"object_kind":"pipeline","object_attributes":{"id":5,"status":"success","ref":"lockstep/x/pr-1/1"},"project":{"path_with_namespace":"g/p"}}`
	post := func(h map[string]string, body string) int {
		req, _ := http.NewRequest(http.MethodPost, e.hookURL, strings.NewReader(body))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := map[string]string{HeaderToken: webhookToken, HeaderEvent: "Pipeline Hook", HeaderIdempotency: "key-1"}
	for _, tc := range []struct {
		name   string
		h      map[string]string
		body   string
		status int
	}{
		{"no token", map[string]string{HeaderEvent: "Pipeline Hook"}, body, 401},
		{"wrong token", map[string]string{HeaderToken: "hook-tokex", HeaderEvent: "Pipeline Hook"}, body, 401},
		{"other event", map[string]string{HeaderToken: webhookToken, HeaderEvent: "Push Hook"}, `{}`, 202},
		{"not a pipeline", map[string]string{HeaderToken: webhookToken, HeaderEvent: "Pipeline Hook"}, `{"object_kind":"push"}`, 400},
		{"pipeline", good, body, 202},
		{"the same again", good, body, 200},
	} {
		if got := post(tc.h, tc.body); got != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.status)
		}
	}
	d, err := e.store.GetDelivery(context.Background(), "gitlab-key-1")
	if err != nil {
		t.Fatalf("the accepted delivery is not stored: %v", err)
	}
	if d.Event != DeliveryEvent || string(d.Body) != body || d.Outcome.Repo != "g/p" {
		t.Errorf("stored %+v", d)
	}
	page, err := e.store.ListDeliveries(context.Background(), store.DeliveryListOptions{Limit: 10})
	if err != nil || len(page.Deliveries) != 1 {
		t.Errorf("%d deliveries stored (%v), want 1", len(page.Deliveries), err)
	}
	noToken := httptest.NewServer(NewHookHandler(HookOptions{Token: func() []byte { return nil }, Store: e.store}))
	defer noToken.Close()
	req, _ := http.NewRequest(http.MethodPost, noToken.URL, strings.NewReader(body))
	req.Header.Set(HeaderToken, "anything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Errorf("without a configured token: %d, want 500", resp.StatusCode)
	}
}

package gitlab

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/gitlab/gitlabtest"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// TestStartPushesTheMergeAndCreatesOnePipeline: the pull request's head
// merged onto its base is pushed under the run's ref, and one pipeline
// is created for that ref with lockstep's Prow-compatible variables.
func TestStartPushesTheMergeAndCreatesOnePipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	r := e.newRun(true)
	started := e.start(x, r, nil)

	ref := "lockstep/kubernetes-sigs/kubespray/pr-7/" + r.ID.String()
	sha := e.gl.RefSHA(testProject, ref)
	parents := strings.Fields(e.git(e.gl.RemoteURL(testProject), "rev-list", "--parents", "-n1", sha))
	if want := []string{sha, e.base, e.head}; !slices.Equal(parents, want) {
		t.Errorf("pushed commit and parents %v, want the merge of head onto base %v", parents, want)
	}
	id := e.pipeline()
	p := e.gl.Pipelines(testProject)[0]
	if p.Ref != ref || p.SHA != sha {
		t.Errorf("pipeline on %s@%s, want %s@%s", p.Ref, p.SHA, ref, sha)
	}
	if want := (executor.Started{Handle: testProject + "#" + itoa(id), LogPath: started.LogPath, URL: p.WebURL, Waiting: true}); started != want {
		t.Errorf("Start = %+v, want %+v", started, want)
	}
	vars := e.gl.Variables(id)
	for k, v := range map[string]string{
		"JOB_NAME": "kubespray", "JOB_TYPE": "presubmit", "PULL_NUMBER": "7", "PULL_PULL_SHA": e.head,
		"PULL_BASE_SHA": e.base, "PULL_BASE_REF": "main", "REPO_OWNER": "kubernetes-sigs", "REPO_NAME": "kubespray",
		"BUILD_ID": r.ID.String(), "LOCKSTEP_RUN_ID": r.ID.String(), "CI_PLATFORM": "packet", "A": "1",
	} {
		if vars[k] != v {
			t.Errorf("pipeline variable %s = %q, want %q", k, vars[k], v)
		}
	}
	// Starting again (the runner retrying) returns the same execution.
	again, err := x.Start(context.Background(), r, nil)
	if err != nil || again.Handle != started.Handle {
		t.Errorf("second Start = %+v, %v; want %s", again, err, started.Handle)
	}
	if n := len(e.gl.Pipelines(testProject)); n != 1 {
		t.Errorf("%d pipelines after a second Start, want 1", n)
	}
}

func TestMergeFalsePushesTheHead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	r := e.newRun(false)
	e.start(x, r, nil)
	if got := e.gl.RefSHA(testProject, Ref(r)); got != e.head {
		t.Errorf("pushed %s, want the head %s", got, e.head)
	}
}

// TestStateMapping drives pipelines through GitLab's statuses and checks
// the run's outcome for each, infrastructure failures included.
func TestStateMapping(t *testing.T) {
	t.Parallel()
	type step func(e *env, jobs []int64, pipeline int64)
	finish := func(status, reason string) step {
		return func(e *env, jobs []int64, _ int64) {
			for _, j := range jobs {
				e.gl.StartJob(j)
				e.gl.AppendTrace(j, "output\n")
				e.gl.FinishJob(j, status, reason)
			}
		}
	}
	tests := []struct {
		name   string
		jobs   []gitlabtest.JobSpec
		drive  step
		want   executor.Outcome
		reason string // of Infra
	}{
		{name: "success", drive: finish("success", ""), want: executor.Outcome{Done: true}},
		{name: "script failure is a failure", drive: finish("failed", "script_failure"),
			want: executor.Outcome{Done: true, ExitCode: 1, Message: "job lint (stage unit-tests) failed: script_failure"}},
		{name: "runner system failure is an error", drive: finish("failed", "runner_system_failure"), reason: "RunnerSystemFailure"},
		{name: "stuck or timeout is an error", drive: finish("failed", "stuck_or_timeout_failure"), reason: "StuckOrTimeoutFailure"},
		{name: "scheduler failure is an error", drive: finish("failed", "scheduler_failure"), reason: "SchedulerFailure"},
		{name: "api failure is an error", drive: finish("failed", "api_failure"), reason: "ApiFailure"},
		{name: "runner unsupported is an error", drive: finish("failed", "runner_unsupported"), reason: "RunnerUnsupported"},
		{name: "a script failure beside an infrastructure failure is a failure",
			jobs: []gitlabtest.JobSpec{{Name: "a", Stage: "s"}, {Name: "b", Stage: "s"}},
			drive: func(e *env, jobs []int64, _ int64) {
				e.gl.StartJob(jobs[0])
				e.gl.StartJob(jobs[1])
				e.gl.FinishJob(jobs[0], "failed", "runner_system_failure")
				e.gl.FinishJob(jobs[1], "failed", "script_failure")
			},
			want: executor.Outcome{Done: true, ExitCode: 1, Message: "job b (stage s) failed: script_failure; job a (stage s) failed: runner_system_failure"}},
		{name: "a job allowed to fail does not fail the run",
			jobs: []gitlabtest.JobSpec{{Name: "flaky", Stage: "s", AllowFailure: true}, {Name: "b", Stage: "s"}},
			drive: func(e *env, jobs []int64, _ int64) {
				e.gl.StartJob(jobs[0])
				e.gl.FinishJob(jobs[0], "failed", "script_failure")
				e.gl.StartJob(jobs[1])
				e.gl.FinishJob(jobs[1], "success", "")
			},
			want: executor.Outcome{Done: true}},
		{name: "canceled on GitLab is aborted", drive: func(e *env, jobs []int64, _ int64) {
			e.gl.StartJob(jobs[0])
			e.gl.FinishJob(jobs[0], "canceled", "")
			e.gl.FinishJob(jobs[1], "canceled", "")
		}, want: executor.Outcome{Done: true, Canceled: true, ExitCode: -1, Message: "the pipeline was canceled on GitLab"}},
		{name: "skipped tested nothing", drive: func(e *env, jobs []int64, _ int64) {
			for _, j := range jobs {
				e.gl.FinishJob(j, "skipped", "")
			}
		}, reason: ReasonPipelineSkipped},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, false, tc.jobs...)
			x := e.newExecutor()
			r := e.newRun(true)
			e.start(x, r, nil)
			id := e.pipeline()
			tc.drive(e, e.jobIDs(id), id)
			got := e.waitDone(x, r)
			if tc.reason != "" {
				if got.Infra == nil || got.Infra.Reason != tc.reason || !strings.Contains(got.Infra.Error(), "failed") && tc.reason != ReasonPipelineSkipped {
					t.Fatalf("outcome %+v (infra %v), want an infrastructure failure %s", got, got.Infra, tc.reason)
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWaitingRunningAndManual: created and pending pipelines are
// waiting, running and manual ones are under way, and the runner is told
// when the pipeline leaves the waiting states.
func TestWaitingRunningAndManual(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	r := e.newRun(true)
	var notified atomic.Int32
	e.start(x, r, func() { notified.Add(1) })
	id := e.pipeline()
	if out, _ := x.Status(context.Background(), r); !out.Waiting || out.Done {
		t.Fatalf("pending pipeline: %+v, want waiting", out)
	}
	jobs := e.jobIDs(id)
	e.gl.StartJob(jobs[0])
	e.waitFor("running", func() bool { out, _ := x.Status(context.Background(), r); return !out.Waiting })
	e.waitFor("the runner to be told", func() bool { return notified.Load() > 0 })
	e.gl.SetPipelineStatus(id, "manual")
	e.gl.Redeliver() // duplicates are harmless
	time.Sleep(0)
	if out, _ := x.Status(context.Background(), r); out.Waiting || out.Done {
		t.Errorf("manual pipeline: %+v, want under way", out)
	}
}

// TestCrashBetweenCreateAndRecord kills the executor right after GitLab
// created the pipeline and before lockstep recorded its handle: the next
// process adopts that pipeline instead of making a second.
func TestCrashBetweenCreateAndRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	crash := errors.New("killed")
	first := e.newExecutor(func(o *Options) {
		o.afterCreate = func(*run.Run, int64) error { return crash }
	})
	r := e.newRun(true)
	if _, err := first.Start(context.Background(), r, nil); !errors.Is(err, crash) {
		t.Fatalf("Start = %v, want the crash", err)
	}
	e.kill(first)
	created := e.pipeline()

	second := e.newExecutor()
	if _, err := second.Status(context.Background(), r); !errors.Is(err, executor.ErrUnknown) {
		t.Fatalf("Status of a run without a handle = %v, want ErrUnknown", err)
	}
	started := e.start(second, r, nil)
	if got := e.pipeline(); got != created || started.Handle != testProject+"#"+itoa(created) {
		t.Errorf("after the restart: pipeline %d, handle %s; want pipeline %d adopted", got, started.Handle, created)
	}
	log := e.readLog(r)
	if !strings.Contains(log, "adopted pipeline") {
		t.Errorf("the log does not say the pipeline was adopted:\n%s", log)
	}
	// The first attempt's lines stay, above the second's, in the file
	// and in the store.
	push, already := strings.Index(log, "lockstep: pushing "), strings.Index(log, " already has ")
	if push < 0 || already < push {
		t.Errorf("the log does not keep the first attempt's push above the second attempt's lines:\n%s", log)
	}
	e.kill(second)
	if stored := e.storedLog(r); stored != log {
		t.Errorf("stored log:\n%s\nwant the log file's:\n%s", stored, log)
	}
}

// TestLostWebhookRecoveredByPolling loses every webhook: the pipeline's
// end is found by polling after poll_interval.
func TestLostWebhookRecoveredByPolling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	clk := clocktesting.NewFakeClock(time.Now())
	x := e.newExecutor(func(o *Options) { o.Clock = clk; o.PollInterval = time.Minute })
	e.gl.LoseWebhooks(1000)
	r := e.newRun(true)
	e.start(x, r, nil)
	id := e.pipeline()
	for _, j := range e.jobIDs(id) {
		e.gl.StartJob(j)
		e.gl.AppendTrace(j, "trace of "+itoa(j)+"\n")
		e.gl.FinishJob(j, "success", "")
	}
	if out, _ := x.Status(context.Background(), r); out.Done {
		t.Fatalf("done before any poll: %+v", out)
	}
	e.waitFor("the follower to wait", clk.HasWaiters)
	clk.Step(time.Minute)
	out := e.waitDone(x, r)
	if !out.Done || out.Infra != nil || out.ExitCode != 0 {
		t.Errorf("outcome %+v, want success", out)
	}
	if log := e.readLog(r); !strings.Contains(log, "trace of") {
		t.Errorf("log without the traces:\n%s", log)
	}
}

// TestRestartFollowsTheSamePipeline: a new process finds the run's
// pipeline from its handle and follows it to its end, reading the log
// again from the start.
func TestRestartFollowsTheSamePipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	first := e.newExecutor()
	r := e.newRun(true)
	e.start(first, r, nil)
	id := e.pipeline()
	jobs := e.jobIDs(id)
	e.gl.StartJob(jobs[0])
	e.gl.AppendTrace(jobs[0], "before the restart\n")
	e.kill(first)

	second := e.newExecutor()
	if out, err := second.Status(context.Background(), r); err != nil || out.Done {
		t.Fatalf("Status after restart = %+v, %v; want under way", out, err)
	}
	e.gl.AppendTrace(jobs[0], "after the restart\n")
	e.gl.FinishJob(jobs[0], "success", "")
	e.gl.StartJob(jobs[1])
	e.gl.FinishJob(jobs[1], "success", "")
	if out := e.waitDone(second, r); out.Infra != nil || out.ExitCode != 0 {
		t.Errorf("outcome %+v, want success", out)
	}
	if n := len(e.gl.Pipelines(testProject)); n != 1 {
		t.Errorf("%d pipelines, want 1", n)
	}
	log := e.readLog(r)
	if strings.Count(log, "before the restart") != 1 || !strings.Contains(log, "after the restart") {
		t.Errorf("log after the restart:\n%s", log)
	}
}

// TestRestartAppendsToTheLog: a process following a pipeline again
// after a restart leaves the log the earlier one wrote as it was, in the
// file and in the store, and appends to it a line saying so and the
// jobs' traces read again from their start.
func TestRestartAppendsToTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	first := e.newExecutor(func(o *Options) { o.TraceInterval = 10 * time.Millisecond })
	r := e.newRun(true)
	e.start(first, r, nil)
	id := e.pipeline()
	jobs := e.jobIDs(id)
	e.gl.StartJob(jobs[0])
	e.gl.AppendTrace(jobs[0], "before the restart\n")
	e.waitFor("the live trace", func() bool { return strings.Contains(e.readLog(r), "before the restart") })
	e.kill(first)
	earlier := e.readLog(r)
	if stored := e.storedLog(r); stored != earlier {
		t.Fatalf("stored log before the restart:\n%s\nwant the log file's:\n%s", stored, earlier)
	}

	second := e.newExecutor()
	if out, err := second.Status(context.Background(), r); err != nil || out.Done {
		t.Fatalf("Status after restart = %+v, %v; want under way", out, err)
	}
	e.gl.AppendTrace(jobs[0], "after the restart\n")
	e.gl.FinishJob(jobs[0], "success", "")
	e.gl.StartJob(jobs[1])
	e.gl.AppendTrace(jobs[1], "deploying\n")
	e.gl.FinishJob(jobs[1], "success", "")
	// Once the outcome is known, the store holds the whole log.
	e.waitDone(second, r)
	want := earlier + "lockstep: following pipeline " + itoa(id) + " again after a restart; the jobs' traces below are read again from their start\n" +
		"\n━━━ job lint (stage unit-tests) ━━━\nbefore the restart\nafter the restart\n" +
		"\n━━━ job kubespray-e2e (stage deploy-part1) ━━━\ndeploying\n"
	if got := e.readLog(r); got != want {
		t.Errorf("log file:\n%s\nwant:\n%s", got, want)
	}
	if got := e.storedLog(r); got != want {
		t.Errorf("stored log:\n%s\nwant:\n%s", got, want)
	}
}

// TestLogsAreTracesHeadedByJob reads traces while the pipeline runs,
// incrementally, and completes them when it ends.
func TestLogsAreTracesHeadedByJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor(func(o *Options) { o.TraceInterval = 10 * time.Millisecond })
	r := e.newRun(true)
	e.start(x, r, nil)
	id := e.pipeline()
	jobs := e.jobIDs(id)
	e.gl.StartJob(jobs[0])
	e.gl.AppendTrace(jobs[0], "first line\n")
	e.waitFor("the live trace", func() bool { return strings.Contains(e.readLog(r), "first line") })
	e.gl.AppendTrace(jobs[0], "second line\n")
	e.waitFor("more of the live trace", func() bool { return strings.Contains(e.readLog(r), "second line") })
	e.gl.FinishJob(jobs[0], "success", "")
	e.gl.StartJob(jobs[1])
	e.gl.AppendTrace(jobs[1], "deploying\n")
	e.gl.FinishJob(jobs[1], "success", "")
	e.waitDone(x, r)
	log := e.readLog(r)
	want := "\n━━━ job lint (stage unit-tests) ━━━\nfirst line\nsecond line\n\n━━━ job kubespray-e2e (stage deploy-part1) ━━━\ndeploying\n"
	if !strings.HasSuffix(log, want) {
		t.Errorf("log:\n%s\nwant it to end with:\n%s", log, want)
	}
	if stored := e.storedLog(r); stored != log {
		t.Errorf("stored log once the outcome is known:\n%s\nwant the log file's:\n%s", stored, log)
	}
	ranged := 0
	for _, c := range e.gl.Calls() {
		if strings.HasSuffix(c.Path, "/trace") && c.Status == 206 {
			ranged++
		}
	}
	if ranged == 0 {
		t.Errorf("no trace was read incrementally (206): %+v", e.gl.Calls())
	}
}

// TestKillCancelsAndCleanupDeletesTheRef: aborting a run cancels its
// pipeline; once finished, the pushed ref is deleted.
func TestKillCancelsAndCleanupDeletesTheRef(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	r := e.newRun(true)
	e.start(x, r, nil)
	id := e.pipeline()
	e.gl.StartJob(e.jobIDs(id)[0])
	if err := x.Kill(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if st := e.gl.Pipelines(testProject)[0].Status; st != "canceled" {
		t.Errorf("pipeline %s after Kill, want canceled", st)
	}
	if err := x.Cleanup(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if refs := e.gl.Refs(testProject); len(refs) != 0 {
		t.Errorf("refs left on GitLab: %v", refs)
	}
	if _, err := x.Status(context.Background(), r); err != nil {
		// Forgotten, the pipeline is looked up again from the handle.
		t.Errorf("Status after Cleanup: %v", err)
	}
}

// TestKillOfAnUnrecordedStartCancelsWhatStartMade: a run aborted while
// scheduled, whose pipeline exists but whose handle was never recorded,
// gets that pipeline canceled.
func TestKillOfAnUnrecordedStartCancelsWhatStartMade(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	first := e.newExecutor(func(o *Options) {
		o.afterCreate = func(*run.Run, int64) error { return errors.New("killed") }
	})
	r := e.newRun(true)
	_, _ = first.Start(context.Background(), r, nil)
	second := e.newExecutor()
	if err := second.Kill(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if st := e.gl.Pipelines(testProject)[0].Status; st != "canceled" {
		t.Errorf("pipeline %s, want canceled", st)
	}
}

// TestAPIFaults: server errors and rate limits with Retry-After are
// waited out, and still make one pipeline.
func TestAPIFaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	e.gl.RateLimitNext(1, 1)
	e.gl.FailNext(2, 502)
	r := e.newRun(true)
	begin := time.Now()
	e.start(x, r, nil)
	if d := time.Since(begin); d < time.Second {
		t.Errorf("Start took %v, want it to wait out Retry-After: 1", d)
	}
	e.pipeline()
}

// TestPipelineCreateRefused: GitLab refusing the pipeline (a project
// that does not exist) is an infrastructure failure.
func TestPipelineCreateRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor()
	r := e.newRun(true)
	r.Spec.ExecutorConfig = []byte(`{"project":"nope/nope","remote":"` + e.gl.RemoteURL(testProject) + `","merge":true}`)
	_, err := x.Start(context.Background(), r, nil)
	var infra *executor.InfraError
	if !errors.As(err, &infra) || infra.Reason != ReasonPipelineCreate {
		t.Errorf("Start = %v, want %s", err, ReasonPipelineCreate)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestWebhooksBeforeStartReturns: a pipeline's webhooks can be processed
// before GitLab's answer to its creation reaches lockstep; they are kept
// and applied once the pipeline is followed, with no poll needed.
func TestWebhooksBeforeStartReturns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	x := e.newExecutor(func(o *Options) {
		o.afterCreate = func(r *run.Run, pipeline int64) error {
			for _, j := range e.jobIDs(pipeline) {
				e.gl.StartJob(j)
				e.gl.FinishJob(j, "success", "")
			}
			// Every webhook is stored, and processed, before Start goes on.
			e.waitFor("the webhooks to be processed", func() bool {
				page, err := e.store.ListDeliveries(context.Background(), store.DeliveryListOptions{State: store.DeliveryDone, Limit: 100})
				return err == nil && len(page.Deliveries) >= 4
			})
			return nil
		}
	})
	r := e.newRun(true)
	e.start(x, r, nil)
	if out := e.waitDone(x, r); out.Infra != nil || out.ExitCode != 0 {
		t.Errorf("outcome %+v, want success", out)
	}
}

package trigger_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// Every help reply names the jobs one can ask for on the base branch,
// required and optional apart, as Prow's do.
func TestHelpRepliesListJobs(t *testing.T) {
	t.Parallel()
	for i, body := range []string{
		"/test",
		"/test\nthis should have been a job name",
		"/test   ",
		"/retest lint",
		"/retest-required now",
		"/test-manual-required e2e",
		"/test nope",
		"/ok-to-test please",
	} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			n := 300 + i
			e.handle(prEvent("opened", e.pull(n, trusted, "h"), trusted))
			c := e.comment(n, trusted, body)
			e.handle(c)
			e.handle(c)
			comments := e.gh.Comments(repo, n)
			if len(comments) != 1 {
				t.Fatalf("%d replies, want one", len(comments))
			}
			reply := comments[0].Body
			for _, want := range []string{"Required jobs for `main`: `unit`, `lint`, `docs`, `e2e`.", "Optional jobs: `bench`."} {
				if !strings.Contains(reply, want) {
					t.Errorf("reply %q does not contain %q", reply, want)
				}
			}
			if strings.Count(reply, "Required jobs") != 1 {
				t.Errorf("reply %q lists the jobs more than once", reply)
			}
		})
	}
}

// The job list is the base branch's: a job whose branch filter excludes
// it is not offered.
func TestHelpReplyFollowsBaseBranch(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, strings.Replace(testConfig, "- name: e2e\n", "- name: e2e\n        branches: ['^release$']\n", 1))
	e.handle(prEvent("opened", e.pull(310, trusted, "h"), trusted))
	e.handle(e.comment(310, trusted, "/test"))
	comments := e.gh.Comments(repo, 310)
	if len(comments) != 1 || strings.Contains(comments[0].Body, "`e2e`") || !strings.Contains(comments[0].Body, "`unit`") {
		t.Errorf("comments %+v: want one reply listing unit but not e2e (release only)", comments)
	}
}

// /retest-required reruns the failed required jobs, not the optional ones.
func TestRetestRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(320, trusted, "h320"), trusted))
	e.handle(e.comment(320, trusted, "/test bench"))
	setState(t, e, 320, "unit", run.Failure)
	setState(t, e, 320, "lint", run.Success)
	setState(t, e, 320, "bench", run.Failure)
	out := e.handle(e.comment(320, trusted, "/retest-required"))
	if got := jobsOf(t, e, out.Runs); !cmp.Equal(got, []string{"unit"}) {
		t.Errorf("/retest-required started %v, want [unit]", got)
	}
	if got := len(e.gh.Comments(repo, 320)); got != 0 {
		t.Errorf("%d replies, want none", got)
	}
	// /retest still reruns the optional job.
	setState(t, e, 320, "unit", run.Success)
	out = e.handle(e.comment(320, trusted, "/retest"))
	if got := jobsOf(t, e, out.Runs); !cmp.Equal(got, []string{"bench"}) {
		t.Errorf("/retest started %v, want [bench]", got)
	}
}

// /retest-required needs trust like any other test command.
func TestRetestRequiredUntrusted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(321, outsider, "h321"), outsider))
	out := e.handle(e.comment(321, outsider, "/retest-required"))
	if len(out.Runs) != 0 || len(e.runs(321)) != 0 {
		t.Errorf("untrusted /retest-required: %+v, want no run", out)
	}
}

// /test-manual-required starts the required jobs only a command starts,
// once per head.
func TestTestManualRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(330, trusted, "h330"), trusted))
	c := e.comment(330, trusted, "/test-manual-required")
	out := e.handle(c)
	if got := jobsOf(t, e, out.Runs); !cmp.Equal(got, []string{"e2e"}) {
		t.Errorf("/test-manual-required started %v, want [e2e] (bench is optional, docs has a file filter)", got)
	}
	if again := e.handle(c); len(again.Runs) != 0 {
		t.Errorf("redelivered comment started %v, want nothing", again.Runs)
	}
	out = e.handle(e.comment(330, trusted, "/test-manual-required"))
	if len(out.Runs) != 0 {
		t.Errorf("second /test-manual-required started %v, want nothing: e2e has a run on the head", out.Runs)
	}
	comments := e.gh.Comments(repo, 330)
	if len(comments) != 1 || !strings.Contains(comments[0].Body, "starts no job") || !strings.Contains(comments[0].Body, "Optional jobs: `bench`.") {
		t.Errorf("comments %+v: want one reply saying nothing started, with the job list", comments)
	}
	// A new head has no run of e2e: the command starts it there.
	e.clock.Step(time.Minute)
	e.gh.UpdatePull(repo, 330, func(p *githubtestPull) { p.HeadSHA = "h330b"; p.UpdatedAt = e.clock.Now() })
	e.handle(prEvent("synchronize", e.prPayload(330), trusted))
	out = e.handle(e.comment(330, trusted, "/test-manual-required"))
	if got := jobsOf(t, e, out.Runs); !cmp.Equal(got, []string{"e2e"}) {
		t.Errorf("/test-manual-required on the new head started %v, want [e2e]", got)
	}
}

// A pull request carrying ok-to-test and a stale needs-ok-to-test loses
// the stale label when lockstep acts on it, by event or by command.
func TestStaleNeedsOKToTestRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(340, outsider, "h340"), outsider))
	e.clock.Step(time.Minute)
	e.gh.UpdatePull(repo, 340, func(p *githubtestPull) {
		p.Labels = []string{"needs-ok-to-test", "ok-to-test"}
		p.HeadSHA = "h340b"
		p.UpdatedAt = e.clock.Now()
	})
	out := e.handle(prEvent("synchronize", e.prPayload(340), outsider))
	if len(out.Runs) != 2 {
		t.Errorf("synchronize: %+v, want the automatic set", out)
	}
	if got := e.gh.Labels(repo, 340); !cmp.Equal(got, []string{"ok-to-test"}) {
		t.Errorf("labels %v, want only ok-to-test", got)
	}

	// By a command: the label was put back by hand meanwhile.
	e.handle(prEvent("opened", e.pull(341, outsider, "h341"), outsider))
	e.gh.UpdatePull(repo, 341, func(p *githubtestPull) { p.Labels = []string{"needs-ok-to-test", "ok-to-test"} })
	e.handle(e.comment(341, outsider, "/test e2e"))
	if got := e.gh.Labels(repo, 341); !cmp.Equal(got, []string{"ok-to-test"}) {
		t.Errorf("labels after /test %v, want only ok-to-test", got)
	}
}

// Only opened welcomes an untrusted pull request (docs/triggers.md rule
// 11): later events add neither the label nor the comment, and a label a
// maintainer took off is never put back.
func TestWelcomeOnlyOnOpened(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A pull request lockstep never saw opened.
	e.pull(350, outsider, "h350")
	step := func(action string, change func(p *githubtestPull)) {
		e.clock.Step(time.Minute)
		e.gh.UpdatePull(repo, 350, func(p *githubtestPull) { change(p); p.UpdatedAt = e.clock.Now() })
		ev := prEvent(action, e.prPayload(350), outsider)
		if action == "edited" {
			ev.Changes = &github.EditChange{Base: &github.EditBase{Ref: &github.EditRef{From: github.Ptr("dev")}}}
		}
		if out := e.handle(ev); len(out.Runs) != 0 {
			t.Errorf("%s created %v, want no run", action, out.Runs)
		}
	}
	step("synchronize", func(p *githubtestPull) { p.HeadSHA = "h350b" })
	step("edited", func(p *githubtestPull) {})
	step("converted_to_draft", func(p *githubtestPull) { p.Draft = true })
	step("ready_for_review", func(p *githubtestPull) { p.Draft = false })
	step("reopened", func(p *githubtestPull) {})
	if got := e.gh.Labels(repo, 350); len(got) != 0 {
		t.Errorf("labels %v, want none: only opened welcomes", got)
	}
	if got := len(e.gh.Comments(repo, 350)); got != 0 {
		t.Errorf("%d comments, want none", got)
	}

	// Opened: welcomed once; the maintainer removes the label; neither a
	// redelivered opened nor a push puts it back.
	opened := prEvent("opened", e.pull(351, outsider, "h351"), outsider)
	e.handle(opened)
	if got := e.gh.Labels(repo, 351); !cmp.Equal(got, []string{"needs-ok-to-test"}) {
		t.Fatalf("labels %v after opened, want needs-ok-to-test", got)
	}
	e.clock.Step(time.Minute)
	e.gh.UpdatePull(repo, 351, func(p *githubtestPull) { p.Labels = nil; p.UpdatedAt = e.clock.Now() })
	unlabeled := prEvent("unlabeled", e.prPayload(351), trusted)
	unlabeled.Label = &github.Label{Name: github.Ptr("needs-ok-to-test")}
	e.handle(unlabeled)
	e.handle(opened)
	e.clock.Step(time.Minute)
	e.gh.UpdatePull(repo, 351, func(p *githubtestPull) { p.HeadSHA = "h351b"; p.UpdatedAt = e.clock.Now() })
	e.handle(prEvent("synchronize", e.prPayload(351), outsider))
	if got := e.gh.Labels(repo, 351); len(got) != 0 {
		t.Errorf("labels %v, want none: the maintainer removed needs-ok-to-test", got)
	}
	if got := len(e.gh.Comments(repo, 351)); got != 1 {
		t.Errorf("%d comments, want the one welcome", got)
	}
}

// jobsOf returns the job names of runs ids, in order.
func jobsOf(t *testing.T, e *env, ids []run.ID) []string {
	t.Helper()
	var jobs []string
	for _, id := range ids {
		r, err := e.store.GetRun(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, r.Spec.Job)
	}
	return jobs
}

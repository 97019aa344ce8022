package trigger_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// kubespray #11490/#11543: "/ok-to-test" written in the body of an
// untrusted pull request produced two pipelines, one of which failed its
// authorization check. Here the body authorizes nothing; a trusted
// /ok-to-test then starts exactly one set of runs.
func TestIncidentKubespray11490OKToTestInBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pr := e.pull(1, outsider, "h1")
	pr.Body = strPtr("Fixes the build.\n/ok-to-test\n")
	out := e.handle(prEvent("opened", pr, outsider))
	if got := e.runs(1); len(got) != 0 {
		t.Fatalf("runs after an untrusted open with /ok-to-test in the body: %v, want none", got)
	}
	if !strings.Contains(out.Ignored, "not trusted") {
		t.Errorf("outcome %+v, want it to say the author is not trusted", out)
	}
	e.handle(e.comment(1, outsider, "/ok-to-test"))
	if got := e.runs(1); len(got) != 0 {
		t.Fatalf("runs after the author's own /ok-to-test: %v, want none", got)
	}
	e.handle(e.comment(1, trusted, "/ok-to-test"))
	// GitHub then delivers the label lockstep added, and a redelivery.
	e.handle(labelEvent(e.prPayload(1), "ok-to-test", botLogin))
	e.handle(e.comment(1, trusted, "/ok-to-test"))
	if diff := cmp.Diff(autoKeys(1, "h1", "unit", "lint"), e.runs(1)); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	if got := e.gh.Labels(repo, 1); !contains(got, "ok-to-test") || contains(got, "needs-ok-to-test") {
		t.Errorf("labels %v, want ok-to-test and not needs-ok-to-test", got)
	}
}

// prow #959: two ok-to-test labels a second apart ran the jobs twice, and
// deduplication then aborted both. Here the second is a no-op.
func TestIncidentProw959TwoOKToTestLabels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pr := e.pull(2, outsider, "h2")
	e.handle(prEvent("opened", pr, outsider))
	e.gh.UpdatePull(repo, 2, func(p *githubtestPull) { p.Labels = append(p.Labels, "ok-to-test") })
	first := e.handle(labelEvent(e.prPayload(2), "ok-to-test", trusted))
	e.clock.Step(time.Second)
	second := e.handle(labelEvent(e.prPayload(2), "ok-to-test", collab))
	if len(first.Runs) != 2 || len(second.Runs) != 0 || len(second.Existing) != 2 {
		t.Errorf("first %+v, second %+v: want 2 runs created, then the same 2 found", first, second)
	}
	if len(first.Aborted)+len(second.Aborted) != 0 {
		t.Errorf("runs aborted: %v %v, want none", first.Aborted, second.Aborted)
	}
	if diff := cmp.Diff(autoKeys(2, "h2", "unit", "lint"), e.runs(2)); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// test-infra #15749: "/lgtm" and "/ok-to-test" in one comment ran the
// presubmits twice (once for the comment, once for a label event).
func TestIncidentTestInfra15749LGTMAndOKToTest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(3, outsider, "h3"), outsider))
	e.handle(e.comment(3, trusted, "/lgtm\n/ok-to-test"))
	pr := e.prPayload(3)
	e.handle(labelEvent(pr, "lgtm", botLogin))
	e.handle(labelEvent(pr, "ok-to-test", botLogin))
	if diff := cmp.Diff(autoKeys(3, "h3", "unit", "lint"), e.runs(3)); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// kubeflow/pipelines #1304, woodpecker #110: the same event delivered by a
// repository hook and an organization hook (two delivery ids) ran twice.
func TestIncidentKubeflow1304RepoAndOrgHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := prEvent("opened", e.pull(4, trusted, "h4"), trusted)
	e.handle(ev) // the repository hook's delivery
	e.handle(ev) // the organization hook's, with another delivery id
	comment := e.comment(4, trusted, "/test e2e")
	e.handle(comment)
	e.handle(comment)
	want := append(autoKeys(4, "h4", "unit", "lint"), run.RequestKey(repo, 4, "h4", "e2e", fmt.Sprintf("c%d", comment.GetComment().GetID())))
	sortStrings(want)
	if diff := cmp.Diff(want, e.runs(4)); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// tektoncd/pipeline #3844: duplicates under load. Fifty copies of one
// event, handled at once, create one run per job.
func TestIncidentTekton3844DuplicatesUnderLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := prEvent("opened", e.pull(5, trusted, "h5"), trusted)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { e.handle(ev) })
	}
	wg.Wait()
	if diff := cmp.Diff(autoKeys(5, "h5", "unit", "lint"), e.runs(5)); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// A late synchronize about an older head must neither run that head nor
// abort the newer one (COMMANDS.md rule 18; Prow builds whatever the
// payload names).
func TestOutOfOrderSynchronizeIsStale(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(6, trusted, "old"), trusted))
	oldPayload := e.prPayload(6)
	e.clock.Step(time.Minute)
	e.gh.SetHead(repo, 6, "new")
	e.gh.UpdatePull(repo, 6, func(p *githubtestPull) { p.UpdatedAt = e.clock.Now() })
	newer := e.handle(prEvent("synchronize", e.prPayload(6), trusted))
	if len(newer.Aborted) != 2 || len(newer.Runs) != 2 {
		t.Fatalf("synchronize outcome %+v: want 2 runs of the old head aborted and 2 created", newer)
	}
	late := e.handle(prEvent("synchronize", oldPayload, trusted))
	if !late.Stale || len(late.Runs)+len(late.Aborted) != 0 {
		t.Errorf("late synchronize outcome %+v: want stale, nothing created or aborted", late)
	}
	if diff := cmp.Diff(autoKeys(6, "new", "unit", "lint"), e.runs(6)); diff != "" {
		t.Errorf("live runs (-want +got):\n%s", diff)
	}
}

func TestClosedAndDraftAbort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(7, trusted, "h7"), trusted))
	e.clock.Step(time.Minute)
	e.gh.UpdatePull(repo, 7, func(p *githubtestPull) { p.Draft = true; p.UpdatedAt = e.clock.Now() })
	out := e.handle(prEvent("converted_to_draft", e.prPayload(7), trusted))
	if len(out.Aborted) != 2 || len(e.runs(7)) != 0 {
		t.Errorf("converted_to_draft: %+v, live runs %v; want both aborted", out, e.runs(7))
	}
}

func TestDraftOpenedCommentsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.gh.AddPull(repo, githubtestPull{Number: 8, Author: trusted, HeadSHA: "h8", BaseRef: "main", Draft: true, UpdatedAt: e.clock.Now()})
	ev := prEvent("opened", e.prPayload(8), trusted)
	e.handle(ev)
	e.handle(ev)
	if got := len(e.runs(8)); got != 0 {
		t.Errorf("%d runs on a draft, want none", got)
	}
	if got := len(e.gh.Comments(repo, 8)); got != 1 {
		t.Errorf("%d comments, want one saying drafts are skipped", got)
	}
}

func TestUnknownJobReplyListsJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(9, trusted, "h9"), trusted))
	c := e.comment(9, trusted, "/test nope")
	e.handle(c)
	e.handle(c)
	comments := e.gh.Comments(repo, 9)
	if len(comments) != 1 || !strings.Contains(comments[0].Body, "`unit`") || !strings.Contains(comments[0].Body, "`nope`") {
		t.Errorf("comments %+v: want one reply naming the unknown job and listing the jobs", comments)
	}
}

func TestRetest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.handle(prEvent("opened", e.pull(10, trusted, "h10"), trusted))
	// unit fails; lint is still running.
	setState(t, e, 10, "unit", run.Failure)
	c := e.comment(10, trusted, "/retest")
	out := e.handle(c)
	if len(out.Runs) != 1 {
		t.Fatalf("/retest created %v, want one run (unit)", out.Runs)
	}
	r, err := e.store.GetRun(t.Context(), out.Runs[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Spec.Job != "unit" || r.Spec.Cause != run.CauseCommand || r.Spec.Requester != trusted {
		t.Errorf("retest run %+v, want unit asked by %s", r.Spec, trusted)
	}
}

func TestTrustIsCachedPerTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for n := 20; n < 30; n++ {
		e.handle(prEvent("opened", e.pull(n, trusted, fmt.Sprintf("h%d", n)), trusted))
	}
	if got := e.gh.CallCount("GET", "/orgs/acme/members/"+trusted); got != 1 {
		t.Errorf("%d membership calls for 10 pull requests, want 1", got)
	}
	e.clock.Step(11 * time.Minute)
	e.handle(prEvent("opened", e.pull(30, trusted, "h30"), trusted))
	if got := e.gh.CallCount("GET", "/orgs/acme/members/"+trusted); got != 2 {
		t.Errorf("%d membership calls after the TTL, want 2", got)
	}
}

func TestWelcomeCommentOncePerUntrustedPull(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := prEvent("opened", e.pull(40, outsider, "h40"), outsider)
	for range 5 {
		e.handle(ev)
	}
	e.handle(prEvent("reopened", e.prPayload(40), outsider))
	if got := len(e.gh.Comments(repo, 40)); got != 1 {
		t.Errorf("%d welcome comments, want 1", got)
	}
	if !contains(e.gh.Labels(repo, 40), "needs-ok-to-test") {
		t.Errorf("labels %v, want needs-ok-to-test", e.gh.Labels(repo, 40))
	}
}

func TestPushStartsPostsubmitsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	push := pushEvent("refs/heads/main", "abc")
	e.handle(push)
	out := e.handle(push)
	if len(out.Runs) != 0 || len(out.Existing) != 1 {
		t.Errorf("second push delivery: %+v, want the one existing run", out)
	}
	if out := e.handle(pushEvent("refs/heads/dev", "def")); len(out.Runs) != 0 {
		t.Errorf("push to dev created %v, want nothing (branches: [main])", out.Runs)
	}
	del := pushEvent("refs/heads/main", "0000000000000000000000000000000000000000")
	del.Deleted = boolPtr(true)
	if out := e.handle(del); len(out.Runs) != 0 || out.Ignored == "" {
		t.Errorf("branch deletion: %+v, want ignored", out)
	}
}

// A pull request closed and reopened, or turned into a draft and made
// ready again, on the same head gets new runs: the old ones were aborted.
// A late copy of the closing event changes nothing.
func TestReopenAndReadyStartNewRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	step := func(action string, change func(p *githubtestPull)) store.Outcome {
		e.clock.Step(time.Minute)
		e.gh.UpdatePull(repo, 11, func(p *githubtestPull) { change(p); p.UpdatedAt = e.clock.Now() })
		return e.handle(prEvent(action, e.prPayload(11), trusted))
	}
	e.handle(prEvent("opened", e.pull(11, trusted, "h11"), trusted))
	closing := prEvent("closed", e.prPayload(11), trusted)
	closing.PullRequest.State = strPtr("closed")
	e.clock.Step(time.Minute)
	closing.PullRequest.UpdatedAt.Time = e.clock.Now()
	if out := e.handle(closing); len(out.Aborted) != 2 {
		t.Fatalf("closed: %+v, want 2 runs aborted", out)
	}
	if out := step("reopened", func(p *githubtestPull) { p.State = "open" }); len(out.Runs) != 2 {
		t.Fatalf("reopened: %+v, want 2 new runs", out)
	}
	if out := e.handle(closing); len(out.Aborted) != 0 || !out.Stale {
		t.Errorf("late closed: %+v, want stale and nothing aborted", out)
	}
	if out := step("converted_to_draft", func(p *githubtestPull) { p.Draft = true }); len(out.Aborted) != 2 {
		t.Fatalf("converted_to_draft: %+v, want 2 runs aborted", out)
	}
	if out := step("ready_for_review", func(p *githubtestPull) { p.Draft = false }); len(out.Runs) != 2 {
		t.Fatalf("ready_for_review: %+v, want 2 new runs", out)
	}
	if got := len(e.runs(11)); got != 2 {
		t.Errorf("%d live runs, want 2", got)
	}
}

// TestSecretsOnlyForTrustedAuthors: a job's secrets reach runs of a
// trusted author's pull request and of pushes, never runs of an outsider's
// pull request, whether started by /ok-to-test or by /test.
func TestSecretsOnlyForTrustedAuthors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secretsOf := func(n int, key string) []string {
		t.Helper()
		page, err := e.store.ListRuns(context.Background(), store.ListOptions{Repo: repo, Pull: n, Limit: store.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Runs {
			if r.Spec.TriggerKey == key {
				return r.Spec.Secrets
			}
		}
		t.Fatalf("no run %s among %v", key, e.runs(n))
		return nil
	}
	e.handle(prEvent("opened", e.pull(1, trusted, "h1"), trusted))
	if got := secretsOf(1, autoKeys(1, "h1", "unit")[0]); !slices.Equal(got, []string{"DEPLOY_KEY"}) {
		t.Errorf("trusted author's run: secrets %v, want [DEPLOY_KEY]", got)
	}
	e.handle(prEvent("opened", e.pull(2, outsider, "h2"), outsider))
	e.handle(e.comment(2, trusted, "/ok-to-test"))
	if got := secretsOf(2, autoKeys(2, "h2", "unit")[0]); len(got) != 0 {
		t.Errorf("outsider's run after /ok-to-test: secrets %v, want none", got)
	}
	out := e.handle(e.comment(2, trusted, "/test unit"))
	if len(out.Runs) != 1 {
		t.Fatalf("/test unit: %+v, want one run", out)
	}
	r, err := e.store.GetRun(context.Background(), out.Runs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Spec.Secrets) != 0 {
		t.Errorf("outsider's run started by /test: secrets %v, want none", r.Spec.Secrets)
	}
	push := e.handle(pushEvent("refs/heads/main", "abc123"))
	if len(push.Runs) != 1 {
		t.Fatalf("push: %+v, want one run", push)
	}
	if r, err = e.store.GetRun(context.Background(), push.Runs[0]); err != nil || !slices.Equal(r.Spec.Secrets, []string{"DEPLOY_KEY"}) {
		t.Errorf("postsubmit: secrets %v (%v), want [DEPLOY_KEY]", r.Spec.Secrets, err)
	}
}

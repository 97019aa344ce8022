package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/executor/gitlab/gitlabtest"
	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

const (
	ksRepo    = "kubernetes-sigs/kubespray"
	ksProject = "kargo-ci/kubernetes-sigs-kubespray"
	ksToken   = "gitlab-hook-token"
)

// kubespray is lockstep serve between the GitHub double and the GitLab
// double, configured as kubespray would be: presubmits that are
// pipelines of the GitLab mirror project.
type kubespray struct {
	t          testing.TB
	gh         *githubtest.Server
	gl         *gitlabtest.Server
	srv        *server
	dir        string
	src        string
	base, head string
	secret     []byte
	cfg        string
}

// newKubespray starts it all; auto makes the GitLab double run every
// pipeline to its end by itself.
func newKubespray(t testing.TB, jobs string, auto bool, glJobs ...gitlabtest.JobSpec) *kubespray {
	t.Helper()
	k := &kubespray{t: t, dir: t.TempDir(), secret: []byte("hook-secret")}
	k.src = gitRepo(t)
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = k.src
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	k.base = git("rev-parse", "HEAD")
	git("checkout", "-q", "-b", "feature")
	writeFile(t, filepath.Join(k.src, "feature.txt"), "new\n")
	git("add", ".")
	git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "feature")
	k.head = git("rev-parse", "HEAD")
	git("checkout", "-q", "main")

	k.gh = githubtest.NewServer(t)
	k.gh.AddMember("kubernetes-sigs", "maintainer")
	k.gl = gitlabtest.NewServer(t)
	k.gl.AddProject(ksProject, auto, glJobs...)

	writeFile(t, filepath.Join(k.dir, "token"), "test-token\n")
	writeFile(t, filepath.Join(k.dir, "secret"), string(k.secret)+"\n")
	writeFile(t, filepath.Join(k.dir, "gitlab-token"), gitlabtest.Token+"\n")
	writeFile(t, filepath.Join(k.dir, "gitlab-hook-token"), ksToken+"\n")
	k.cfg = writeFile(t, filepath.Join(k.dir, "lockstep.yaml"), fmt.Sprintf(`
github:
  endpoint: %s
  token_file: token
  webhook_secret_file: secret
  bot_login: lockstep-bot
gitlab:
  url: %s
  token_file: gitlab-token
  webhook_token_file: gitlab-hook-token
  push_url: %s
repos:
  %s:
    clone_url: %s
    presubmits:
%s`, k.gh.URL(), k.gl.URL(), strings.Replace(k.gl.RemoteURL(ksProject), ksProject, "{project}", 1), ksRepo, k.src, jobs))
	k.srv = startServer(t, k.cfg, filepath.Join(k.dir, "data"))
	k.gl.SetWebhook("http://"+k.srv.addr+"/hook/gitlab", ksToken)
	return k
}

// addPull opens pull request n of author on the GitHub double.
func (k *kubespray) addPull(n int, author string) {
	k.gh.AddPull(ksRepo, githubtest.Pull{Number: n, Author: author, HeadSHA: k.head, HeadRef: "feature", BaseRef: "main", BaseSHA: k.base,
		Title: "Fix the build", Mergeable: github.Ptr(true)})
}

// pullPayload is pull request n as the GitHub double shows it now.
func (k *kubespray) pullPayload(n int, body string) *github.PullRequest {
	p, _ := k.gh.Pull(ksRepo, n)
	var labels []*github.Label
	for _, l := range p.Labels {
		labels = append(labels, &github.Label{Name: github.Ptr(l)})
	}
	return &github.PullRequest{
		Number: github.Ptr(n), State: github.Ptr("open"), Body: github.Ptr(body),
		User:      &github.User{Login: github.Ptr(p.Author)},
		Head:      &github.PullRequestBranch{SHA: github.Ptr(p.HeadSHA), Ref: github.Ptr(p.HeadRef)},
		Base:      &github.PullRequestBranch{SHA: github.Ptr(p.BaseSHA), Ref: github.Ptr("main")},
		Labels:    labels,
		UpdatedAt: &github.Timestamp{Time: p.UpdatedAt},
	}
}

func ksRepoJSON() *github.Repository {
	return &github.Repository{FullName: github.Ptr(ksRepo), Name: github.Ptr("kubespray"), Owner: &github.User{Login: github.Ptr("kubernetes-sigs")}}
}

// send delivers ev as a signed GitHub webhook.
func (k *kubespray) send(event string, ev any) {
	k.t.Helper()
	body, err := json.Marshal(ev)
	if err != nil {
		k.t.Fatal(err)
	}
	_, status, answer, err := webhook.Send(context.Background(), http.DefaultClient, "http://"+k.srv.addr+"/hook", k.secret, event, body)
	if err != nil || status/100 != 2 {
		k.t.Fatalf("send %s: %d %s %v", event, status, answer, err)
	}
}

func (k *kubespray) opened(n int, author, body string) {
	k.send("pull_request", &github.PullRequestEvent{Action: github.Ptr("opened"), Number: github.Ptr(n),
		PullRequest: k.pullPayload(n, body), Repo: ksRepoJSON(), Sender: &github.User{Login: github.Ptr(author)}})
}

func (k *kubespray) comment(n int, id int64, author, body string) {
	k.send("issue_comment", &github.IssueCommentEvent{
		Action: github.Ptr("created"),
		Issue: &github.Issue{Number: github.Ptr(n), State: github.Ptr("open"),
			PullRequestLinks: &github.PullRequestLinks{URL: github.Ptr(fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", ksRepo, n))}},
		Comment: &github.IssueComment{ID: github.Ptr(id), Body: github.Ptr(body), User: &github.User{Login: github.Ptr(author)}},
		Repo:    ksRepoJSON(), Sender: &github.User{Login: github.Ptr(author)},
	})
}

func (k *kubespray) labeled(n int, label, sender string) {
	k.send("pull_request", &github.PullRequestEvent{Action: github.Ptr("labeled"), Number: github.Ptr(n),
		PullRequest: k.pullPayload(n, ""), Label: &github.Label{Name: github.Ptr(label)},
		Repo: ksRepoJSON(), Sender: &github.User{Login: github.Ptr(sender)}})
}

type apiRun struct {
	ID      int64  `json:"id"`
	Job     string `json:"job"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (k *kubespray) runs(n int) []apiRun {
	k.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/runs?repo=%s&pr=%d", k.srv.addr, ksRepo, n))
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Runs []apiRun `json:"runs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		k.t.Fatal(err)
	}
	return page.Runs
}

// waitRuns waits until pull request n has want runs, all finished.
func (k *kubespray) waitRuns(n, want int) []apiRun {
	k.t.Helper()
	var runs []apiRun
	deadline := time.Now().Add(90 * time.Second)
	for {
		runs = k.runs(n)
		done := len(runs) == want
		for _, r := range runs {
			done = done && (r.State == "success" || r.State == "failure" || r.State == "error" || r.State == "aborted")
		}
		if done {
			return runs
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("runs of #%d: %+v, want %d finished\nGitLab calls: %+v\nlockstep serve's log:\n%s", n, runs, want, k.gl.Calls(), k.srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const ksJobs = `      - name: pull-kubespray-e2e
        always_run: true
        executor: gitlab
        gitlab:
          project: ` + ksProject + `
          variables: {CI_PLATFORM: packet}
      - name: pull-kubespray-lint
        always_run: true
        executor: gitlab
        gitlab:
          project: ` + ksProject + `
          variables: {LINT_ONLY: "true"}
`

// TestKubesprayThroughGitLab is the kubespray sequence end to end: an
// untrusted pull request with /ok-to-test in its body, then two trusted
// /ok-to-test comments delivered concurrently with the ok-to-test label.
// GitLab gets exactly one pipeline per job, GitHub one status per
// context, and never a failed one.
func TestKubesprayThroughGitLab(t *testing.T) {
	t.Parallel()
	k := newKubespray(t, ksJobs, true,
		gitlabtest.JobSpec{Name: "unit-tests", Stage: "unit-tests", Trace: "tests ok\n"},
		gitlabtest.JobSpec{Name: "packet_ubuntu24-calico", Stage: "deploy-part1", Trace: "cluster up\n"})
	k.addPull(7, "newcomer")
	k.opened(7, "newcomer", "Fixes the build.\n/ok-to-test\n")
	pollUntil(t, "the needs-ok-to-test label", func() bool { return slices.Contains(k.gh.Labels(ksRepo, 7), "needs-ok-to-test") })
	if runs := k.runs(7); len(runs) != 0 {
		t.Fatalf("runs before a trusted /ok-to-test: %+v", runs)
	}
	k.gh.AddComment(ksRepo, 7, "maintainer", "/ok-to-test")
	k.gh.AddComment(ksRepo, 7, "maintainer", "/ok-to-test")
	k.gh.UpdatePull(ksRepo, 7, func(p *githubtest.Pull) { p.Labels = append(p.Labels, "ok-to-test") })
	var wg sync.WaitGroup
	wg.Go(func() { k.comment(7, 9001, "maintainer", "/ok-to-test") })
	wg.Go(func() { k.comment(7, 9002, "maintainer", "/ok-to-test") })
	wg.Go(func() { k.labeled(7, "ok-to-test", "maintainer") })
	wg.Wait()

	runs := k.waitRuns(7, 2)
	for _, r := range runs {
		if r.State != "success" {
			t.Errorf("run %d (%s) ended %s/%s, want success", r.ID, r.Job, r.State, r.Reason)
		}
	}
	pipelines := k.gl.Pipelines(ksProject)
	if len(pipelines) != 2 {
		t.Fatalf("%d pipelines on GitLab, want one per job (2): %+v", len(pipelines), pipelines)
	}
	byJob := map[string]int{}
	for _, p := range pipelines {
		byJob[k.gl.Variables(p.ID)["JOB_NAME"]]++
		if p.Status != "success" {
			t.Errorf("pipeline %d %s, want success", p.ID, p.Status)
		}
	}
	if byJob["pull-kubespray-e2e"] != 1 || byJob["pull-kubespray-lint"] != 1 {
		t.Errorf("pipelines per job %v, want one each", byJob)
	}
	pollUntil(t, "one success status per context", func() bool {
		latest := k.gh.LatestStatuses(ksRepo, k.head)
		ok := len(latest) == 2
		for _, st := range latest {
			ok = ok && st.State == "success"
		}
		return ok
	})
	for _, st := range k.gh.Statuses(ksRepo, k.head) {
		if st.State == "failure" || st.State == "error" {
			t.Errorf("a %s status was posted for %s: %+v", st.State, st.Context, st)
		}
	}
	// The run page links to the pipeline, the log holds its traces, and
	// the pushed refs are gone.
	for _, r := range runs {
		page := httpGet(t, fmt.Sprintf("http://%s/runs/%d", k.srv.addr, r.ID))
		if !strings.Contains(page, k.gl.URL()+"/"+ksProject+"/-/pipelines/") {
			t.Errorf("run page %d does not link to its pipeline", r.ID)
		}
		log := httpGet(t, fmt.Sprintf("http://%s/api/v1/runs/%d/log", k.srv.addr, r.ID))
		for _, want := range []string{"━━━ job unit-tests (stage unit-tests) ━━━\ntests ok\n", "━━━ job packet_ubuntu24-calico (stage deploy-part1) ━━━\ncluster up\n"} {
			if !strings.Contains(log, want) {
				t.Errorf("log of run %d lacks %q:\n%s", r.ID, want, log)
			}
		}
	}
	pollUntil(t, "the pushed refs to be deleted", func() bool { return len(k.gl.Refs(ksProject)) == 0 })
	calls := k.gl.CallCount()
	t.Logf("GitLab API calls: %d for %d successful runs (%.1f per run)", calls, len(runs), float64(calls)/float64(len(runs)))
	if perRun := float64(calls) / float64(len(runs)); perRun > 6 {
		t.Errorf("%.1f GitLab API calls per run, want at most 6: %+v", perRun, k.gl.Calls())
	}
}

// TestGitLabKillServeWhilePipelineRuns kills lockstep serve while its
// run's pipeline runs: the restarted process follows the same pipeline
// to its end, and appends its trace, once, to the log the first process
// wrote.
func TestGitLabKillServeWhilePipelineRuns(t *testing.T) {
	t.Parallel()
	k := newKubespray(t, `      - name: pull-kubespray-e2e
        always_run: true
        executor: gitlab
        gitlab: {project: `+ksProject+`}
`, false, gitlabtest.JobSpec{Name: "unit-tests", Stage: "unit-tests"})
	k.addPull(9, "maintainer")
	k.opened(9, "maintainer", "")
	pollUntil(t, "the pipeline", func() bool { return len(k.gl.Pipelines(ksProject)) == 1 })
	p := k.gl.Pipelines(ksProject)[0]
	job := k.gl.Jobs(p.ID)[0].ID
	k.gl.StartJob(job)
	k.gl.AppendTrace(job, "before the crash\n")
	pollUntil(t, "the run to be running", func() bool {
		runs := k.runs(9)
		return len(runs) == 1 && runs[0].State == "running"
	})
	if err := k.srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-k.srv.done
	k.gl.AppendTrace(job, "while lockstep was down\n")

	k.srv = startServer(t, k.cfg, filepath.Join(k.dir, "data"))
	k.gl.SetWebhook("http://"+k.srv.addr+"/hook/gitlab", ksToken)
	k.gl.FinishJob(job, "success", "")
	runs := k.waitRuns(9, 1)
	if runs[0].State != "success" {
		t.Errorf("run ended %s/%s, want success", runs[0].State, runs[0].Reason)
	}
	if n := len(k.gl.Pipelines(ksProject)); n != 1 {
		t.Errorf("%d pipelines, want 1", n)
	}
	// What the first process wrote (as much of it as reached the store
	// before the kill) stays above the line the second one starts with;
	// below it, the trace read again from its start.
	log := httpGet(t, fmt.Sprintf("http://%s/api/v1/runs/%d/log", k.srv.addr, runs[0].ID))
	_, again, ok := strings.Cut(log, fmt.Sprintf("lockstep: following pipeline %d again after a restart; the jobs' traces below are read again from their start\n", p.ID))
	if !ok || strings.Count(again, "before the crash") != 1 || !strings.Contains(again, "while lockstep was down") {
		t.Errorf("log after the restart:\n%s", log)
	}
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

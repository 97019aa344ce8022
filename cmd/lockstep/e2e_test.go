package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
)

// TestServeEndToEnd runs lockstep serve against the GitHub double: a
// signed pull_request delivery sent with lockstep hook send becomes one
// run of each automatic job, which clones the repository, merges the pull
// request's head and succeeds.
func TestServeEndToEnd(t *testing.T) {
	t.Parallel()
	repoDir := gitRepo(t)
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = repoDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	base := git("rev-parse", "HEAD")
	git("checkout", "-q", "-b", "feature")
	writeFile(t, filepath.Join(repoDir, "feature.txt"), "new\n")
	git("add", ".")
	git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "feature")
	head := git("rev-parse", "HEAD")
	git("checkout", "-q", "main")

	gh := githubtest.NewServer(t)
	gh.AddMember("acme", "alice")
	gh.AddPull("acme/widget", githubtest.Pull{Number: 7, Author: "alice", HeadSHA: head, HeadRef: "feature", BaseRef: "main", BaseSHA: base})

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "token"), "test-token\n")
	secret := writeFile(t, filepath.Join(dir, "secret"), "hook-secret\n")
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), fmt.Sprintf(`
github:
  endpoint: %s
  token_file: token
  webhook_secret_file: secret
  bot_login: lockstep-bot
repos:
  acme/widget:
    clone_url: %s
    presubmits:
      - name: unit
        always_run: true
        run: test -f feature.txt && test -f README
`, gh.URL(), repoDir))
	srv := startServer(t, cfg, filepath.Join(dir, "data"))

	payload := openedPayload(t, dir, 7, "alice", head, base)
	for range 2 { // a redelivery changes nothing
		if stdout, stderr, err := runLockstep(t, "hook", "send", "--url", "http://"+srv.addr+"/hook", "--secret-file", secret, "--event", "pull_request", payload); err != nil {
			t.Fatalf("hook send: %v\n%s%s", err, stdout, stderr)
		}
	}
	var runs struct {
		Runs []struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
			SHA   string `json:"sha"`
			Key   string `json:"trigger_key"`
		} `json:"runs"`
	}
	pollUntil(t, "the run to succeed", func() bool {
		resp, err := http.Get("http://" + srv.addr + "/api/v1/runs?repo=acme/widget&pr=7")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&runs); err != nil {
			t.Fatal(err)
		}
		if len(runs.Runs) == 1 && (runs.Runs[0].State == "failure" || runs.Runs[0].State == "error") {
			t.Fatalf("run ended %s", runs.Runs[0].State)
		}
		return len(runs.Runs) == 1 && runs.Runs[0].State == "success"
	})
	if r := runs.Runs[0]; r.SHA != head || r.Key != fmt.Sprintf("acme/widget#7@%s/unit/auto", head) {
		t.Errorf("run %+v, want the automatic run of unit on %s", r, head)
	}
	if n := len(gh.Unexpected()); n != 0 {
		t.Errorf("%d unexpected calls to GitHub: %+v", n, gh.Unexpected())
	}
}

// TestServeOfflineWithHookSend is the README's "trying it without GitHub":
// no credentials, a trusted user listed in the configuration, and a
// delivery sent with lockstep hook send; the run clones and succeeds. A
// pull request by someone not listed runs nothing.
func TestServeOfflineWithHookSend(t *testing.T) {
	t.Parallel()
	repoDir := gitRepo(t)
	headCmd := exec.Command("git", "rev-parse", "HEAD")
	headCmd.Dir = repoDir
	out, err := headCmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	head := strings.TrimSpace(string(out))
	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "secret"), "hook-secret\n")
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), fmt.Sprintf(`
github:
  webhook_secret_file: secret
trust:
  users: [alice]
repos:
  acme/widget:
    clone_url: %s
    presubmits:
      - name: unit
        always_run: true
        run: test -f README
`, repoDir))
	srv := startServer(t, cfg, filepath.Join(dir, "data"))
	send := func(n int, author string) {
		t.Helper()
		payload := openedPayload(t, dir, n, author, head, head)
		if stdout, stderr, err := runLockstep(t, "hook", "send", "--url", "http://"+srv.addr+"/hook", "--secret-file", secret, "--event", "pull_request", payload); err != nil {
			t.Fatalf("hook send: %v\n%s%s", err, stdout, stderr)
		}
	}
	send(2, "mallory")
	send(1, "alice")
	var page struct {
		Runs []struct {
			PR    int    `json:"pr"`
			State string `json:"state"`
		} `json:"runs"`
	}
	pollUntil(t, "alice's run to succeed", func() bool {
		resp, err := http.Get("http://" + srv.addr + "/api/v1/runs?repo=acme/widget")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			t.Fatal(err)
		}
		return len(page.Runs) > 0 && page.Runs[0].State == "success"
	})
	if len(page.Runs) != 1 || page.Runs[0].PR != 1 {
		t.Errorf("runs %+v, want one, of alice's pull request", page.Runs)
	}
}

// openedPayload writes the payload of a pull_request "opened" event into
// dir and returns its path.
func openedPayload(t *testing.T, dir string, n int, author, head, base string) string {
	t.Helper()
	ev := &github.PullRequestEvent{
		Action: github.Ptr("opened"), Number: github.Ptr(n),
		PullRequest: &github.PullRequest{
			Number: github.Ptr(n), State: github.Ptr("open"),
			User:      &github.User{Login: github.Ptr(author)},
			Head:      &github.PullRequestBranch{SHA: github.Ptr(head), Ref: github.Ptr("feature")},
			Base:      &github.PullRequestBranch{SHA: github.Ptr(base), Ref: github.Ptr("main")},
			UpdatedAt: &github.Timestamp{Time: time.Now()},
		},
		Repo:   &github.Repository{FullName: github.Ptr("acme/widget")},
		Sender: &github.User{Login: github.Ptr(author)},
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, filepath.Join(dir, fmt.Sprintf("opened-%d.json", n)), string(body))
}

// TestServeOfflineCommandsAcrossRestart: offline, the pull requests
// lockstep knows are those its webhooks described, kept in the store: a
// /test command after a restart runs on the head the pull_request
// webhook named, and a synchronize after that moves the head. Jobs with
// run_if_changed run by the files git says the pull request changes.
func TestServeOfflineCommandsAcrossRestart(t *testing.T) {
	t.Parallel()
	repoDir := gitRepo(t)
	git := func(args ...string) string { return gitOut(t, repoDir, args...) }
	git("checkout", "-q", "-b", "fix")
	writeFile(t, filepath.Join(repoDir, "fix.txt"), "1\n")
	git("add", ".")
	git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "fix")
	first := git("rev-parse", "HEAD")
	git("checkout", "-q", "main")

	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "secret"), "hook-secret\n")
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), fmt.Sprintf(`
github:
  webhook_secret_file: secret
trust:
  users: [alice]
repos:
  acme/widget:
    clone_url: %s
    presubmits:
      - name: unit
        always_run: true
        run: test -f fix.txt
      - name: lint
        run: test -f README
      - name: changed           # offline, changed files come from git
        run_if_changed: '^fix\.txt$'
        run: "true"
      - name: docs
        run_if_changed: '^docs/'
        run: "true"
`, repoDir))
	data := filepath.Join(dir, "data")
	send := func(srv *server, args ...string) {
		t.Helper()
		args = append([]string{"hook", "send", "--url", "http://" + srv.addr + "/hook", "--secret-file", secret, "--repo", "acme/widget", "--pr", "4", "--user", "alice"}, args...)
		if stdout, stderr, err := runLockstep(t, args...); err != nil || !strings.Contains(stdout, "202") {
			t.Fatalf("hook send %q: %v\n%s%s", args, err, stdout, stderr)
		}
	}
	type apiRun struct {
		Job, SHA, State, Cause string
	}
	// waitRuns waits until every run of the pull request has finished and
	// there are n of them, and returns them as job@sha/state.
	waitRuns := func(srv *server, n int) []string {
		t.Helper()
		var got []string
		pollUntil(t, fmt.Sprintf("%d finished runs", n), func() bool {
			resp, err := http.Get("http://" + srv.addr + "/api/v1/runs?repo=acme/widget&pr=4")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var page struct{ Runs []apiRun }
			if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, r := range page.Runs {
				switch r.State {
				case "pending", "scheduled", "running":
					return false
				}
				got = append(got, fmt.Sprintf("%s@%s/%s", r.Job, r.SHA[:7], r.State))
			}
			return len(got) == n
		})
		slices.Sort(got)
		return got
	}

	srv := startServer(t, cfg, data)
	send(srv, "--event", "pull_request", "--git", repoDir, "--head", "fix")
	waitRuns(srv, 2)
	// Stop it, and start again on the same data directory.
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-srv.done
	srv = startServer(t, cfg, data)
	send(srv, "--event", "issue_comment", "--comment", "/test lint")
	if got, want := waitRuns(srv, 3), []string{"changed@" + first[:7] + "/success", "lint@" + first[:7] + "/success", "unit@" + first[:7] + "/success"}; !slices.Equal(got, want) {
		t.Errorf("runs after /test lint across a restart: %v, want %v", got, want)
	}

	git("checkout", "-q", "fix")
	writeFile(t, filepath.Join(repoDir, "fix.txt"), "2\n")
	git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-am", "fix again")
	second := git("rev-parse", "HEAD")
	git("checkout", "-q", "main")
	send(srv, "--event", "pull_request", "--action", "synchronize", "--git", repoDir, "--head", "fix")
	waitRuns(srv, 5) // the new head's automatic runs; deliveries are processed concurrently
	send(srv, "--event", "issue_comment", "--comment", "/test lint")
	var want []string
	for _, sha := range []string{first, second} {
		for _, job := range []string{"changed", "lint", "unit"} {
			want = append(want, job+"@"+sha[:7]+"/success")
		}
	}
	slices.Sort(want)
	if got := waitRuns(srv, 6); !slices.Equal(got, want) {
		t.Errorf("runs after synchronize and /test lint: %v, want %v", got, want)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/testfixtures"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

func TestHookSend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []webhook.Delivery
	srv := httptest.NewServer(webhook.NewHandler(webhook.HandlerOptions{
		Secret: func() ([]byte, error) { return []byte("s3cret"), nil },
		Sink: webhook.SinkFunc(func(ctx context.Context, d webhook.Delivery) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, d)
			return false, nil
		}),
	}))
	defer srv.Close()
	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "secret"), "s3cret\n")
	p := testfixtures.GitHubPayload(t, "pull_request", "opened.payload.json")
	payload := writeFile(t, filepath.Join(dir, "opened.json"), string(p.Body))

	stdout, stderr, err := runLockstep(t, "hook", "send", "--url", srv.URL, "--secret-file", secret, "--event", "pull_request", payload)
	if err != nil {
		t.Fatalf("hook send: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "202") || len(got) != 1 || got[0].Event != "pull_request" {
		t.Errorf("stdout %q, deliveries %d: want one accepted pull_request", stdout, len(got))
	}
	if !strings.Contains(stdout, got[0].ID) {
		t.Errorf("stdout %q does not name the delivery id %s", stdout, got[0].ID)
	}

	wrong := writeFile(t, filepath.Join(dir, "wrong"), "nope")
	_, _, err = runLockstep(t, "hook", "send", "--url", srv.URL, "--secret-file", wrong, "--event", "pull_request", payload)
	if err == nil {
		t.Error("hook send with a wrong secret succeeded, want a non-zero exit")
	}
}

// TestHookSendRefusesUnknownEvents: a misspelt event name is refused
// before anything is sent, with the names lockstep knows.
func TestHookSendRefusesUnknownEvents(t *testing.T) {
	t.Parallel()
	sent := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent++ }))
	defer srv.Close()
	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "secret"), "s3cret\n")
	payload := writeFile(t, filepath.Join(dir, "p.json"), "{}")
	_, _, err := runLockstep(t, "hook", "send", "--url", srv.URL, "--secret-file", secret, "--event", "pullrequest", payload)
	if err == nil {
		t.Fatal("hook send --event pullrequest succeeded")
	}
	for _, want := range []string{`unknown event "pullrequest"`, "pull_request, issue_comment, push, check_run, check_suite", "ping"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if sent != 0 {
		t.Errorf("%d requests sent, want none", sent)
	}
}

// TestHookSendWrongURL: a URL that is not /hook, answered 405 by the
// UI's routes as lockstep answers it, gets told the URL to use.
func TestHookSendWrongURL(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dir := t.TempDir()
	secret := writeFile(t, filepath.Join(dir, "secret"), "s3cret\n")
	payload := writeFile(t, filepath.Join(dir, "p.json"), "{}")
	stdout, stderr, err := runLockstep(t, "hook", "send", "--url", srv.URL, "--secret-file", secret, "--event", "ping", payload)
	if code, ok := err.(exitError); !ok || code != 1 {
		t.Fatalf("hook send to %s: err %v, want exit status 1", srv.URL, err)
	}
	if want := "use --url " + srv.URL + "/hook"; !strings.Contains(stdout, "405") || !strings.Contains(stderr, want) {
		t.Errorf("stdout %q, stderr %q: want the 405 and %q", stdout, stderr, want)
	}
	if _, stderr, err := runLockstep(t, "hook", "send", "--url", srv.URL+"/hook", "--secret-file", secret, "--event", "ping", payload); err != nil || stderr != "" {
		t.Errorf("hook send to /hook: err %v, stderr %q", err, stderr)
	}
}

// keyPaths returns the paths of every object key in a JSON document,
// "[]" standing for any array element.
func keyPaths(t *testing.T, body []byte) map[string]bool {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := path + "." + k
				paths[p] = true
				walk(e, p)
			}
		case []any:
			for _, e := range x {
				walk(e, path+"[]")
			}
		}
	}
	walk(v, "")
	return paths
}

// TestHookSendBuildsPayloads: payloads built from a local repository
// have GitHub's shape (every field they set is one GitHub's example
// payloads have), pass the intake's validation, decode with go-github to
// the repository's real branches and SHAs, and are accepted by lockstep.
func TestHookSendBuildsPayloads(t *testing.T) {
	t.Parallel()
	repoDir := gitRepo(t)
	git := func(args ...string) string { return gitOut(t, repoDir, args...) }
	base := git("rev-parse", "main")
	git("checkout", "-q", "-b", "fix")
	writeFile(t, filepath.Join(repoDir, "README"), "hello\nworld\n")
	git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-am", "Say more", "-m", "The body.")
	first := git("rev-parse", "HEAD")
	writeFile(t, filepath.Join(repoDir, "NEW"), "new\n")
	git("add", "NEW")
	git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "Add NEW")
	head := git("rev-parse", "HEAD")
	git("checkout", "-q", "main")

	var fixtureShape = map[string]map[string]bool{}
	for _, p := range testfixtures.GitHubPayloads(t, "pull_request") {
		if p.Name == "opened.payload.json" || p.Name == "synchronize.payload.json" || p.Name == "closed.payload.json" {
			fixtureShape["pull_request"] = union(fixtureShape["pull_request"], keyPaths(t, p.Body))
		}
	}
	fixtureShape["issue_comment"] = keyPaths(t, testfixtures.GitHubPayload(t, "issue_comment", "created.payload.json").Body)
	// GitHub adds these links to the issue of a comment on a pull
	// request; the example payload's comment is on an issue.
	for _, k := range []string{"", ".url", ".html_url", ".diff_url", ".patch_url"} {
		fixtureShape["issue_comment"][".issue.pull_request"+k] = true
	}

	build := func(args ...string) []byte {
		t.Helper()
		stdout, stderr, err := runLockstep(t, append([]string{"hook", "send", "--print"}, args...)...)
		if err != nil {
			t.Fatalf("hook send --print %q: %v\n%s", args, err, stderr)
		}
		return []byte(stdout)
	}
	check := func(event string, body []byte) any {
		t.Helper()
		for p := range keyPaths(t, body) {
			if !fixtureShape[event][p] {
				t.Errorf("%s payload has %s, which GitHub's example payloads do not", event, p)
			}
		}
		if _, err := webhook.Validate(event, body); err != nil {
			t.Errorf("Validate(%s): %v", event, err)
		}
		ev, err := webhook.Decode(event, body)
		if err != nil {
			t.Fatalf("Decode(%s): %v", event, err)
		}
		return ev
	}

	opened := check("pull_request", build("--event", "pull_request", "--git", repoDir, "--repo", "acme/widget", "--pr", "3", "--head", "fix", "--user", "alice")).(*github.PullRequestEvent)
	pr := opened.GetPullRequest()
	if got, want := []any{opened.GetAction(), opened.GetNumber(), opened.GetRepo().GetFullName(), opened.GetSender().GetLogin(),
		pr.GetNumber(), pr.GetState(), pr.GetUser().GetLogin(), pr.GetHead().GetRef(), pr.GetHead().GetSHA(), pr.GetBase().GetRef(), pr.GetBase().GetSHA(),
		pr.GetTitle(), pr.GetCommits(), pr.GetChangedFiles(), pr.GetAdditions(), pr.GetUpdatedAt().IsZero()},
		[]any{"opened", 3, "acme/widget", "alice", 3, "open", "alice", "fix", head, "main", base, "Add NEW", 2, 2, 2, false}; !slices.Equal(got, want) {
		t.Errorf("opened event:\n got %v\nwant %v", got, want)
	}

	sync := check("pull_request", build("--event", "pull_request", "--action", "synchronize", "--git", repoDir, "--repo", "acme/widget", "--pr", "3", "--head", "fix")).(*github.PullRequestEvent)
	if sync.GetAction() != "synchronize" || sync.GetAfter() != head || sync.GetBefore() != first || sync.GetSender().GetLogin() != "octocat" {
		t.Errorf("synchronize: action %q after %q before %q sender %q, want after %s before %s by octocat", sync.GetAction(), sync.GetAfter(), sync.GetBefore(), sync.GetSender().GetLogin(), head, first)
	}
	if !sync.GetPullRequest().GetUpdatedAt().After(pr.GetUpdatedAt().Time) {
		t.Errorf("synchronize built after opened is not newer: %v, %v", sync.GetPullRequest().GetUpdatedAt(), pr.GetUpdatedAt())
	}

	c1 := check("issue_comment", build("--event", "issue_comment", "--repo", "acme/widget", "--pr", "3", "--comment", "/test unit", "--user", "alice")).(*github.IssueCommentEvent)
	c2 := check("issue_comment", build("--event", "issue_comment", "--repo", "acme/widget", "--pr", "3", "--comment", "/test unit", "--user", "alice")).(*github.IssueCommentEvent)
	if c1.GetAction() != "created" || !c1.GetIssue().IsPullRequest() || c1.GetIssue().GetNumber() != 3 || c1.GetIssue().GetState() != "open" ||
		c1.GetComment().GetBody() != "/test unit" || c1.GetComment().GetUser().GetLogin() != "alice" || c1.GetRepo().GetFullName() != "acme/widget" {
		t.Errorf("issue_comment event %+v, want alice's new comment /test unit on pull request 3", c1)
	}
	if c1.GetComment().GetID() == c2.GetComment().GetID() {
		t.Errorf("two comments built with one id %d: a redelivery, not a second comment", c1.GetComment().GetID())
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--event", "pull_request", "--git", repoDir, "--repo", "acme/widget", "--pr", "3", "--head", "nope"}, `has no commit "nope"`},
		{[]string{"--event", "pull_request", "--git", repoDir, "--repo", "acme/widget", "--pr", "3", "--head", "fix", "--base", "trunk"}, `has no branch "trunk"`},
		{[]string{"--event", "pull_request", "--git", t.TempDir(), "--repo", "acme/widget", "--pr", "3"}, "is not a git repository"},
		{[]string{"--event", "pull_request", "--repo", "acme/widget", "--pr", "3"}, "--git DIR is required"},
		{[]string{"--event", "pull_request", "--git", repoDir, "--repo", "widget", "--pr", "3", "--head", "fix"}, "OWNER/NAME"},
		{[]string{"--event", "pull_request", "--git", repoDir, "--repo", "acme/widget", "--pr", "3", "--head", "fix", "--action", "labeled"}, "opened, synchronize, reopened, closed"},
		{[]string{"--event", "issue_comment", "--repo", "acme/widget", "--pr", "3"}, "--comment is required"},
		{[]string{"--event", "issue_comment", "--repo", "acme/widget", "--pr", "3", "--comment", "/retest", "--git", repoDir}, "--git does not apply"},
		{[]string{"--event", "push", "--repo", "acme/widget", "--pr", "3"}, "give a PAYLOAD.json file for push"},
		{[]string{"--event", "issue_comment", "--comment", "/retest", "p.json"}, "--comment builds a payload and needs --pr"},
	} {
		if _, _, err := runLockstep(t, append([]string{"hook", "send", "--print"}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hook send %q: err %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}

func union(a, b map[string]bool) map[string]bool {
	if a == nil {
		a = map[string]bool{}
	}
	for k := range b {
		a[k] = true
	}
	return a
}

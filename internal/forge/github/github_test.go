package github_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	testclock "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/forge/github"
	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
	"github.com/lockstep-ci/lockstep/internal/transport"
)

const (
	repo = "acme/widget"
	sha1 = "1111111111111111111111111111111111111111"
	sha2 = "2222222222222222222222222222222222222222"
	base = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
)

// testDeadline bounds every wait for a condition.
const testDeadline = 20 * time.Second

// setup starts a fake GitHub and a Client for it through lockstep's
// transport chain with a static token and millisecond retry backoff. The
// test fails if the Client calls an endpoint the fake does not know.
func setup(t *testing.T, edit ...func(*transport.Options)) (*githubtest.Server, *github.Client) {
	t.Helper()
	srv := githubtest.NewServer(t)
	t.Cleanup(func() {
		for _, c := range srv.Unexpected() {
			t.Errorf("unexpected call %s %s?%s", c.Method, c.Path, c.Query)
		}
	})
	return srv, newClient(t, srv, srv.URL(), edit...)
}

// newClient returns a Client for endpoint on srv.
func newClient(t *testing.T, srv *githubtest.Server, endpoint string, edit ...func(*transport.Options)) *github.Client {
	t.Helper()
	opts := transport.Options{
		Endpoint: endpoint,
		Tokens:   transport.StaticToken("ghp_test"),
		Retry:    transport.RetryOptions{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond},
	}
	for _, e := range edit {
		e(&opts)
	}
	c, err := github.New(github.Options{Endpoint: endpoint, HTTPClient: &http.Client{Transport: transport.New(opts)}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// seedPull adds an open pull request number to srv.
func seedPull(srv *githubtest.Server, number int) githubtest.Pull {
	p := githubtest.Pull{
		Number: number, Author: "alice", Title: fmt.Sprintf("change %d", number),
		HeadSHA: sha1, HeadRef: "feature", BaseRef: "main", BaseSHA: base,
		UpdatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	srv.AddPull(repo, p)
	return p
}

func TestGetPull(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	updated := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		seed githubtest.Pull
		want forge.Pull
	}{
		{
			name: "same-repository branch, mergeable unknown",
			seed: githubtest.Pull{Number: 1, Author: "alice", HeadSHA: sha1, HeadRef: "feature", BaseRef: "main",
				BaseSHA: base, Labels: []string{"lgtm", "ok-to-test"}, UpdatedAt: updated},
			want: forge.Pull{Repo: repo, Number: 1, State: "open", Author: "alice", HeadSHA: sha1, HeadRef: "feature",
				BaseRef: "main", BaseSHA: base, Labels: []string{"lgtm", "ok-to-test"}, UpdatedAt: updated,
				HeadCloneURL: "https://github.com/acme/widget.git"},
		},
		{
			name: "draft from a fork, not mergeable",
			seed: githubtest.Pull{Number: 2, Draft: true, Author: "mallory", HeadSHA: sha2, HeadRef: "patch-1",
				BaseRef: "release-1.0", BaseSHA: base, Mergeable: new(false), UpdatedAt: updated,
				HeadCloneURL: "https://github.com/mallory/widget.git"},
			want: forge.Pull{Repo: repo, Number: 2, State: "open", Draft: true, Author: "mallory", HeadSHA: sha2,
				HeadRef: "patch-1", BaseRef: "release-1.0", BaseSHA: base, Mergeable: new(false), UpdatedAt: updated,
				HeadCloneURL: "https://github.com/mallory/widget.git"},
		},
		{
			name: "closed, mergeable",
			seed: githubtest.Pull{Number: 3, State: "closed", Author: "bob", HeadSHA: sha1, HeadRef: "x", BaseRef: "main",
				BaseSHA: base, Mergeable: new(true), UpdatedAt: updated},
			want: forge.Pull{Repo: repo, Number: 3, State: "closed", Author: "bob", HeadSHA: sha1, HeadRef: "x",
				BaseRef: "main", BaseSHA: base, Mergeable: new(true), UpdatedAt: updated,
				HeadCloneURL: "https://github.com/acme/widget.git"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.AddPull(repo, tt.seed)
			got, err := c.GetPull(t.Context(), repo, tt.seed.Number)
			if err != nil {
				t.Fatalf("GetPull: %v", err)
			}
			if diff := cmp.Diff(&tt.want, got); diff != "" {
				t.Errorf("GetPull (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedPull(srv, 1)
	ctx := t.Context()
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"missing pull", func() error { _, err := c.GetPull(ctx, repo, 99); return err }, "get pull acme/widget#99: not found on the forge: HTTP 404: Not Found"},
		{"missing repository", func() error { _, err := c.ListOpenPulls(ctx, "acme/gone"); return err }, "list open pulls of acme/gone: not found on the forge: HTTP 404"},
		{"files of a missing pull", func() error { _, err := c.ListPullFiles(ctx, repo, 99); return err }, "list files of pull acme/widget#99: not found"},
		{"comment on a missing pull", func() error { return c.CreateComment(ctx, repo, 99, "hi") }, "comment on acme/widget#99: not found"},
		{"label a missing pull", func() error { return c.AddLabel(ctx, repo, 99, "lgtm") }, `add label "lgtm" to acme/widget#99: not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, forge.ErrNotFound) {
				t.Errorf("got error %v, want forge.ErrNotFound", err)
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got error %v, want one starting %q", err, tt.want)
			}
			var ge *github.Error
			if !errors.As(err, &ge) || ge.Status != http.StatusNotFound {
				t.Errorf("got error %v, want a *github.Error with status 404", err)
			}
		})
	}
}

func TestListOpenPullsPaginates(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	for n := 1; n <= 250; n++ {
		seedPull(srv, n)
	}
	for n := 251; n <= 260; n++ {
		p := seedPull(srv, n)
		p.State = "closed"
		srv.AddPull(repo, p)
	}
	got, err := c.ListOpenPulls(t.Context(), repo)
	if err != nil {
		t.Fatalf("ListOpenPulls: %v", err)
	}
	if len(got) != 250 {
		t.Fatalf("got %d pulls, want 250", len(got))
	}
	for i, p := range got {
		if want := 250 - i; p.Number != want || p.State != "open" || p.Repo != repo {
			t.Fatalf("pull %d: got #%d %s of %s, want #%d open of %s", i, p.Number, p.State, p.Repo, want, repo)
		}
	}
	if got, want := srv.CallCount("GET", "/repos/acme/widget/pulls"), 3; got != want {
		t.Errorf("list requests: got %v, want %v", got, want)
	}
	for _, call := range srv.Calls() {
		if !strings.Contains(call.Query, "per_page=100") || !strings.Contains(call.Query, "state=open") {
			t.Errorf("query: got %q, want per_page=100 and state=open", call.Query)
		}
	}
}

func TestListPullFiles(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	p := seedPull(srv, 7)
	var want []string
	for i := range 230 {
		f := githubtest.File{Name: fmt.Sprintf("pkg/f%03d.go", i)}
		want = append(want, f.Name)
		if i%50 == 0 {
			f.PreviousName = fmt.Sprintf("old/f%03d.go", i)
			want = append(want, f.PreviousName)
		}
		p.Files = append(p.Files, f)
	}
	// A file renamed to a path another rename left keeps one entry.
	p.Files = append(p.Files, githubtest.File{Name: "old/f000.go", PreviousName: "pkg/f001.go"})
	srv.AddPull(repo, p)

	got, err := c.ListPullFiles(t.Context(), repo, 7)
	if err != nil {
		t.Fatalf("ListPullFiles: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListPullFiles (-want +got):\n%s", diff)
	}
	if got, want := srv.CallCount("GET", "/repos/acme/widget/pulls/7/files"), 3; got != want {
		t.Errorf("list requests: got %v, want %v", got, want)
	}
}

func TestTrust(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	srv.AddMember("acme", "alice")
	srv.AddCollaborator(repo, "bob")
	srv.AddRepo("acme/other")
	ctx := t.Context()
	tests := []struct {
		name string
		call func() (bool, error)
		want bool
	}{
		{"member", func() (bool, error) { return c.IsMember(ctx, "acme", "alice") }, true},
		{"member, other case", func() (bool, error) { return c.IsMember(ctx, "ACME", "Alice") }, true},
		{"not a member", func() (bool, error) { return c.IsMember(ctx, "acme", "bob") }, false},
		{"unknown org", func() (bool, error) { return c.IsMember(ctx, "nobody", "alice") }, false},
		{"bot, not a member", func() (bool, error) { return c.IsMember(ctx, "acme", "dependabot[bot]") }, false},
		{"collaborator", func() (bool, error) { return c.IsCollaborator(ctx, repo, "bob") }, true},
		{"not a collaborator", func() (bool, error) { return c.IsCollaborator(ctx, repo, "alice") }, false},
		{"collaborator elsewhere", func() (bool, error) { return c.IsCollaborator(ctx, "acme/other", "bob") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if got := srv.CallCount("GET", "/orgs/acme/members/alice"); got != 1 {
		t.Errorf("membership checks of alice: got %v, want 1", got)
	}

	// A server error is an error, not a "no".
	srv.Fail("GET /orgs/", http.StatusForbidden)
	if got, err := c.IsMember(ctx, "acme", "alice"); err == nil || got {
		t.Errorf("IsMember with 403: got %v, %v, want false and an error", got, err)
	}
}

func TestLabels(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedPull(srv, 3)
	ctx := t.Context()
	steps := []struct {
		name  string
		do    func() error
		after []string
	}{
		{"add", func() error { return c.AddLabel(ctx, repo, 3, "ok-to-test") }, []string{"ok-to-test"}},
		{"add again", func() error { return c.AddLabel(ctx, repo, 3, "ok-to-test") }, []string{"ok-to-test"}},
		{"add with slash", func() error { return c.AddLabel(ctx, repo, 3, "do-not-merge/hold") }, []string{"ok-to-test", "do-not-merge/hold"}},
		{"add with space", func() error { return c.AddLabel(ctx, repo, 3, "needs rebase") }, []string{"ok-to-test", "do-not-merge/hold", "needs rebase"}},
		{"remove with slash", func() error { return c.RemoveLabel(ctx, repo, 3, "do-not-merge/hold") }, []string{"ok-to-test", "needs rebase"}},
		{"remove with space", func() error { return c.RemoveLabel(ctx, repo, 3, "needs rebase") }, []string{"ok-to-test"}},
		{"remove absent", func() error { return c.RemoveLabel(ctx, repo, 3, "lgtm") }, []string{"ok-to-test"}},
		{"remove", func() error { return c.RemoveLabel(ctx, repo, 3, "ok-to-test") }, nil},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if diff := cmp.Diff(st.after, srv.Labels(repo, 3)); diff != "" {
			t.Fatalf("%s: labels (-want +got):\n%s", st.name, diff)
		}
	}
	if got, want := srv.CallCount("DELETE", "/repos/acme/widget/issues/3/labels/do-not-merge/hold"), 1; got != want {
		t.Errorf("DELETE of do-not-merge/hold: got %v calls, want %v", got, want)
	}

	// Removing from a pull that does not exist is not an error either:
	// GitHub answers both with 404.
	if err := c.RemoveLabel(ctx, repo, 99, "lgtm"); err != nil {
		t.Errorf("RemoveLabel on a missing pull: got %v, want nil", err)
	}
	// Other failures are.
	srv.Fail("DELETE /repos/acme/widget/issues/3/labels", http.StatusInternalServerError)
	if err := c.RemoveLabel(ctx, repo, 3, "lgtm"); err == nil {
		t.Errorf("RemoveLabel with 500: got nil, want an error")
	}
}

func TestComments(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedPull(srv, 4)
	var want []forge.Comment
	for i := range 150 {
		author := "alice"
		if i%2 == 1 {
			author = "bob"
		}
		body := fmt.Sprintf("/test unit %d", i)
		id := srv.AddComment(repo, 4, author, body)
		want = append(want, forge.Comment{ID: id, Author: author, Body: body})
	}
	if err := c.CreateComment(t.Context(), repo, 4, "lockstep: ✔ all jobs passed"); err != nil {
		t.Fatalf("CreateComment: %v", err)
	}
	seeded := srv.Comments(repo, 4)
	last := seeded[len(seeded)-1]
	if last.Author != githubtest.DefaultUser || last.Body != "lockstep: ✔ all jobs passed" {
		t.Errorf("created comment: got %+v, want one by %s", last, githubtest.DefaultUser)
	}
	want = append(want, forge.Comment{ID: last.ID, Author: githubtest.DefaultUser, Body: last.Body})

	got, err := c.ListComments(t.Context(), repo, 4)
	if err != nil {
		t.Fatalf("ListComments: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListComments (-want +got):\n%s", diff)
	}
	if got, want := srv.CallCount("GET", "/repos/acme/widget/issues/4/comments"), 2; got != want {
		t.Errorf("list requests: got %v, want %v", got, want)
	}
}

func TestStatuses(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := t.Context()
	srv.AddRepo(repo)
	var want []forge.Status
	for i := range 120 {
		ctxName := fmt.Sprintf("lockstep/job-%03d", i)
		if err := c.CreateStatus(ctx, repo, sha1, forge.Status{Context: ctxName, State: forge.StatusPending, Description: "queued"}); err != nil {
			t.Fatalf("CreateStatus: %v", err)
		}
		final := forge.Status{Context: ctxName, State: forge.StatusSuccess, Description: "passed",
			TargetURL: "https://lockstep.example/runs/" + fmt.Sprint(i)}
		if i%3 == 0 {
			final.State, final.Description, final.TargetURL = forge.StatusFailure, "", ""
		}
		if err := c.CreateStatus(ctx, repo, sha1, final); err != nil {
			t.Fatalf("CreateStatus: %v", err)
		}
		want = append(want, final)
	}
	got, err := c.ListStatuses(ctx, repo, sha1)
	if err != nil {
		t.Fatalf("ListStatuses: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListStatuses (-want +got):\n%s", diff)
	}
	if got, want := len(srv.Statuses(repo, sha1)), 240; got != want {
		t.Errorf("status history: got %v entries, want %v", got, want)
	}
	if got, want := srv.CallCount("GET", "/repos/acme/widget/commits/"+sha1+"/status"), 2; got != want {
		t.Errorf("combined status requests: got %v, want %v", got, want)
	}
	if got, err := c.ListStatuses(ctx, repo, sha2); err != nil || len(got) != 0 {
		t.Errorf("ListStatuses of a commit without statuses: got %v, %v, want none", got, err)
	}
}

func TestCreateStatusUnprocessable(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	srv.SetCommits(repo, sha1)
	err := c.CreateStatus(t.Context(), repo, "abc123", forge.Status{Context: "unit", State: forge.StatusSuccess})
	if !errors.Is(err, forge.ErrUnprocessable) {
		t.Fatalf("got error %v, want forge.ErrUnprocessable", err)
	}
	if got, want := err.Error(), "create status acme/widget@abc123 unit: refused by the forge: HTTP 422: No commit found for SHA: abc123"; got != want {
		t.Errorf("got error %q, want %q", got, want)
	}
	if got := srv.CallCount("POST", "/repos/acme/widget/statuses/"); got != 1 {
		t.Errorf("POSTs: got %v, want 1 (a 422 is not retried)", got)
	}

	// An invalid state is refused with GitHub's field error.
	err = c.CreateStatus(t.Context(), repo, sha1, forge.Status{Context: "unit", State: "done"})
	if !errors.Is(err, forge.ErrUnprocessable) || !strings.Contains(err.Error(), "Validation Failed (state is not included in the list)") {
		t.Errorf("invalid state: got %v, want forge.ErrUnprocessable with GitHub's field error", err)
	}
	if err := c.CreateStatus(t.Context(), repo, sha1, forge.Status{Context: "unit", State: forge.StatusSuccess}); err != nil {
		t.Errorf("status on a known commit: %v", err)
	}
}

func TestCreateStatusTruncatesDescription(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	srv.AddRepo(repo)
	tests := []struct {
		name, desc, want string
	}{
		{"short", "all good", "all good"},
		{"exactly 140", strings.Repeat("é", 140), strings.Repeat("é", 140)},
		{"long multi-byte", strings.Repeat("日本", 100), strings.Repeat("日本", 69) + "日…"},
		{"long with invalid UTF-8", "\xff" + strings.Repeat("a", 200), "\uFFFD" + strings.Repeat("a", 138) + "…"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctxName := fmt.Sprintf("job-%d", i)
			if err := c.CreateStatus(t.Context(), repo, sha1, forge.Status{Context: ctxName, State: forge.StatusPending, Description: tt.desc}); err != nil {
				t.Fatalf("CreateStatus: %v", err)
			}
			var got string
			for _, st := range srv.Statuses(repo, sha1) {
				if st.Context == ctxName {
					got = st.Description
				}
			}
			if got != tt.want {
				t.Errorf("description: got %q, want %q", got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > github.MaxDescription || !utf8.ValidString(got) {
				t.Errorf("description: got %d runes, valid %v, want at most %d valid runes", n, utf8.ValidString(got), github.MaxDescription)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 5, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "ab…"},
		{"héllo", 4, "hél…"},
		{"abc", 0, ""},
		{"a\xffb", 10, "a\uFFFDb"},
	}
	for _, tt := range tests {
		if got := github.Truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d): got %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

// TestRetries: a status POST is retried through the transport chain after
// a 502, because setting a status twice is harmless; a comment POST is
// not, because a comment could be doubled.
func TestRetries(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedPull(srv, 5)
	ctx := t.Context()

	srv.FailNext(1, http.StatusBadGateway)
	if err := c.CreateStatus(ctx, repo, sha1, forge.Status{Context: "unit", State: forge.StatusSuccess}); err != nil {
		t.Fatalf("CreateStatus after one 502: %v", err)
	}
	var codes []int
	for _, call := range srv.Calls() {
		codes = append(codes, call.Status)
	}
	if diff := cmp.Diff([]int{http.StatusBadGateway, http.StatusCreated}, codes); diff != "" {
		t.Errorf("status POST answers (-want +got):\n%s", diff)
	}
	if got := len(srv.Statuses(repo, sha1)); got != 1 {
		t.Errorf("statuses: got %v, want 1", got)
	}

	srv.ResetCalls()
	srv.FailNext(1, http.StatusBadGateway)
	err := c.CreateComment(ctx, repo, 5, "hello")
	var ge *github.Error
	if !errors.As(err, &ge) || ge.Status != http.StatusBadGateway {
		t.Errorf("CreateComment after a 502: got %v, want a *github.Error with status 502", err)
	}
	if got := srv.CallCount("POST", "/"); got != 1 {
		t.Errorf("comment POSTs: got %v, want 1", got)
	}
	if got := srv.Comments(repo, 5); len(got) != 0 {
		t.Errorf("comments: got %v, want none", got)
	}

	// GETs are retried too.
	srv.FailNext(2, http.StatusServiceUnavailable)
	if _, err := c.GetPull(ctx, repo, 5); err != nil {
		t.Errorf("GetPull after two 503s: %v", err)
	}
}

func TestBotLogin(t *testing.T) {
	t.Parallel()
	t.Run("configured", func(t *testing.T) {
		t.Parallel()
		srv := githubtest.NewServer(t)
		c, err := github.New(github.Options{Endpoint: srv.URL(), HTTPClient: srv.Client(), BotLogin: "lockstep-ci[bot]"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.BotLogin(t.Context())
		if err != nil || got != "lockstep-ci[bot]" {
			t.Errorf("BotLogin: got %q, %v, want lockstep-ci[bot]", got, err)
		}
		if n := len(srv.Calls()); n != 0 {
			t.Errorf("calls: got %v, want 0", n)
		}
	})
	t.Run("user", func(t *testing.T) {
		t.Parallel()
		srv, c := setup(t)
		srv.SetUser("ci-robot")
		for range 3 {
			got, err := c.BotLogin(t.Context())
			if err != nil || got != "ci-robot" {
				t.Fatalf("BotLogin: got %q, %v, want ci-robot", got, err)
			}
		}
		if got := srv.CallCount("GET", "/user"); got != 1 {
			t.Errorf("GET /user: got %v calls, want 1", got)
		}
	})
	t.Run("app", func(t *testing.T) {
		t.Parallel()
		srv, c := setup(t)
		srv.SetApp("lockstep-ci")
		got, err := c.BotLogin(t.Context())
		if err != nil || got != "lockstep-ci[bot]" {
			t.Fatalf("BotLogin: got %q, %v, want lockstep-ci[bot]", got, err)
		}
		if got := srv.CallCount("GET", "/app"); got != 1 {
			t.Errorf("GET /app: got %v calls, want 1", got)
		}
	})
	t.Run("failure is not cached", func(t *testing.T) {
		t.Parallel()
		srv, c := setup(t)
		srv.Fail("GET /user", http.StatusUnauthorized)
		if got, err := c.BotLogin(t.Context()); err == nil {
			t.Fatalf("BotLogin with 401: got %q, want an error", got)
		}
		srv.Fail("GET /user", 0)
		if got, err := c.BotLogin(t.Context()); err != nil || got != githubtest.DefaultUser {
			t.Errorf("BotLogin: got %q, %v, want %s", got, err, githubtest.DefaultUser)
		}
	})
}

// TestETagCache: a repeated GET through transport.New's cache is
// revalidated with If-None-Match, answered 304 without spending rate
// limit, and still returns the data; a change is seen at once.
func TestETagCache(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedPull(srv, 6)
	ctx := t.Context()
	first, err := c.GetPull(ctx, repo, 6)
	if err != nil {
		t.Fatal(err)
	}
	remaining := srv.RateLimitRemaining()
	second, err := c.GetPull(ctx, repo, 6)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("cached pull differs (-first +second):\n%s", diff)
	}
	if got := srv.RateLimitRemaining(); got != remaining {
		t.Errorf("rate limit remaining after a 304: got %v, want %v", got, remaining)
	}
	calls := srv.Calls()
	if got, want := calls[len(calls)-1].Status, http.StatusNotModified; got != want {
		t.Errorf("second GET: got status %v, want %v", got, want)
	}

	srv.SetHead(repo, 6, sha2)
	third, err := c.GetPull(ctx, repo, 6)
	if err != nil {
		t.Fatal(err)
	}
	if third.HeadSHA != sha2 {
		t.Errorf("head after push: got %v, want %v", third.HeadSHA, sha2)
	}
	if got := srv.RateLimitRemaining(); got != remaining-1 {
		t.Errorf("rate limit remaining after a changed GET: got %v, want %v", got, remaining-1)
	}
}

// fakeClockSetup returns a fake GitHub and a Client sharing a fake clock.
func fakeClockSetup(t *testing.T) (*githubtest.Server, *github.Client, *testclock.FakeClock) {
	t.Helper()
	fc := testclock.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	srv, c := setup(t, func(o *transport.Options) { o.Clock = fc })
	srv.SetNow(fc.Now)
	return srv, c, fc
}

// poll waits until cond holds, failing the test after testDeadline.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestPrimaryRateLimitWait: with the window exhausted, a request waits on
// the transport's clock for the reset GitHub announced, then succeeds.
func TestPrimaryRateLimitWait(t *testing.T) {
	t.Parallel()
	srv, c, fc := fakeClockSetup(t)
	seedPull(srv, 8)
	srv.SetRateLimitRemaining(0, fc.Now().Add(10*time.Minute))

	done := make(chan error, 1)
	go func() {
		_, err := c.GetPull(context.Background(), repo, 8)
		done <- err
	}()
	poll(t, "the client to wait for the reset", fc.HasWaiters)
	if got := srv.CallCount("GET", "/"); got != 1 {
		t.Fatalf("calls before the reset: got %v, want 1", got)
	}
	select {
	case err := <-done:
		t.Fatalf("GetPull returned %v before the reset", err)
	default:
	}
	fc.Step(10 * time.Minute)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("GetPull after the reset: %v", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("GetPull did not return after the reset")
	}
	var codes []int
	for _, call := range srv.Calls() {
		codes = append(codes, call.Status)
	}
	if diff := cmp.Diff([]int{http.StatusForbidden, http.StatusOK}, codes); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}

// TestSecondaryRateLimitWait: a secondary rate limit is waited out for
// its Retry-After, and the POST sent again.
func TestSecondaryRateLimitWait(t *testing.T) {
	t.Parallel()
	srv, c, fc := fakeClockSetup(t)
	srv.AddRepo(repo)
	srv.SecondaryRateLimitNext(1, 60)
	done := make(chan error, 1)
	go func() {
		done <- c.CreateStatus(context.Background(), repo, sha1, forge.Status{Context: "unit", State: forge.StatusPending})
	}()
	poll(t, "the client to wait out Retry-After", fc.HasWaiters)
	fc.Step(time.Minute)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("CreateStatus: %v", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("CreateStatus did not return after Retry-After")
	}
	if got := len(srv.Statuses(repo, sha1)); got != 1 {
		t.Errorf("statuses: got %v, want 1", got)
	}
}

func TestEnterpriseEndpoint(t *testing.T) {
	t.Parallel()
	srv := githubtest.NewServer(t)
	seedPull(srv, 9)
	c := newClient(t, srv, srv.URL()+githubtest.EnterprisePrefix)
	got, err := c.GetPull(t.Context(), repo, 9)
	if err != nil {
		t.Fatalf("GetPull: %v", err)
	}
	if got.Number != 9 {
		t.Errorf("number: got %v, want 9", got.Number)
	}
	calls := srv.Calls()
	if len(calls) != 1 || calls[0].Path != "/repos/acme/widget/pulls/9" || !calls[0].Authorized {
		t.Errorf("calls: got %+v, want one authorized GET of /repos/acme/widget/pulls/9", calls)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, endpoint := range []string{"api.github.com", "ftp://x/", "http://"} {
		if _, err := github.New(github.Options{Endpoint: endpoint}); err == nil {
			t.Errorf("New with endpoint %q: got nil error, want one", endpoint)
		}
	}
	if _, err := github.New(github.Options{}); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}

func TestParseRepo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		full, owner, name string
		ok                bool
	}{
		{"kubernetes/test-infra", "kubernetes", "test-infra", true},
		{"Acme-Co/widget.go", "Acme-Co", "widget.go", true},
		{"a/b_c", "a", "b_c", true},
		{"acme", "", "", false},
		{"/widget", "", "", false},
		{"acme/", "", "", false},
		{"acme/widget/extra", "", "", false},
		{"acme/..", "", "", false},
		{"ac me/widget", "", "", false},
		{"acme/wid?get", "", "", false},
	}
	for _, tt := range tests {
		owner, name, err := github.ParseRepo(tt.full)
		if (err == nil) != tt.ok || owner != tt.owner || name != tt.name {
			t.Errorf("ParseRepo(%q): got %q, %q, %v, want %q, %q, ok %v", tt.full, owner, name, err, tt.owner, tt.name, tt.ok)
		}
	}
	_, c := setup(t)
	if _, err := c.GetPull(t.Context(), "not-a-repo", 1); err == nil || !strings.Contains(err.Error(), "want owner/name") {
		t.Errorf("GetPull of a malformed repo: got %v, want an error saying owner/name", err)
	}
}

// TestConcurrent: 100 goroutines use one Client and one fake GitHub at
// once; run under -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	for n := 1; n <= 10; n++ {
		seedPull(srv, n)
	}
	srv.AddMember("acme", "alice")
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			n := i%10 + 1
			if _, err := c.GetPull(ctx, repo, n); err != nil {
				t.Errorf("GetPull: %v", err)
			}
			if err := c.CreateStatus(ctx, repo, sha1, forge.Status{Context: fmt.Sprintf("job-%d", i), State: forge.StatusSuccess}); err != nil {
				t.Errorf("CreateStatus: %v", err)
			}
			if err := c.CreateComment(ctx, repo, n, fmt.Sprintf("comment %d", i)); err != nil {
				t.Errorf("CreateComment: %v", err)
			}
			if err := c.AddLabel(ctx, repo, n, fmt.Sprintf("l%d", i%3)); err != nil {
				t.Errorf("AddLabel: %v", err)
			}
			if ok, err := c.IsMember(ctx, "acme", "alice"); err != nil || !ok {
				t.Errorf("IsMember: got %v, %v", ok, err)
			}
			if _, err := c.BotLogin(ctx); err != nil {
				t.Errorf("BotLogin: %v", err)
			}
			if _, err := c.ListStatuses(ctx, repo, sha1); err != nil {
				t.Errorf("ListStatuses: %v", err)
			}
		})
	}
	wg.Wait()
	if got := len(srv.Statuses(repo, sha1)); got != 100 {
		t.Errorf("statuses: got %v, want 100", got)
	}
	comments := 0
	for n := 1; n <= 10; n++ {
		comments += len(srv.Comments(repo, n))
		if got := len(srv.Labels(repo, n)); got == 0 || got > 3 {
			t.Errorf("labels of #%d: got %v, want 1 to 3", n, got)
		}
	}
	if comments != 100 {
		t.Errorf("comments: got %v, want 100", comments)
	}
}

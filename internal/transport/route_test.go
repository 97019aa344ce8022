package transport

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

func TestRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want string
	}{
		{"", "/"},
		{"/", "/"},
		{"/rate_limit", "/rate_limit"},
		{"/user", "/user"},
		{"/graphql", "/graphql"},
		{"/api/graphql", "/graphql"},
		{"/repos/kubernetes/test-infra", "/repos/{owner}/{repo}"},
		{"/repos/kubernetes", "/repos/{owner}"},
		{"/repos/o/r/statuses/0123456789abcdef0123456789abcdef01234567", "/repos/{owner}/{repo}/statuses/{sha}"},
		{"/repos/o/r/commits/0123abc/status", "/repos/{owner}/{repo}/commits/{sha}/status"},
		{"/repos/o/r/commits/main/check-runs", "/repos/{owner}/{repo}/commits/{sha}/check-runs"},
		{"/repos/o/r/issues/12/comments", "/repos/{owner}/{repo}/issues/{number}/comments"},
		{"/repos/o/r/issues/comments/99", "/repos/{owner}/{repo}/issues/comments/{comment_id}"},
		{"/repos/o/r/issues/12/labels/needs-ok-to-test", "/repos/{owner}/{repo}/issues/{number}/labels/{name}"},
		{"/repos/o/r/labels/issues", "/repos/{owner}/{repo}/labels/{name}"},
		{"/repos/o/r/pulls", "/repos/{owner}/{repo}/pulls"},
		{"/repos/o/r/pulls/7/files", "/repos/{owner}/{repo}/pulls/{number}/files"},
		{"/repos/o/r/pulls/7/reviews/3/comments", "/repos/{owner}/{repo}/pulls/{number}/reviews/{review_id}/comments"},
		{"/repos/o/r/contents/docs/a/b.md", "/repos/{owner}/{repo}/contents/{path}"},
		{"/repos/o/r/git/refs/heads/release-1.2", "/repos/{owner}/{repo}/git/refs/{ref}"},
		{"/repos/o/r/git/ref/heads/main", "/repos/{owner}/{repo}/git/ref/{ref}"},
		{"/repos/o/r/branches/feature%2Fx/protection", "/repos/{owner}/{repo}/branches/{branch}/protection"},
		{"/repos/o/r/compare/main...feature/x", "/repos/{owner}/{repo}/compare/{basehead}"},
		{"/repos/o/r/installation", "/repos/{owner}/{repo}/installation"},
		{"/repos/o/r/collaborators/alice/permission", "/repos/{owner}/{repo}/collaborators/{username}/permission"},
		{"/repos/o/r/check-runs/55", "/repos/{owner}/{repo}/check-runs/{check_run_id}"},
		{"/repos/o/r/actions/runs/42/jobs", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"},
		{"/app/installations/42/access_tokens", "/app/installations/{installation_id}/access_tokens"},
		{"/user/installations/1/repositories", "/user/installations/{installation_id}/repositories"},
		{"/orgs/kubernetes/members/alice", "/orgs/{org}/members/{username}"},
		{"/orgs/kubernetes/installation", "/orgs/{org}/installation"},
		{"/users/alice/installation", "/users/{username}/installation"},
		{"/search/issues", "/search/issues"},
		{"/api/v3/repos/o/r/pulls/1", "/repos/{owner}/{repo}/pulls/{number}"},
		{"/api/v3", "/"},
		{"/apiary/x", "/{id}/{id}"},
		{"/repos/o/r/", "/repos/{owner}/{repo}"},
		{"/weird/12345/thing", "/{id}/{id}/{id}"},
		{"/repos/o/r/issues/events/1/2/3/4/5/6/7/8/9", "/repos/{owner}/{repo}/issues/events/{event_id}/{id}/{id}/{id}/{id}/{id}/{id}/{rest}"},
	}
	for _, tt := range tests {
		if got := Route(tt.path); got != tt.want {
			t.Errorf("Route(%q): got %v, want %v", tt.path, got, tt.want)
		}
	}
}

// TestRouteBounded checks that owners, repositories, numbers, SHAs, refs
// and arbitrary words never reach a route, so the label stays bounded.
func TestRouteBounded(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	randWord := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789-_."
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	shapes := []string{
		"/repos/%s/%s/issues/%d/comments",
		"/repos/%s/%s/statuses/%s",
		"/repos/%s/%s/contents/%s/%s",
		"/repos/%s/%s/git/refs/heads/%s",
		"/repos/%s/%s/labels/%s",
		"/repos/%s/%s/%s/%d",
		"/%s/%s/%d",
	}
	routes := map[string]bool{}
	for i := 0; i < 5000; i++ {
		shape := shapes[i%len(shapes)]
		var args []any
		for _, verb := range strings.Split(shape, "%")[1:] {
			if verb[0] == 'd' {
				args = append(args, r.IntN(1e6))
			} else {
				args = append(args, url.PathEscape(randWord()))
			}
		}
		routes[Route(fmt.Sprintf(shape, args...))] = true
	}
	// Each shape yields one route, except "/repos/o/r/<word>/n", whose
	// random word is occasionally a vocabulary word.
	if len(routes) > 2*len(shapes) {
		t.Errorf("got %d routes from %d path shapes, want at most %d: %v", len(routes), len(shapes), 2*len(shapes), routes)
	}
	for route := range routes {
		for _, seg := range strings.Split(strings.Trim(route, "/"), "/") {
			if known, _, _ := word(seg); !known && !strings.HasPrefix(seg, "{") {
				t.Errorf("route %s: segment %q is neither a vocabulary word nor a placeholder", route, seg)
			}
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	for b.Loop() {
		Route("/repos/kubernetes/test-infra/issues/12345/comments")
	}
}

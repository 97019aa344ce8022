package githubtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gh "github.com/google/go-github/v89/github"
	testclock "k8s.io/utils/clock/testing"
)

const (
	repo = "acme/widget"
	sha  = "1111111111111111111111111111111111111111"
)

// testDeadline bounds every wait for a condition.
const testDeadline = 20 * time.Second

// response is what do got back.
type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request to s with an Authorization header and returns the
// answer.
func do(t *testing.T, s *Server, method, path, body string, header ...string) response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer ghp_test")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// seed adds n open pulls to repo of s.
func seed(s *Server, n int) {
	for i := 1; i <= n; i++ {
		s.AddPull(repo, Pull{Number: i, Author: "alice", HeadSHA: sha, HeadRef: "f", BaseRef: "main", BaseSHA: sha})
	}
}

func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	seed(s, 1)
	for i := 1; i <= 3; i++ {
		r := do(t, s, "GET", "/repos/acme/widget/pulls/1", "")
		if r.status != http.StatusOK {
			t.Fatalf("status: got %v, want 200", r.status)
		}
		want := map[string]string{
			"X-Ratelimit-Limit":     "5000",
			"X-Ratelimit-Remaining": strconv.Itoa(5000 - i),
			"X-Ratelimit-Used":      strconv.Itoa(i),
			"X-Ratelimit-Resource":  "core",
		}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("request %d: %s: got %q, want %q", i, k, got, v)
			}
		}
		reset, err := strconv.ParseInt(r.header.Get("X-RateLimit-Reset"), 10, 64)
		if err != nil || time.Until(time.Unix(reset, 0)) <= 0 || time.Until(time.Unix(reset, 0)) > time.Hour {
			t.Errorf("X-RateLimit-Reset: got %q, want a time within the next hour", r.header.Get("X-RateLimit-Reset"))
		}
	}
	// Errors carry them too, and count.
	r := do(t, s, "GET", "/repos/acme/widget/pulls/99", "")
	if r.status != http.StatusNotFound || r.header.Get("X-RateLimit-Remaining") != "4996" {
		t.Errorf("404: got status %v, remaining %q, want 404 and 4996", r.status, r.header.Get("X-RateLimit-Remaining"))
	}
}

func TestETag(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	seed(s, 1)
	first := do(t, s, "GET", "/repos/acme/widget/pulls/1", "")
	etag := first.header.Get("ETag")
	if !strings.HasPrefix(etag, `W/"`) {
		t.Fatalf("ETag: got %q, want a weak ETag", etag)
	}
	second := do(t, s, "GET", "/repos/acme/widget/pulls/1", "", "If-None-Match", etag)
	if second.status != http.StatusNotModified || second.body != "" {
		t.Errorf("conditional GET: got %v with body %q, want 304 and no body", second.status, second.body)
	}
	if got, want := second.header.Get("X-RateLimit-Remaining"), first.header.Get("X-RateLimit-Remaining"); got != want {
		t.Errorf("remaining after 304: got %v, want %v (unchanged)", got, want)
	}
	if got := second.header.Get("ETag"); got != etag {
		t.Errorf("ETag of 304: got %q, want %q", got, etag)
	}
	s.SetHead(repo, 1, "2222222222222222222222222222222222222222")
	third := do(t, s, "GET", "/repos/acme/widget/pulls/1", "", "If-None-Match", etag)
	if third.status != http.StatusOK || third.header.Get("ETag") == etag {
		t.Errorf("conditional GET after a change: got %v with ETag %q, want 200 and a new ETag", third.status, third.header.Get("ETag"))
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	seed(s, 250)
	tests := []struct {
		query     string
		numbers   [2]int // first and last number on the page
		rels      []string
		nextPage  string
		totalSeen int
	}{
		{"?per_page=100", [2]int{250, 151}, []string{"next", "last"}, "2", 100},
		{"?per_page=100&page=2", [2]int{150, 51}, []string{"prev", "next", "last", "first"}, "3", 100},
		{"?per_page=100&page=3", [2]int{50, 1}, []string{"prev", "first"}, "", 50},
		{"", [2]int{250, 221}, []string{"next", "last"}, "2", 30},
		{"?per_page=1000&page=3", [2]int{50, 1}, []string{"prev", "first"}, "", 50},
		{"?per_page=100&page=9", [2]int{}, []string{"prev", "first"}, "", 0},
		{"?per_page=100&direction=asc", [2]int{1, 100}, []string{"next", "last"}, "2", 100},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := do(t, s, "GET", "/repos/acme/widget/pulls"+tt.query, "")
			var pulls []gh.PullRequest
			if err := json.Unmarshal([]byte(r.body), &pulls); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(pulls) != tt.totalSeen {
				t.Fatalf("pulls: got %v, want %v", len(pulls), tt.totalSeen)
			}
			if len(pulls) > 0 {
				if got := [2]int{pulls[0].GetNumber(), pulls[len(pulls)-1].GetNumber()}; got != tt.numbers {
					t.Errorf("numbers: got %v, want %v", got, tt.numbers)
				}
			}
			var rels []string
			pages := map[string]string{}
			for l := range strings.SplitSeq(r.header.Get("Link"), ", ") {
				target, rel, ok := strings.Cut(l, `>; rel="`)
				if !ok {
					continue
				}
				rel = strings.TrimSuffix(rel, `"`)
				rels = append(rels, rel)
				u, err := url.Parse(strings.TrimPrefix(target, "<"))
				if err != nil || !strings.HasPrefix(target, "<"+s.URL()+"/repos/acme/widget/pulls?") {
					t.Errorf("Link target %q: want an absolute URL of the list", target)
					continue
				}
				pages[rel] = u.Query().Get("page")
				if got, want := u.Query().Get("per_page"), strings.TrimPrefix(strings.Split(tt.query, "&")[0], "?per_page="); strings.HasPrefix(tt.query, "?per_page") && got != want {
					t.Errorf("Link target %q: per_page %q, want %q kept", target, got, want)
				}
			}
			if diff := cmp.Diff(tt.rels, rels); diff != "" {
				t.Errorf("Link rels (-want +got):\n%s", diff)
			}
			if got := pages["next"]; got != tt.nextPage {
				t.Errorf("next page: got %q, want %q", got, tt.nextPage)
			}
		})
	}
}

func TestFilesCappedAt3000(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	p := Pull{Number: 1, Author: "alice", HeadSHA: sha}
	for i := range 3100 {
		p.Files = append(p.Files, File{Name: fmt.Sprintf("f%d", i)})
	}
	s.AddPull(repo, p)
	r := do(t, s, "GET", "/repos/acme/widget/pulls/1/files?per_page=100&page=30", "")
	var files []gh.CommitFile
	if err := json.Unmarshal([]byte(r.body), &files); err != nil {
		t.Fatal(err)
	}
	if len(files) != 100 || strings.Contains(r.header.Get("Link"), `rel="next"`) {
		t.Errorf("page 30: got %d files and Link %q, want 100 files and no next page", len(files), r.header.Get("Link"))
	}
}

func TestCallLog(t *testing.T) {
	t.Parallel()
	fc := testclock.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s := NewServer(t)
	s.SetNow(fc.Now)
	seed(s, 1)
	do(t, s, "GET", "/repos/acme/widget/pulls?state=open&per_page=100", "")
	fc.Step(time.Second)
	do(t, s, "POST", "/repos/acme/widget/statuses/"+sha, `{"state":"success","context":"unit"}`)
	do(t, s, "GET", "/nope", "")
	do(t, s, "PUT", "/repos/acme/widget/pulls/1", "{}")
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.URL()+"/user", nil)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	want := []Call{
		{Method: "GET", Path: "/repos/acme/widget/pulls", Query: "state=open&per_page=100", Time: fc.Now().Add(-time.Second), Status: 200, Authorized: true},
		{Method: "POST", Path: "/repos/acme/widget/statuses/" + sha, Body: `{"state":"success","context":"unit"}`, Time: fc.Now(), Status: 201, Authorized: true},
		{Method: "GET", Path: "/nope", Time: fc.Now(), Status: 404, Authorized: true, Unexpected: true},
		{Method: "PUT", Path: "/repos/acme/widget/pulls/1", Body: "{}", Time: fc.Now(), Status: 404, Authorized: true, Unexpected: true},
		{Method: "GET", Path: "/user", Time: fc.Now(), Status: 401},
	}
	if diff := cmp.Diff(want, s.Calls()); diff != "" {
		t.Errorf("Calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[2:4], s.Unexpected()); diff != "" {
		t.Errorf("Unexpected (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		method, prefix string
		want           int
	}{
		{"GET", "/", 3}, {"", "/", 5}, {"post", "/repos/acme/widget/statuses", 1}, {"GET", "/repos/", 1},
	} {
		if got := s.CallCount(tt.method, tt.prefix); got != tt.want {
			t.Errorf("CallCount(%q, %q): got %v, want %v", tt.method, tt.prefix, got, tt.want)
		}
	}
	s.ResetCalls()
	if got := len(s.Calls()); got != 0 {
		t.Errorf("calls after ResetCalls: got %v, want 0", got)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	seed(s, 1)
	get := func() response { return do(t, s, "GET", "/repos/acme/widget/pulls/1", "") }

	// FailNext: the next n requests fail, without spending rate limit.
	s.FailNext(2, http.StatusBadGateway)
	for i := range 2 {
		if r := get(); r.status != http.StatusBadGateway || r.header.Get("X-RateLimit-Remaining") != "5000" {
			t.Errorf("request %d after FailNext: got %v, remaining %q, want 502, 5000", i, r.status, r.header.Get("X-RateLimit-Remaining"))
		}
	}
	if r := get(); r.status != http.StatusOK {
		t.Errorf("request after the failures: got %v, want 200", r.status)
	}

	// Secondary rate limit.
	s.SecondaryRateLimitNext(1, 30)
	r := get()
	var body struct {
		Message          string `json:"message"`
		DocumentationURL string `json:"documentation_url"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusForbidden || r.header.Get("Retry-After") != "30" ||
		!strings.Contains(body.Message, "secondary rate limit") || !strings.HasSuffix(body.DocumentationURL, "secondary-rate-limits") {
		t.Errorf("secondary limit: got %v, Retry-After %q, %+v", r.status, r.header.Get("Retry-After"), body)
	}
	if r := get(); r.status != http.StatusOK {
		t.Errorf("after the secondary limit: got %v, want 200", r.status)
	}

	// Persistent rules, by method and prefix, longest prefix first.
	s.Fail("POST /repos/acme/widget/statuses", http.StatusInternalServerError)
	s.Fail("/repos/acme/widget/statuses/"+sha, http.StatusServiceUnavailable)
	s.Fail("/repos/acme", http.StatusBadGateway)
	for range 2 {
		if r := do(t, s, "POST", "/repos/acme/widget/statuses/"+sha, `{"state":"success","context":"c"}`); r.status != http.StatusServiceUnavailable {
			t.Errorf("POST under the longest rule: got %v, want 503", r.status)
		}
	}
	if r := do(t, s, "POST", "/repos/acme/widget/statuses/abc", `{"state":"success","context":"c"}`); r.status != http.StatusInternalServerError {
		t.Errorf("POST under the POST rule: got %v, want 500", r.status)
	}
	if r := get(); r.status != http.StatusBadGateway {
		t.Errorf("GET under the any-method rule: got %v, want 502", r.status)
	}
	s.Fail("/repos/acme", 0)
	if r := get(); r.status != http.StatusOK {
		t.Errorf("GET after clearing its rule: got %v, want 200", r.status)
	}
}

func TestPrimaryRateLimit(t *testing.T) {
	t.Parallel()
	fc := testclock.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s := NewServer(t)
	s.SetNow(fc.Now)
	seed(s, 1)
	reset := fc.Now().Add(10 * time.Minute)
	s.SetRateLimitRemaining(1, reset)
	if r := do(t, s, "GET", "/repos/acme/widget/pulls/1", ""); r.status != http.StatusOK || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("last request of the window: got %v, remaining %q, want 200, 0", r.status, r.header.Get("X-RateLimit-Remaining"))
	}
	for range 2 {
		r := do(t, s, "GET", "/repos/acme/widget/pulls/1", "")
		if r.status != http.StatusForbidden || r.header.Get("X-RateLimit-Remaining") != "0" ||
			r.header.Get("X-RateLimit-Reset") != strconv.FormatInt(reset.Unix(), 10) || !strings.Contains(r.body, "API rate limit exceeded") {
			t.Errorf("exhausted window: got %v %q, headers %v", r.status, r.body, r.header)
		}
	}
	fc.Step(10 * time.Minute)
	r := do(t, s, "GET", "/repos/acme/widget/pulls/1", "")
	if r.status != http.StatusOK || r.header.Get("X-RateLimit-Remaining") != "4999" {
		t.Errorf("after the reset: got %v, remaining %q, want 200, 4999", r.status, r.header.Get("X-RateLimit-Remaining"))
	}
	if got, want := r.header.Get("X-RateLimit-Reset"), strconv.FormatInt(fc.Now().Add(time.Hour).Unix(), 10); got != want {
		t.Errorf("new window's reset: got %v, want %v", got, want)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	seed(s, 1)
	statuses := "/repos/acme/widget/statuses/" + sha
	tests := []struct {
		name, method, path, body string
		status                   int
		contains                 string
	}{
		{"status ok", "POST", statuses, `{"state":"pending","context":"c","description":"d","target_url":"https://x"}`, 201, `"state":"pending"`},
		{"status bad state", "POST", statuses, `{"state":"done","context":"c"}`, 422, "state is not included in the list"},
		{"status no state", "POST", statuses, `{"context":"c"}`, 422, "state wasn't supplied"},
		{"status no context", "POST", statuses, `{"state":"success"}`, 422, "context wasn't supplied"},
		{"status description of 140", "POST", statuses, `{"state":"success","context":"c","description":"` + strings.Repeat("é", 140) + `"}`, 201, ""},
		{"status description of 141", "POST", statuses, `{"state":"success","context":"c","description":"` + strings.Repeat("é", 141) + `"}`, 422, "description is too long"},
		{"status bad JSON", "POST", statuses, `{"state":`, 400, "Problems parsing JSON"},
		{"status unknown repo", "POST", "/repos/acme/gone/statuses/" + sha, `{"state":"success","context":"c"}`, 404, "Not Found"},
		{"labels as object", "POST", "/repos/acme/widget/issues/1/labels", `{"labels":["a","b"]}`, 200, `"name":"b"`},
		{"labels as array", "POST", "/repos/acme/widget/issues/1/labels", `["c"]`, 200, `"name":"c"`},
		{"labels as string", "POST", "/repos/acme/widget/issues/1/labels", `{"labels":"a"}`, 422, "Invalid request"},
		{"labels with other fields", "POST", "/repos/acme/widget/issues/1/labels", `{"names":["a"]}`, 422, "Invalid request"},
		{"labels empty name", "POST", "/repos/acme/widget/issues/1/labels", `[" "]`, 422, "name can't be blank"},
		{"remove absent label", "DELETE", "/repos/acme/widget/issues/1/labels/zzz", "", 404, "Label does not exist"},
		{"remove label", "DELETE", "/repos/acme/widget/issues/1/labels/a", "", 200, `"name":"b"`},
		{"comment", "POST", "/repos/acme/widget/issues/1/comments", `{"body":"hi"}`, 201, `"login":"lockstep-bot"`},
		{"comment without body", "POST", "/repos/acme/widget/issues/1/comments", `{}`, 422, "body wasn't supplied"},
		{"comment on missing pull", "POST", "/repos/acme/widget/issues/2/comments", `{"body":"hi"}`, 404, "Not Found"},
		{"pulls bad state", "GET", "/repos/acme/widget/pulls?state=merged", "", 422, "Validation Failed"},
		{"pull number not a number", "GET", "/repos/acme/widget/pulls/abc", "", 404, "Not Found"},
	}
	for _, tt := range tests {
		r := do(t, s, tt.method, tt.path, tt.body)
		if r.status != tt.status || !strings.Contains(r.body, tt.contains) {
			t.Errorf("%s: got %v %s, want %v containing %q", tt.name, r.status, r.body, tt.status, tt.contains)
		}
	}
	if diff := cmp.Diff([]string{"b", "c"}, s.Labels(repo, 1)); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if got := len(s.Statuses(repo, sha)); got != 2 {
		t.Errorf("statuses: got %v, want 2 (only the valid ones)", got)
	}
	if got := s.Unexpected(); len(got) != 1 || got[0].Path != "/repos/acme/widget/pulls/abc" {
		t.Errorf("Unexpected: got %+v, want only the malformed pull number", got)
	}
}

func TestStatusesAndCommits(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	s.AddPull(repo, Pull{Number: 1, Author: "alice", HeadSHA: "aaa", BaseSHA: "bbb"})
	post := func(sha, state, ctx string) int {
		return do(t, s, "POST", "/repos/acme/widget/statuses/"+sha, `{"state":"`+state+`","context":"`+ctx+`"}`).status
	}
	// Without a commit list every SHA is accepted.
	if got := post("ccc", "success", "x"); got != 201 {
		t.Errorf("status on any SHA: got %v, want 201", got)
	}
	s.SetCommits(repo, "ddd")
	for _, tt := range []struct {
		sha  string
		want int
	}{{"aaa", 201}, {"bbb", 201}, {"ddd", 201}, {"DDD", 201}, {"ccc", 422}} {
		if got := post(tt.sha, "pending", "unit"); got != tt.want {
			t.Errorf("status on %s: got %v, want %v", tt.sha, got, tt.want)
		}
	}
	s.SetHead(repo, 1, "eee")
	if got := post("aaa", "pending", "unit"); got != 422 {
		t.Errorf("status on a force-pushed-away head: got %v, want 422", got)
	}
	if r := do(t, s, "GET", "/repos/acme/widget/commits/ccc/status", ""); r.status != 422 || !strings.Contains(r.body, "No commit found for SHA: ccc") {
		t.Errorf("combined status of an unknown SHA: got %v %s", r.status, r.body)
	}

	// Combined state and newest per context.
	for _, st := range []struct{ state, ctx string }{
		{"pending", "unit"}, {"success", "lint"}, {"failure", "e2e"}, {"success", "e2e"},
	} {
		post("ddd", st.state, st.ctx)
	}
	r := do(t, s, "GET", "/repos/acme/widget/commits/ddd/status", "")
	var combined gh.CombinedStatus
	if err := json.Unmarshal([]byte(r.body), &combined); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range combined.Statuses {
		got = append(got, st.GetContext()+"="+st.GetState())
	}
	if diff := cmp.Diff([]string{"e2e=success", "lint=success", "unit=pending"}, got); diff != "" {
		t.Errorf("combined statuses (-want +got):\n%s", diff)
	}
	if combined.GetState() != "pending" || combined.GetTotalCount() != 3 || combined.GetSHA() != "ddd" {
		t.Errorf("combined: got state %q, total %d, sha %q, want pending, 3, ddd", combined.GetState(), combined.GetTotalCount(), combined.GetSHA())
	}
	if got := len(s.Statuses(repo, "ddd")); got != 6 { // two from the checks above (ddd, DDD)
		t.Errorf("history: got %v, want 6", got)
	}
	if diff := cmp.Diff([]string{"e2e", "lint", "unit"}, contexts(s.LatestStatuses(repo, "ddd"))); diff != "" {
		t.Errorf("LatestStatuses (-want +got):\n%s", diff)
	}
	r = do(t, s, "GET", "/repos/acme/widget/commits/ddd/statuses", "")
	var history []gh.RepoStatus
	if err := json.Unmarshal([]byte(r.body), &history); err != nil {
		t.Fatal(err)
	}
	if len(history) != 6 || history[0].GetContext() != "e2e" || history[0].GetState() != "success" {
		t.Errorf("status list: got %d, first %s=%s, want 6, newest e2e=success first", len(history), history[0].GetContext(), history[0].GetState())
	}
}

// contexts returns the contexts of statuses.
func contexts(statuses []Status) []string {
	var out []string
	for _, st := range statuses {
		out = append(out, st.Context)
	}
	return out
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	s.AddPull(repo, Pull{Number: 1, Author: "alice"})
	var u gh.User
	r := do(t, s, "GET", "/user", "")
	if err := json.Unmarshal([]byte(r.body), &u); err != nil || u.GetLogin() != DefaultUser || u.GetType() != "User" {
		t.Errorf("GET /user: got %v %s", r.status, r.body)
	}
	if r := do(t, s, "GET", "/app", ""); r.status != 401 {
		t.Errorf("GET /app without an App: got %v, want 401", r.status)
	}
	s.SetApp("lockstep-ci")
	if r := do(t, s, "GET", "/user", ""); r.status != 403 || !strings.Contains(r.body, "Resource not accessible by integration") {
		t.Errorf("GET /user as an App: got %v %s", r.status, r.body)
	}
	var app gh.App
	r = do(t, s, "GET", "/app", "")
	if err := json.Unmarshal([]byte(r.body), &app); err != nil || app.GetSlug() != "lockstep-ci" {
		t.Errorf("GET /app: got %v %s", r.status, r.body)
	}
	do(t, s, "POST", "/repos/acme/widget/issues/1/comments", `{"body":"hi"}`)
	do(t, s, "POST", "/repos/acme/widget/statuses/"+sha, `{"state":"success","context":"c"}`)
	if got := s.Comments(repo, 1)[0].Author; got != "lockstep-ci[bot]" {
		t.Errorf("comment author: got %v, want lockstep-ci[bot]", got)
	}
	if got := s.Statuses(repo, sha)[0].Creator; got != "lockstep-ci[bot]" {
		t.Errorf("status creator: got %v, want lockstep-ci[bot]", got)
	}
}

func TestEnterprisePrefix(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	seed(s, 150)
	r := do(t, s, "GET", EnterprisePrefix+"/repos/acme/widget/pulls?per_page=100", "")
	if r.status != 200 || !strings.Contains(r.header.Get("Link"), s.URL()+EnterprisePrefix+"/repos/acme/widget/pulls?") {
		t.Errorf("Enterprise list: got %v, Link %q, want 200 and links under %s", r.status, r.header.Get("Link"), EnterprisePrefix)
	}
	if calls := s.Calls(); calls[0].Path != "/repos/acme/widget/pulls" {
		t.Errorf("recorded path: got %q, want it without the prefix", calls[0].Path)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	s.SetLatency(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", s.URL()+"/user", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Cancel once the Server holds the request, not before it arrived.
	arrived := time.NewTimer(testDeadline)
	defer arrived.Stop()
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for s.Waiting() != 1 {
		select {
		case err := <-done:
			t.Fatalf("request returned %v during an hour's latency", err)
		case <-arrived.C:
			t.Fatal("the request never reached the Server")
		case <-poll.C:
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(testDeadline):
		t.Fatal("request did not end when cancelled")
	}
	// The Server stops waiting too, and records the call.
	deadline := time.NewTimer(testDeadline)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for s.CallCount("GET", "/user") != 1 {
		select {
		case <-deadline.C:
			t.Fatal("the Server did not answer the cancelled request")
		case <-tick.C:
		}
	}
}

// TestSeedingIsolated: values handed to and read from the Server share no
// memory with it.
func TestSeedingIsolated(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	m := true
	p := Pull{Number: 1, Labels: []string{"a"}, Mergeable: &m, Files: []File{{Name: "x"}}}
	s.AddPull(repo, p)
	p.Labels[0], m, p.Files[0].Name = "changed", false, "changed"
	got, ok := s.Pull(repo, 1)
	if !ok || got.Labels[0] != "a" || !*got.Mergeable || got.Files[0].Name != "x" || got.State != "open" {
		t.Fatalf("Pull: got %+v, want the seeded values", got)
	}
	got.Labels[0] = "changed"
	s.UpdatePull(repo, 1, func(p *Pull) { p.Draft = true; p.Number = 7 })
	again, _ := s.Pull(repo, 1)
	if again.Labels[0] != "a" || !again.Draft || again.Number != 1 {
		t.Errorf("Pull after UpdatePull: got %+v, want label a, draft, number 1", again)
	}
	if _, ok := s.Pull(repo, 7); ok {
		t.Errorf("UpdatePull renumbered the pull")
	}
}

// TestConcurrentRequests: 100 goroutines hit the Server at once while
// others change its state and faults; run under -race.
func TestConcurrentRequests(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	seed(s, 10)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			n := i%10 + 1
			do(t, s, "GET", fmt.Sprintf("/repos/acme/widget/pulls/%d", n), "")
			do(t, s, "POST", "/repos/acme/widget/statuses/"+sha, fmt.Sprintf(`{"state":"success","context":"c%d"}`, i))
			do(t, s, "POST", fmt.Sprintf("/repos/acme/widget/issues/%d/comments", n), `{"body":"x"}`)
			do(t, s, "POST", fmt.Sprintf("/repos/acme/widget/issues/%d/labels", n), fmt.Sprintf(`["l%d"]`, i%4))
			do(t, s, "GET", "/repos/acme/widget/commits/"+sha+"/status?per_page=100", "")
		})
	}
	for i := range 10 {
		wg.Go(func() {
			s.SetHead(repo, i+1, sha)
			s.AddMember("acme", fmt.Sprint("u", i))
			s.SetLatency(0)
			s.Fail("/nothing", 500)
			_ = s.Calls()
			_ = s.Statuses(repo, sha)
			_ = s.Labels(repo, i+1)
			_ = s.RateLimitRemaining()
		})
	}
	wg.Wait()
	if got := len(s.Statuses(repo, sha)); got != 100 {
		t.Errorf("statuses: got %v, want 100", got)
	}
	if got := len(s.LatestStatuses(repo, sha)); got != 100 {
		t.Errorf("contexts: got %v, want 100", got)
	}
	comments := 0
	for n := 1; n <= 10; n++ {
		comments += len(s.Comments(repo, n))
	}
	if comments != 100 {
		t.Errorf("comments: got %v, want 100", comments)
	}
	if got := len(s.Calls()); got != 500 {
		t.Errorf("calls: got %v, want 500", got)
	}
	if got, want := s.RateLimitRemaining(), 5000-500; got != want {
		t.Errorf("remaining: got %v, want %v", got, want)
	}
}

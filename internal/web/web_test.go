package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// testNow is the time the seeded history of the handler tests leads up to.
var testNow = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

const testToken = "lst_TESTTOKENTESTTOKENTESTTOKEN"

type testEnv struct {
	store *sqlite.Store
	srv   *Server
	ts    *httptest.Server
	seed  seeded
	dir   string
}

// newEnv seeds a store, serves it with the admin token testToken and a
// clock stopped at testNow, and returns the running test server. edit,
// if set, changes the options first.
func newEnv(t *testing.T, edit func(*Options)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "lockstep.db")
	sd := seed(t, db, filepath.Join(dir, "logs"), testNow)
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts := Options{
		Store: st, Deliveries: st, Pulls: st, Builds: st, Refusals: st, PullList: st, Sessions: st,
		Periodics:  seedPeriodics(t, st, func() time.Time { return testNow }),
		Logger:     slog.New(slog.DiscardHandler),
		AdminToken: testToken,
		Clock:      clocktesting.NewFakeClock(testNow),
	}
	if edit != nil {
		edit(&opts)
	}
	srv := New(opts)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.CloseStreams()
		ts.Close()
	})
	return &testEnv{store: st, srv: srv, ts: ts, seed: sd, dir: dir}
}

// client returns an HTTP client with a cookie jar that does not follow
// redirects.
func (e *testEnv) client(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signedIn returns a client signed in with the admin token.
func (e *testEnv) signedIn(t *testing.T) *http.Client {
	t.Helper()
	c := e.client(t)
	csrf, _ := formTokens(t, e, c, "/login")
	if status, _, _ := e.post(t, c, "/login", url.Values{"csrf": {csrf}, "token": {testToken}}, nil); status != http.StatusSeeOther {
		t.Fatalf("sign in: got %d", status)
	}
	return c
}

func (e *testEnv) get(t *testing.T, c *http.Client, path string) (int, string, http.Header) {
	t.Helper()
	if c == nil {
		c = e.client(t)
	}
	resp, err := c.Get(e.ts.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func (e *testEnv) post(t *testing.T, c *http.Client, path string, form url.Values, header map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", e.ts.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s does not contain %q", what, w)
		}
	}
}

func mustNotContain(t *testing.T, what, body string, nots ...string) {
	t.Helper()
	for _, w := range nots {
		if strings.Contains(body, w) {
			t.Errorf("%s contains %q", what, w)
		}
	}
}

// rowCount counts the table rows of a page's body.
func rowCount(body string) int {
	_, tbody, ok := strings.Cut(body, "<tbody>")
	if !ok {
		return 0
	}
	tbody, _, _ = strings.Cut(tbody, "</tbody>")
	return strings.Count(tbody, "<tr")
}

func TestPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	sd := e.seed
	tests := []struct {
		path   string
		status int
		want   []string
		not    []string
	}{
		{"/", 200, []string{"<h1>Runs</h1>", `<label for="f-repo">Repository</label>`, "acme/gadgets", `rel="next"`}, nil},
		{"/runs?repo=acme/widgets&pr=42", 200, []string{`href="/repos/acme/widgets/pulls/42"`, "3f9c2a71d0", "a1b2c3d4e5",
			`href="/login?next=%2fruns%3frepo%3dacme%2fwidgets%26pr%3d42"`}, []string{"acme/gadgets"}},
		{"/runs?pr=x", 400, []string{`pr=&#34;x&#34;: want a pull request number`}, nil},
		{"/runs?continue=bogus", 400, []string{"not valid any more"}, nil},
		{fmt.Sprintf("/runs/%d", sd.PullFailed), 200, []string{
			"Run " + sd.PullFailed.String() + " ", "state-failure", "✗ failure", "ScriptExited",
			`href="https://github.com/acme/widgets/commit/3f9c2a71d05be84c6a1f0e2d7b93c4a8e6f15d20"`,
			`href="https://github.com/acme/widgets/pull/42"`, `href="/repos/acme/widgets/pulls/42"`,
			"started by a forge event, asked for by octocat", "Admitted", "Finished: failure",
			"--- FAIL: TestRetryBackoff", "Re-run and abort need the",
			// The first error line leads, linked to its line in the log.
			`<a href="#L8">First error, line 8</a>: <code>--- FAIL: TestRetryBackoff (0.31s)</code>`,
			`<span class="ln" id="L8"><a class="lnum" href="#L8" aria-label="line 8">8</a><span class="lt"><span class="a-f1 a-b">--- FAIL: TestRetryBackoff (0.31s)</span></span></span>`,
			"github: posted failure",
			`<details class="run-details" id="details">`,
		}, []string{`id="rerun"`, `id="abort"`, "data-stream"}},
		{fmt.Sprintf("/runs/%d", sd.Periodic), 200, []string{
			"Build under test", "stale build", "v1.4.2", `href="/markers#marker-stable"`, "newer builds",
			"upgrade-from-v1.3 ... FAILED", "failure, on a stale build", "cron schedule",
		}, nil},
		{"/runs/999999", 404, []string{"lockstep has no run 999999"}, nil},
		{"/runs/abc", 404, []string{"is not a run number"}, nil},
		{"/repos/acme/widgets/pulls/42", 200, []string{
			"PR #42 <span class=\"pr-title\">Fix flaky retry</span>", `href="/repos/acme/widgets"`, "Head <a", "a1b2c3d4e5", "Not green (3 jobs): integration error, lint failure.",
			"Earlier commits", "3f9c2a71d0", "ok-to-test",
		}, nil},
		{"/repos/acme/widgets/pulls/43", 200, []string{"runs nothing until a trusted person comments /ok-to-test", "No runs on the head commit"}, nil},
		{"/repos/acme/widgets/pulls/44", 200, []string{"not mergeable"}, nil},
		{"/repos/acme/widgets/pulls/999", 404, []string{"look at the deliveries page"}, nil},
		{"/deliveries", 200, []string{
			"72d3162e-cc78-11e3-81ab-4c9367dc0958", "badge-created", "badge-outdated", "badge-failed", "badge-ignored",
			"the comment is on an issue, not a pull request", "502 Bad Gateway", "not processed yet",
			`<label for="f-event">Event</label>`,
		}, nil},
		{"/deliveries?event=issue_comment", 200, []string{"the comment is on an issue"}, []string{"502 Bad Gateway"}},
		{"/deliveries?state=bogus", 400, []string{"want pending, done or failed"}, nil},
		{"/periodics", 200, []string{"nightly-e2e", "cron 0 3 * * * UTC", "hourly-smoke", "PreviousRunUnfinished", "interval 1h0m0s",
			"stale: 12 newer", "v1.4.15 <span class=\"muted\">(latest)</span>"}, nil},
		{"/markers", 200, []string{`id="stale-alert"`, "1 stale marker", "GateFailing", seedStaleText, "STALE", "v1.4.15", "History", "fresh"}, nil},
		{"/login", 200, []string{`<label for="token">Admin token</label>`, `type="password"`}, nil},
		{"/healthz", 200, []string{"ok"}, nil},
		{"/readyz", 200, []string{"ok"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, body, h := e.get(t, nil, tt.path)
			if status != tt.status {
				t.Errorf("GET %s: got status %d, want %d\n%s", tt.path, status, tt.status, body)
			}
			mustContain(t, tt.path, body, tt.want...)
			mustNotContain(t, tt.path, body, tt.not...)
			if ct := h.Get("Content-Type"); strings.HasPrefix(ct, "text/html") {
				mustContain(t, tt.path, h.Get("Content-Security-Policy"), "default-src 'self'")
			}
		})
	}
}

func TestPagesWithoutOptionalSources(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.Deliveries, o.Pulls, o.Builds = nil, nil, nil })
	for path, want := range map[string]string{
		"/deliveries":                  "keeps no deliveries",
		"/periodics":                   "keeps no schedules",
		"/markers":                     "keeps no markers",
		"/repos/acme/widgets/pulls/42": "Head <a",
	} {
		status, body, _ := e.get(t, nil, path)
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: got %d, want 200 and %q", path, status, want)
		}
	}
	// Without the pull request's stored state, the head is its newest
	// run's commit.
	_, body, _ := e.get(t, nil, "/repos/acme/widgets/pulls/42")
	mustContain(t, "pull page", body, "Head <a href=\"https://github.com/acme/widgets/commit/"+seedHead)
}

func TestRunsFiltersAndPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tests := []struct {
		query string
		check func(r *run.Run) bool
	}{
		{"repo=acme/gadgets", func(r *run.Run) bool { return r.Spec.Refs.Repo == "acme/gadgets" }},
		{"repo=acme/gadgets&pr=101", func(r *run.Run) bool { return r.Spec.Refs.Pull == 101 }},
		{"job=lint", func(r *run.Run) bool { return r.Spec.Job == "lint" }},
		{"state=failure,error", func(r *run.Run) bool { return r.Status.State == run.Failure || r.Status.State == run.Error }},
		{"type=periodic", func(r *run.Run) bool { return r.Spec.Type == run.Periodic }},
		{"repo=acme/widgets&job=unit&state=failure", func(r *run.Run) bool {
			return r.Spec.Refs.Repo == "acme/widgets" && r.Spec.Job == "unit" && r.Status.State == run.Failure
		}},
	}
	idLink := regexp.MustCompile(`<td data-label="Run"><a href="/runs/(\d+)">run `)
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			status, body, _ := e.get(t, nil, "/runs?"+tt.query)
			if status != 200 {
				t.Fatalf("got status %d", status)
			}
			ids := idLink.FindAllStringSubmatch(body, -1)
			if len(ids) == 0 {
				t.Fatal("no runs listed")
			}
			for _, m := range ids {
				var id int64
				fmt.Sscan(m[1], &id)
				r, err := e.store.GetRun(context.Background(), run.ID(id))
				if err != nil {
					t.Fatal(err)
				}
				if !tt.check(r) {
					t.Errorf("run %d listed but does not match %s", id, tt.query)
				}
			}
		})
	}

	// Pages: 50 runs, then the next 50, none twice, newest first.
	seen := map[string]bool{}
	path := "/runs?repo=acme/gadgets"
	var pages []int
	for path != "" {
		_, body, _ := e.get(t, nil, path)
		ids := idLink.FindAllStringSubmatch(body, -1)
		pages = append(pages, len(ids))
		for _, m := range ids {
			if seen[m[1]] {
				t.Errorf("run %s listed twice", m[1])
			}
			seen[m[1]] = true
		}
		path = ""
		if m := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
			if !strings.Contains(path, "repo=acme%2Fgadgets") {
				t.Errorf("next page %s lost the filter", path)
			}
		}
	}
	if got, want := fmt.Sprint(pages), "[50 50 20]"; got != want {
		t.Errorf("page sizes: got %s, want %s", got, want)
	}
}

func TestRunPageLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	// A running run whose last line is unfinished: the page shows the
	// complete lines and streams from the start of the unfinished one.
	logPath := filepath.Join(e.dir, "live.log")
	writeFile(t, logPath, "one\n\x1b[32mtwo\x1b[0m\nthr")
	rn := createRunning(t, e.store, "live/1", logPath)
	admin := e.signedIn(t)
	_, body, _ := e.get(t, admin, fmt.Sprintf("/runs/%d", rn.ID))
	mustContain(t, "running run page", body,
		fmt.Sprintf(`data-next-line="3" data-stream="/api/v1/runs/%d/log/stream?format=html" data-offset="17"`, rn.ID),
		`<span class="lt">one</span></span><span class="ln" id="L2"><a class="lnum" href="#L2" aria-label="line 2">2</a><span class="lt"><span class="a-f2">two</span></span></span></pre>`,
		`id="abort"`, "Live: new lines appear")
	mustNotContain(t, "running run page", body, `id="rerun"`, "thr")

	// An abort already asked for hides the button.
	_, err := e.store.UpdateRun(ctx, withLabel(rn, run.LabelAbort, "ByUser"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ = e.get(t, admin, fmt.Sprintf("/runs/%d", rn.ID))
	mustContain(t, "aborting run page", body, "Abort requested (ByUser)")
	mustNotContain(t, "aborting run page", body, `id="abort"`)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func withLabel(r *run.Run, k, v string) *run.Run {
	c := *r
	c.Labels = map[string]string{k: v}
	for kk, vv := range r.Labels {
		c.Labels[kk] = vv
	}
	return &c
}

// createRunning stores a running run of acme/widgets whose log is at
// logPath.
func createRunning(t *testing.T, s store.Runs, key, logPath string) *run.Run {
	t.Helper()
	start := testNow.Add(-time.Minute)
	rn, err := s.CreateRun(context.Background(), &run.Run{
		Spec: run.Spec{Job: "e2e", Type: run.Presubmit, Cause: run.CauseEvent, Script: "make e2e", TriggerKey: key,
			Refs: run.Refs{Repo: seedRepo, Pull: seedPull, HeadSHA: seedHead, BaseRef: "main"}},
		Status: run.Status{State: run.Running, StartedAt: &start, LogPath: logPath, Handle: "pgid:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return rn
}

func TestAPIRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	status, body, _ := e.get(t, nil, "/api/v1/runs?repo=acme/widgets&pr=42&limit=2")
	if status != 200 {
		t.Fatalf("got %d: %s", status, body)
	}
	var page struct {
		Runs     []APIRun `json:"runs"`
		Continue string   `json:"continue"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Runs) != 2 || page.Continue == "" || page.Runs[0].PR != 42 || page.Runs[0].LogURL == "" {
		t.Errorf("got %+v", page)
	}
}

func TestStaticAndHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, body, _ := e.get(t, nil, "/runs")
	m := regexp.MustCompile(`href="(/static/style\.css\?v=[0-9a-f]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no versioned stylesheet link")
	}
	status, css, h := e.get(t, nil, m[1])
	if status != 200 || !strings.Contains(css, ":focus-visible") || !strings.Contains(h.Get("Cache-Control"), "immutable") {
		t.Errorf("GET %s: %d %q", m[1], status, h.Get("Cache-Control"))
	}
	status, js, _ := e.get(t, nil, "/static/app.js")
	if status != 200 || !strings.Contains(js, "EventSource") {
		t.Errorf("GET /static/app.js: %d", status)
	}
	// No inline script or style: the CSP forbids them.
	for _, path := range []string{"/runs", "/markers", fmt.Sprintf("/runs/%d", e.seed.Periodic)} {
		_, body, _ := e.get(t, nil, path)
		mustNotContain(t, path, body, "<script>", " style=\"", "<style")
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{500 * time.Millisecond, "500ms"},
		{45 * time.Second, "45s"},
		{200 * time.Second, "3m 20s"},
		{125 * time.Minute, "2h 5m"},
		{99 * time.Hour, "4d 3h"},
		{-90 * time.Second, "1m 30s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestStaleText(t *testing.T) {
	t.Parallel()
	since := testNow.Add(-48 * time.Hour)
	newest := testNow.Add(-3 * time.Hour)
	m := &store.Marker{BuildID: 3, Version: "v1.2.0", Status: store.MarkerStatus{
		NewerBuilds: 2, NewestVersion: "v1.2.2", NewestAt: &newest, GateFailures: 1, GateFailingSince: &since}}
	got := staleText(m, 72*time.Hour, testNow)
	want := "it has named build v1.2.0 for 3d 0h; 2 newer builds exist, the newest v1.2.2 made 3h 0m ago; its gate job failed 1 time since 2026-03-12 12:00:00 UTC."
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := staleText(&store.Marker{}, 0, testNow); got != "it names no build yet." {
		t.Errorf("got %q", got)
	}
}

func TestReadLogTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name      string
		content   string
		max       int64
		whole     bool
		text      string
		first     int // number of the first line shown
		offset    int64
		truncated bool
	}{
		{"whole", "a\nb\nc", 100, true, "a\nb\nc\n", 1, 5, false},
		{"running stops at the last line end", "a\nb\nc", 100, false, "a\nb\n", 1, 4, false},
		{"running without a line end", "abc", 100, false, "", 1, 0, false},
		{"truncated starts at a line, numbered in the whole log", "line1\nline2\nline3\n", 10, true, "line3\n", 3, 18, true},
		{"colours and carriage returns", "\x1b[1;31mred\x1b[0m\r\nplain\n", 100, true, "red\nplain\n", 1, 22, false},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
		writeFile(t, path, tt.content)
		lf, lerr := openDiskLog(path)
		got, err := readLogTail(lf, lerr, tt.max, tt.whole)
		if err != nil {
			t.Fatal(err)
		}
		if got.Text() != tt.text || got.Offset != tt.offset || got.Truncated != tt.truncated || got.Missing {
			t.Errorf("%s: got text %q offset %d truncated %v, want %q %d %v", tt.name, got.Text(), got.Offset, got.Truncated, tt.text, tt.offset, tt.truncated)
		}
		if len(got.Lines) > 0 && got.Lines[0].N != tt.first {
			t.Errorf("%s: first line numbered %d, want %d", tt.name, got.Lines[0].N, tt.first)
		}
	}
	lf, lerr := openDiskLog(filepath.Join(dir, "missing"))
	got, err := readLogTail(lf, lerr, 10, true)
	if err != nil || !got.Missing {
		t.Errorf("missing log: got %+v, %v", got, err)
	}
}

// TestLeadershipShown checks that /readyz and every page's footer say
// which replica answers and which one leads.
func TestLeadershipShown(t *testing.T) {
	t.Parallel()
	leading := Leadership{Replica: "ci-2", Leader: "ci-1", Term: 7}
	e := newEnv(t, func(o *Options) { o.Leadership = func() Leadership { return leading } })
	_, body, _ := e.get(t, nil, "/readyz")
	mustContain(t, "/readyz", body, "ok\n", "replica: ci-2\n", "leader: ci-1\n", "term: 7\n", "leading: false\n")
	_, body, _ = e.get(t, nil, "/runs")
	mustContain(t, "/runs", body, `<span class="replica">replica ci-2, leader ci-1</span>`)
}

func openDiskLog(path string) (logFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return diskLog{f}, nil
}

// TestLogsFromStore checks that a replica that did not run a run shows
// its log from the store: the run's log file is not on this disk, and
// the page, the API and the live log all read the store's copy.
func TestLogsFromStore(t *testing.T) {
	t.Parallel()
	var st *sqlite.Store
	e := newEnv(t, func(o *Options) { st = o.Store.(*sqlite.Store); o.Logs = st })
	id := e.seed.PullFailed
	rn, err := st.GetRun(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	// The file is on another replica's disk.
	if err := os.Remove(rn.Status.LogPath); err != nil {
		t.Fatal(err)
	}
	const text = "from the store\nline two\n"
	if err := st.AppendLog(t.Context(), id, 0, []byte(text)); err != nil {
		t.Fatal(err)
	}
	_, body, _ := e.get(t, nil, fmt.Sprintf("/api/v1/runs/%d/log", id))
	if body != text {
		t.Errorf("API log: got %q, want %q", body, text)
	}
	_, body, _ = e.get(t, nil, fmt.Sprintf("/runs/%d", id))
	mustContain(t, "run page", body, "from the store", "line two")
	_, body, _ = e.get(t, nil, fmt.Sprintf("/api/v1/runs/%d/log/stream", id))
	mustContain(t, "live log", body, "data: from the store\n", "data: line two\n", "event: end")
}

// TestBanner shows the server's warning (the sandbox is unavailable) on
// every page and in /readyz.
func TestBanner(t *testing.T) {
	t.Parallel()
	const warning = "the job sandbox is unavailable (bwrap not found)"
	e := newEnv(t, func(o *Options) { o.Banner = warning })
	for _, path := range []string{"/runs", "/login", "/deliveries", "/markers", fmt.Sprintf("/runs/%d", e.seed.PullFailed), "/runs/999999"} {
		_, body, _ := e.get(t, nil, path)
		mustContain(t, path, body, `id="banner"`, warning)
	}
	status, body, _ := e.get(t, nil, "/readyz")
	if status != 200 || !strings.Contains(body, "warning: "+warning) {
		t.Errorf("/readyz: got %d %q, want 200 with the warning", status, body)
	}
	plain := newEnv(t, nil)
	_, body, _ = plain.get(t, nil, "/runs")
	mustNotContain(t, "/runs without a warning", body, `id="banner"`)
}

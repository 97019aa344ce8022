package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

func TestLoadAdminToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	token, err := LoadAdminToken(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token, "lst_") || len(token) < 20 {
		t.Errorf("token %q", token)
	}
	fi, err := os.Stat(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("token file mode: got %v, want 0600", got)
	}
	if !strings.Contains(logs.String(), token) {
		t.Errorf("the new token is not in the log: %s", logs.String())
	}

	// The second start reads it and says nothing of it.
	logs.Reset()
	again, err := LoadAdminToken(dir, log)
	if err != nil || again != token {
		t.Errorf("second load: got %q, %v; want %q", again, err, token)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the token was logged again: %s", logs.String())
	}

	// A file readable by others is used, with a warning.
	if err := os.Chmod(filepath.Join(dir, AdminTokenFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAdminToken(dir, log); err != nil || !strings.Contains(logs.String(), "chmod 600") {
		t.Errorf("readable file: err %v, log %s", err, logs.String())
	}

	// A token too short to be safe is refused.
	short := t.TempDir()
	writeFile(t, filepath.Join(short, AdminTokenFile), "abc\n")
	if _, err := LoadAdminToken(short, log); err == nil || !strings.Contains(err.Error(), "fewer than 16") {
		t.Errorf("short token: got %v", err)
	}
}

func apiPost(t *testing.T, e *testEnv, path string, header map[string]string) (int, APIRun, string) {
	t.Helper()
	status, body, _ := e.post(t, http.DefaultClient, path, nil, header)
	var out APIRun
	_ = json.Unmarshal([]byte(body), &out)
	return status, out, body
}

func TestAPIActionsNeedTheToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	rerun := fmt.Sprintf("/api/v1/runs/%d/rerun", e.seed.PullFailed)
	bearer := map[string]string{"Authorization": "Bearer " + testToken}

	tests := []struct {
		name   string
		header map[string]string
		status int
		want   string
	}{
		{"no token", nil, 401, "needs the admin token"},
		{"another scheme", map[string]string{"Authorization": "Basic " + testToken}, 401, "needs the admin token"},
		{"wrong token", map[string]string{"Authorization": "Bearer lst_WRONGWRONGWRONGWRONG"}, 403, "not the admin token"},
		{"session cookie only", map[string]string{"Cookie": sessionCookie + "=" + e.srv.auth.session("SESSIONID", testNow.Add(time.Hour))}, 401, "needs the admin token"},
	}
	for _, tt := range tests {
		status, _, body := apiPost(t, e, rerun, tt.header)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("%s: got %d %s, want %d and %q", tt.name, status, body, tt.status, tt.want)
		}
	}
	before, err := e.store.ListRuns(ctx, store.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}

	// With the token: a new run repeating the old one's spec.
	h := map[string]string{"Authorization": "Bearer " + testToken, "Idempotency-Key": "req-1"}
	status, created, body := apiPost(t, e, rerun, h)
	if status != http.StatusCreated {
		t.Fatalf("re-run: got %d %s", status, body)
	}
	if created.ID <= int64(before.Runs[0].ID) || created.Cause != run.CauseRerun || created.Requester != "admin" ||
		created.TriggerKey != run.RerunKey(e.seed.PullFailed, "req-1") || created.Job != "unit" || created.SHA != seedOldHead ||
		created.State != run.Pending || created.Labels[LabelRerunOf] != e.seed.PullFailed.String() {
		t.Errorf("re-run: got %+v", created)
	}
	// The same request again is the same run.
	status, again, _ := apiPost(t, e, rerun, h)
	if status != http.StatusOK || again.ID != created.ID {
		t.Errorf("repeated re-run: got %d run %d, want 200 run %d", status, again.ID, created.ID)
	}
	// Without a request id, every call is a new run.
	_, other, _ := apiPost(t, e, rerun, bearer)
	if other.ID == created.ID || other.ID == 0 {
		t.Errorf("re-run without a request id: got run %d", other.ID)
	}
	if status, _, body := apiPost(t, e, rerun, map[string]string{"Authorization": "Bearer " + testToken, "Idempotency-Key": "bad key!"}); status != 400 {
		t.Errorf("bad request id: got %d %s", status, body)
	}

	// The new run has not finished: it cannot be re-run, but aborted.
	if status, _, body := apiPost(t, e, fmt.Sprintf("/api/v1/runs/%d/rerun", created.ID), bearer); status != http.StatusConflict || !strings.Contains(body, "has not finished") {
		t.Errorf("re-run of a pending run: got %d %s", status, body)
	}
	abort := fmt.Sprintf("/api/v1/runs/%d/abort", created.ID)
	if status, _, _ := apiPost(t, e, abort, nil); status != 401 {
		t.Errorf("abort without a token: got %d, want 401", status)
	}
	status, aborted, body := apiPost(t, e, abort, bearer)
	if status != http.StatusAccepted || aborted.Labels[run.LabelAbort] != "ByUser" {
		t.Errorf("abort: got %d %s", status, body)
	}
	if status, _, _ := apiPost(t, e, abort, bearer); status != http.StatusAccepted {
		t.Errorf("second abort: got %d, want 202", status)
	}
	if status, _, body := apiPost(t, e, fmt.Sprintf("/api/v1/runs/%d/abort", e.seed.PullFailed), bearer); status != http.StatusConflict || !strings.Contains(body, "already finished") {
		t.Errorf("abort of a finished run: got %d %s", status, body)
	}
	if status, _, _ := apiPost(t, e, "/api/v1/runs/999999/abort", bearer); status != 404 {
		t.Errorf("abort of a missing run: got %d, want 404", status)
	}
}

func TestActionsRefusedWithoutAdminToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.AdminToken = "" })
	status, _, body := apiPost(t, e, fmt.Sprintf("/api/v1/runs/%d/rerun", e.seed.PullFailed), map[string]string{"Authorization": "Bearer x"})
	if status != 403 || !strings.Contains(body, "started without an admin token") {
		t.Errorf("got %d %s", status, body)
	}
	c := e.client(t)
	csrf, _ := formTokens(t, e, c, "/login")
	status, body, _ = e.post(t, c, "/login", url.Values{"csrf": {csrf}, "token": {""}}, nil)
	if status != 403 || !strings.Contains(body, "started without an admin token") {
		t.Errorf("sign-in: got %d", status)
	}
}

var (
	csrfField    = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)
)

// formTokens loads a page with c and returns the CSRF token and re-run
// request id of its forms.
func formTokens(t *testing.T, e *testEnv, c *http.Client, path string) (csrf, request string) {
	t.Helper()
	status, body, _ := e.get(t, c, path)
	if status != 200 {
		t.Fatalf("GET %s: %d", path, status)
	}
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("GET %s: no CSRF token in the page", path)
	}
	csrf = m[1]
	if m := requestField.FindStringSubmatch(body); m != nil {
		request = m[1]
	}
	return csrf, request
}

func TestFormActions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.client(t)
	runPath := fmt.Sprintf("/runs/%d", e.seed.PullFailed)
	// A visitor's page has no forms but the sign-in link; the CSRF token
	// comes from the sign-in page.
	csrf, _ := formTokens(t, e, c, "/login")
	request := "visitor-request"
	form := url.Values{"csrf": {csrf}, "request": {request}}

	// Without the CSRF token, or from another site: refused before
	// anything else.
	status, body, _ := e.post(t, c, runPath+"/rerun", url.Values{"request": {request}}, nil)
	if status != 403 || !strings.Contains(body, "not sent from this site") {
		t.Errorf("no CSRF token: got %d", status)
	}
	status, _, _ = e.post(t, c, runPath+"/rerun", form, map[string]string{"Origin": "https://evil.example"})
	if status != 403 {
		t.Errorf("cross-origin post: got %d, want 403", status)
	}
	other := e.client(t) // another browser: its own CSRF cookie
	formTokens(t, e, other, "/login")
	status, _, _ = e.post(t, other, runPath+"/rerun", form, nil)
	if status != 403 {
		t.Errorf("CSRF token of another browser: got %d, want 403", status)
	}

	// Not signed in: refused, with the way to sign in.
	status, body, _ = e.post(t, c, runPath+"/rerun", form, nil)
	if status != http.StatusUnauthorized || !strings.Contains(body, "needs the admin token") || !strings.Contains(body, "/login?next=%2Fruns%2F") {
		t.Errorf("not signed in: got %d\n%s", status, body)
	}

	// Signing in with the wrong token fails; with the right one it sets
	// an HttpOnly, SameSite=Strict cookie and goes back.
	status, body, _ = e.post(t, c, "/login", url.Values{"csrf": {csrf}, "token": {"lst_nope"}, "next": {runPath}}, nil)
	if status != 403 || !strings.Contains(body, "not the admin token") {
		t.Errorf("wrong token: got %d", status)
	}
	status, _, _ = e.post(t, c, "/login", url.Values{"token": {testToken}, "next": {runPath}}, nil)
	if status != 403 {
		t.Errorf("sign-in without CSRF token: got %d, want 403", status)
	}
	status, _, h := e.post(t, c, "/login", url.Values{"csrf": {csrf}, "token": {testToken}, "next": {runPath}}, nil)
	if status != http.StatusSeeOther || h.Get("Location") != runPath {
		t.Fatalf("sign-in: got %d to %q", status, h.Get("Location"))
	}
	cookie := h.Get("Set-Cookie")
	for _, want := range []string{sessionCookie + "=", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}

	// Signed in: the page has the re-run form, and the re-run is
	// created, once per request id.
	csrf, request = formTokens(t, e, c, runPath)
	if request == "" {
		t.Fatal("no request id in the re-run form")
	}
	form = url.Values{"csrf": {csrf}, "request": {request}}
	status, _, h = e.post(t, c, runPath+"/rerun", form, nil)
	if status != http.StatusSeeOther {
		t.Fatalf("re-run: got %d", status)
	}
	newPath := h.Get("Location")
	status, _, h = e.post(t, c, runPath+"/rerun", form, nil)
	if status != http.StatusSeeOther || h.Get("Location") != newPath {
		t.Errorf("double submit: got %d to %s, want the same run %s", status, h.Get("Location"), newPath)
	}
	_, body, _ = e.get(t, c, newPath)
	mustContain(t, "new run page", body, "re-run, asked for by admin", "re-run of <a href=\""+runPath+"\">", `id="abort"`)

	// Abort the new run from its page.
	csrf, _ = formTokens(t, e, c, newPath)
	status, _, h = e.post(t, c, newPath+"/abort", url.Values{"csrf": {csrf}}, nil)
	if status != http.StatusSeeOther || h.Get("Location") != newPath {
		t.Errorf("abort: got %d to %s", status, h.Get("Location"))
	}
	var id int64
	fmt.Sscanf(newPath, "/runs/%d", &id)
	rn, err := e.store.GetRun(ctx, run.ID(id))
	if err != nil {
		t.Fatal(err)
	}
	if reason, msg, ok := rn.AbortRequested(); !ok || reason != "ByUser" || !strings.Contains(msg, "web UI") {
		t.Errorf("abort labels: %v", rn.Labels)
	}
	// Aborting a finished run says why not.
	status, body, _ = e.post(t, c, runPath+"/abort", url.Values{"csrf": {csrf}}, nil)
	if status != http.StatusConflict || !strings.Contains(body, "already finished") {
		t.Errorf("abort of a finished run: got %d", status)
	}

	// Signing out ends the session.
	status, _, _ = e.post(t, c, "/logout", url.Values{"csrf": {csrf}}, nil)
	if status != http.StatusSeeOther {
		t.Errorf("sign out: got %d", status)
	}
	_, body, _ = e.get(t, c, runPath)
	mustNotContain(t, "run page after sign-out", body, `id="rerun"`)
	status, _, _ = e.post(t, c, runPath+"/rerun", url.Values{"csrf": {csrf}, "request": {"after-sign-out"}}, nil)
	if status != http.StatusUnauthorized {
		t.Errorf("re-run after sign-out: got %d, want 401", status)
	}
}

func TestSession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	discard := slog.New(slog.DiscardHandler)
	clk := fakeClockAt(testNow)
	a := newAuth(testToken, clk, nil, discard, nil)
	req := func(v string) *http.Request {
		r, _ := http.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		return r
	}
	for _, id := range []string{"LIVE", "ENDED"} {
		if _, err := a.sessions.ClaimEffect(ctx, sessionEffect(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.sessions.CompleteEffect(ctx, sessionEffect("ENDED")); err != nil {
		t.Fatal(err)
	}
	good := a.session("LIVE", testNow.Add(time.Hour))
	tests := []struct {
		name  string
		value string
		want  bool
	}{
		{"valid", good, true},
		{"expired", a.session("LIVE", testNow.Add(-time.Second)), false},
		{"tampered expiry", strings.Replace(good, fmt.Sprint(testNow.Add(time.Hour).Unix()), fmt.Sprint(testNow.Add(48*time.Hour).Unix()), 1), false},
		{"tampered id", strings.Replace(good, "LIVE", "ENDED", 1), false},
		{"signed out", a.session("ENDED", testNow.Add(time.Hour)), false},
		{"never recorded", a.session("UNKNOWN", testNow.Add(time.Hour)), false},
		{"never recorded, again", a.session("UNKNOWN", testNow.Add(time.Hour)), false},
		{"another token's", newAuth("lst_another-token-entirely", clk, nil, discard, nil).session("LIVE", testNow.Add(time.Hour)), false},
		{"garbage", "x", false},
	}
	for _, tt := range tests {
		if got := a.signedIn(req(tt.value)); got != tt.want {
			t.Errorf("%s: signedIn = %v, want %v", tt.name, got, tt.want)
		}
	}
	if newAuth("", clk, nil, discard, nil).signedIn(req(good)) {
		t.Error("signed in without an admin token")
	}
	// A session expires with time.
	clk.Step(sessionTTL)
	if a.signedIn(req(good)) {
		t.Error("the session outlived its expiry")
	}
}

// TestSignOutRevokes signs in, keeps the session cookie, signs out and
// tries a re-run with the old cookie: refused, logged with the remote
// address and counted, as are a wrong sign-in and a wrong API token.
func TestSignOutRevokes(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.Registerer = reg
		o.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	})
	c := e.client(t)
	runPath := fmt.Sprintf("/runs/%d", e.seed.PullFailed)
	csrf, _ := formTokens(t, e, c, "/login")
	if status, _, _ := e.post(t, c, "/login", url.Values{"csrf": {csrf}, "token": {"lst_wrong-wrong-wrong"}}, nil); status != 403 {
		t.Errorf("wrong sign-in: got %d, want 403", status)
	}
	status, _, h := e.post(t, c, "/login", url.Values{"csrf": {csrf}, "token": {testToken}, "next": {runPath}}, nil)
	if status != http.StatusSeeOther {
		t.Fatalf("sign-in: got %d", status)
	}
	var old string
	for _, ck := range (&http.Response{Header: h}).Cookies() {
		if ck.Name == sessionCookie {
			old = ck.Value
		}
	}
	if old == "" {
		t.Fatal("no session cookie")
	}
	// Signed in, the page shows the buttons.
	_, body, _ := e.get(t, c, runPath)
	mustContain(t, "signed-in run page", body, `id="rerun"`)
	csrf, request := formTokens(t, e, c, runPath)
	if status, _, _ := e.post(t, c, "/logout", url.Values{"csrf": {csrf}}, nil); status != http.StatusSeeOther {
		t.Fatalf("sign out: got %d", status)
	}
	// The old cookie, sent by hand as a thief would, is refused.
	status, body, _ = e.post(t, c, runPath+"/rerun", url.Values{"csrf": {csrf}, "request": {request}},
		map[string]string{"Cookie": sessionCookie + "=" + old + "; " + csrfCookie + "=" + cookieValue(t, c, e, csrfCookie)})
	if status != http.StatusUnauthorized {
		t.Errorf("re-run with the signed-out cookie: got %d, want 401\n%s", status, body)
	}
	status, _, _ = apiPost(t, e, "/api/v1"+runPath+"/rerun", map[string]string{"Authorization": "Bearer lst_wrong-wrong-wrong"})
	if status != http.StatusForbidden {
		t.Errorf("wrong API token: got %d, want 403", status)
	}
	_, metrics, _ := e.get(t, http.DefaultClient, "/metrics")
	for _, want := range []string{
		`lockstep_auth_failures_total{kind="sign_in"} 1`,
		`lockstep_auth_failures_total{kind="api_token"} 1`,
		`lockstep_auth_failures_total{kind="session"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
	for _, want := range []string{"sign-in refused", "wrong bearer token", "the session was signed out", "remote=127.0.0.1:"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("the log shows the admin token:\n%s", logs.String())
	}
}

// TestVisitorsSeeNoButtons: a visitor not signed in sees neither Re-run
// nor Abort, only how to sign in.
func TestVisitorsSeeNoButtons(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, id := range []run.ID{e.seed.PullFailed, e.seed.PullHead, e.seed.Periodic} {
		_, body, _ := e.get(t, http.DefaultClient, fmt.Sprintf("/runs/%d", id))
		if strings.Contains(body, `id="rerun"`) || strings.Contains(body, `id="abort"`) {
			t.Errorf("run %d: a visitor sees an action button", id)
		}
		mustContain(t, "run page", body, "need the <a href=\"/login?next=")
	}
}

// cookieValue returns the value of c's cookie name for e's server.
func cookieValue(t *testing.T, c *http.Client, e *testEnv, name string) string {
	t.Helper()
	u, _ := url.Parse(e.ts.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	t.Fatalf("no cookie %s", name)
	return ""
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestLocalPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/runs/3":              "/runs/3",
		"/runs?state=failure":  "/runs?state=failure",
		"":                     "/",
		"https://evil.example": "/",
		"//evil.example/x":     "/",
		"/\\evil.example":      "/",
		"runs":                 "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func fakeClockAt(t time.Time) *clocktesting.FakeClock { return clocktesting.NewFakeClock(t) }

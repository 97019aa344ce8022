package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

func TestRenderLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"plain text is escaped", `<script>alert("x")</script> & more`, `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more`},
		{"colours become classes", "\x1b[31mred\x1b[0m plain \x1b[1;92mbold green\x1b[m", `<span class="a-f1">red</span> plain <span class="a-f10 a-b">bold green</span>`},
		{"escaped text inside colours", "\x1b[33m<b>\x1b[0m", `<span class="a-f3">&lt;b&gt;</span>`},
		{"256 colours map to the 16", "\x1b[38;5;196mx\x1b[48;5;21my", `<span class="a-f9">x</span><span class="a-f9 a-g12">y</span>`},
		{"true colour maps to the 16", "\x1b[38;2;0;200;0mx", `<span class="a-f10">x</span>`},
		{"other escapes vanish", "\x1b[2K\x1b[1Gdone\x1b]0;title\x07!", `done!`},
		{"a carriage return rewinds the line", "10%\r50%\r100%\r", `100%`},
		{"default colour resets only the colour", "\x1b[1;31ma\x1b[39mb", `<span class="a-f1 a-b">a</span><span class="a-b">b</span>`},
		{"control characters vanish", "a\x00b\x08c\td", "abc\td"},
		{"an unfinished sequence vanishes", "ok\x1b[31", "ok"},
	}
	for _, tt := range tests {
		st := defaultSGR()
		if got := string(renderLine(&st, []byte(tt.in))); got != tt.want {
			t.Errorf("%s: renderLine(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
	// The rendition carries over to the next line, as in a terminal.
	st := defaultSGR()
	renderLine(&st, []byte("\x1b[32mgreen starts"))
	if got := string(renderLine(&st, []byte("still green"))); got != `<span class="a-f2">still green</span>` {
		t.Errorf("second line: %q", got)
	}
}

func FuzzRenderLine(f *testing.F) {
	f.Add([]byte("\x1b[1;31m<b>x</b>\x1b[0m\r&"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st := defaultSGR()
		out := string(renderLine(&st, b))
		// Nothing from the log can open a tag: every < is ours.
		rest := strings.ReplaceAll(strings.ReplaceAll(out, "</span>", ""), `<span class="`, "")
		if strings.Contains(rest, "<") {
			t.Fatalf("renderLine(%q) = %q lets markup through", b, out)
		}
	})
}

func TestErrorAndFailureLookDifferent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, body, _ := e.get(t, nil, "/runs?repo=acme/widgets&pr=42")
	mustContain(t, "runs page", body, `<span class="state state-error">⚠ error</span>`, `<span class="state state-failure">✗ failure</span>`)
	_, body, _ = e.get(t, nil, fmt.Sprintf("/runs/%d", e.seed.PullError))
	mustContain(t, "error run page", body, `<span class="state state-error">⚠ error</span>`, "CloneFailed", `class="tl-error"`,
		`First error, line 2</a>: <code>fatal: unable to access`)
	_, body, _ = e.get(t, nil, "/repos/acme/widgets/pulls/42")
	mustContain(t, "pull page", body, `<span class="state state-error">⚠ error</span>`, `<span class="state state-failure">✗ failure</span>`)
}

func TestStaleBuildShownWhereverTheRunIs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// A nightly run that passed on the stale build the seeded ones
	// tested.
	ctx := context.Background()
	old, err := e.store.GetRun(ctx, e.seed.Periodic)
	if err != nil {
		t.Fatal(err)
	}
	now := testNow
	spec := old.Spec
	spec.TriggerKey = "stale-success"
	rn, err := e.store.CreateRun(ctx, &run.Run{Spec: spec, Status: run.Status{State: run.Success, StartedAt: &now, FinishedAt: &now}})
	if err != nil {
		t.Fatal(err)
	}
	want := `<span class="state state-success state-stale" title="success, but the build it tested was stale: newer builds existed">✓ success, on a stale build</span>`
	for _, path := range []string{"/runs", "/runs?type=periodic", fmt.Sprintf("/runs/%d", rn.ID), "/repos/acme/widgets"} {
		_, body, _ := e.get(t, nil, path)
		mustContain(t, path, body, want)
	}
	_, body, _ := e.get(t, nil, fmt.Sprintf("/runs/%d", rn.ID))
	mustContain(t, "run page", body, `<span class="badge badge-stale">stale build</span>`)
	_, body, _ = e.get(t, nil, "/periodics")
	mustContain(t, "periodics", body, `<span class="badge badge-stale">stale: 12 newer</span>`)
}

func TestRunPageLeadsWithWhy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, body, _ := e.get(t, nil, fmt.Sprintf("/runs/%d", e.seed.PullFailed))
	// State, then the first error and the log, then the timeline, then
	// the folded details with the executor handle and the trigger key.
	order := []string{`id="run-state"`, `id="first-error"`, `id="log"`, `id="timeline-h"`, `<details class="run-details"`, "Trigger key", "Executor handle"}
	last := -1
	for _, s := range order {
		i := strings.Index(body, s)
		if i < 0 {
			t.Fatalf("run page lacks %q", s)
		}
		if i < last {
			t.Errorf("run page shows %q before what should precede it", s)
		}
		last = i
	}
	mustContain(t, "run page", body, `<a href="/repos/acme/widgets/pulls/42">PR #42</a> <span class="pr-title">Fix flaky retry</span>`)
}

func TestReportedAndCauseSayWhatHappened(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	now := testNow
	rn, err := e.store.CreateRun(ctx, &run.Run{
		Spec: run.Spec{Job: "unit", Type: run.Presubmit, Cause: run.CauseEvent, Script: "true", TriggerKey: "offline/1",
			Refs: run.Refs{Repo: seedRepo, Pull: seedPull, HeadSHA: seedHead}},
		Status: run.Status{State: run.Failure, StartedAt: &now, FinishedAt: &now, Reported: map[string]string{ReporterOffline: "failure"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := e.get(t, nil, fmt.Sprintf("/runs/%d", rn.ID))
	mustContain(t, "offline run", body, "not reported: lockstep has no forge credentials, so it only logged the status (failure)")
	mustNotContain(t, "offline run", body, "github: ", "offline: failure")

	page, err := e.store.ListRuns(ctx, store.ListOptions{Job: "hourly-smoke"})
	if err != nil || len(page.Runs) == 0 {
		t.Fatalf("no hourly-smoke run: %v", err)
	}
	_, body, _ = e.get(t, nil, fmt.Sprintf("/runs/%d", page.Runs[0].ID))
	mustContain(t, "interval run", body, "interval schedule")
	mustNotContain(t, "interval run", body, "cron")
}

func TestPullRequestsAndRepositoryPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, tt := range []struct {
		path   string
		status int
		want   []string
		not    []string
	}{
		{"/pulls", 200, []string{"<h1>Pull requests</h1>", `<a href="/repos/acme/widgets/pulls/42">PR #42</a>`, "Fix flaky retry",
			"Fix a typo in the README", `<a href="/repos/acme/widgets">acme/widgets</a>`, `aria-current="page">Pull requests`}, nil},
		{"/pulls?state=closed", 200, []string{"No pull requests closed."}, []string{"Fix flaky retry"}},
		{"/pulls?state=merged", 400, []string{"want open or closed"}, nil},
		{"/repos/acme/widgets", 200, []string{"<h1>acme/widgets</h1>", "Fix flaky retry", "Split the store into packages", "Recent runs",
			`<a href="/runs/`, "run "}, nil},
		{"/repos/acme/gadgets", 200, []string{"No pull requests", "Recent runs", "Older runs"}, nil},
		{"/repos/acme/nothing", 404, []string{"No such repository"}, nil},
	} {
		status, body, _ := e.get(t, nil, tt.path)
		if status != tt.status {
			t.Errorf("GET %s: status %d, want %d", tt.path, status, tt.status)
		}
		mustContain(t, tt.path, body, tt.want...)
		mustNotContain(t, tt.path, body, tt.not...)
	}

	// A run made before its pull request's title was known shows the
	// stored title in the list.
	if _, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{Job: "unit", Type: run.Presubmit, Cause: run.CauseEvent,
		Script: "true", TriggerKey: "untitled/1", Refs: run.Refs{Repo: seedRepo, Pull: 43, HeadSHA: "feedface"}}}); err != nil {
		t.Fatal(err)
	}
	_, body, _ := e.get(t, nil, "/runs?repo=acme/widgets&pr=43")
	mustContain(t, "runs of PR 43", body, `PR #43</a> <span class="pr-title">Fix a typo in the README</span>`)

	// The API lists them, with their titles; runs carry theirs.
	status, body, _ := e.get(t, nil, "/api/v1/pulls?repo=acme/widgets")
	var out struct{ Pulls []APIPull }
	if err := json.Unmarshal([]byte(body), &out); status != 200 || err != nil {
		t.Fatalf("GET /api/v1/pulls: %d %v", status, err)
	}
	titles := map[int]string{}
	for _, p := range out.Pulls {
		titles[p.Number] = p.Title
	}
	if titles[42] != seedTitle || titles[43] != "Fix a typo in the README" || len(out.Pulls) != 3 {
		t.Errorf("API pulls %+v", out.Pulls)
	}
	if status, _, _ := e.get(t, nil, "/api/v1/pulls?state=x"); status != 400 {
		t.Errorf("bad state: %d, want 400", status)
	}
	_, body, _ = e.get(t, nil, fmt.Sprintf("/api/v1/runs/%d", e.seed.PullHead))
	var r APIRun
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.PRTitle != seedTitle {
		t.Errorf("API run: pr_title %q (%v), want %q", r.PRTitle, err, seedTitle)
	}
}

func TestRefusedDeliveriesListed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, body, _ := e.get(t, nil, "/deliveries")
	mustContain(t, "deliveries", body, "Refused at intake", "401 unauthorized", "signature does not match the body",
		"415 unsupported_media", "413 too_large", "1c0ffee0-aaaa-4bbb-8ccc-000000000001", "Accepted", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	if strings.Index(body, "413 too_large") > strings.Index(body, "401 unauthorized") {
		t.Error("refusals are not newest first")
	}
	_, body, _ = e.get(t, nil, "/deliveries?state=refused")
	mustContain(t, "refused only", body, "401 unauthorized", "413 too_large")
	mustNotContain(t, "refused only", body, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	_, body, _ = e.get(t, nil, "/deliveries?state=done")
	mustNotContain(t, "done only", body, "Refused at intake")
}

func TestRunNow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client(t)
	_, body, _ := e.get(t, c, "/periodics")
	mustContain(t, "periodics", body, `action="/periodics/acme/widgets/hourly-smoke/run"`, "Run now needs the")
	csrf, request := formTokens(t, e, c, "/periodics")
	form := url.Values{"csrf": {csrf}, "request": {request}}
	// Not signed in: refused, with the way to sign in.
	status, body, _ := e.post(t, c, "/periodics/acme/widgets/hourly-smoke/run", form, nil)
	if status != http.StatusUnauthorized || !strings.Contains(body, "/login?next=%2Fperiodics") {
		t.Fatalf("not signed in: %d\n%s", status, body)
	}
	if status, _, _ := e.post(t, c, "/login", url.Values{"csrf": {csrf}, "token": {testToken}, "next": {"/periodics"}}, nil); status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", status)
	}
	status, _, h := e.post(t, c, "/periodics/acme/widgets/hourly-smoke/run", form, nil)
	if status != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/runs/") {
		t.Fatalf("run now: %d to %q", status, h.Get("Location"))
	}
	first := h.Get("Location")
	// The same form again (a double submit) is the same run.
	if _, _, h := e.post(t, c, "/periodics/acme/widgets/hourly-smoke/run", form, nil); h.Get("Location") != first {
		t.Errorf("double submit went to %q, want %q", h.Get("Location"), first)
	}
	_, body, _ = e.get(t, c, first)
	mustContain(t, "run-now run", body, "run now, asked for by admin", "hourly-smoke")

	// The API: the admin token, idempotent per Idempotency-Key.
	path := "/api/v1/periodics/acme/widgets/nightly-e2e/run"
	if status, _, _ := e.post(t, c, path, nil, nil); status != http.StatusUnauthorized {
		t.Errorf("API without the token: %d, want 401", status)
	}
	hdr := map[string]string{"Authorization": "Bearer " + testToken, "Idempotency-Key": "nightly-now-1"}
	status, body, _ = e.post(t, c, path, nil, hdr)
	var r APIRun
	if err := json.Unmarshal([]byte(body), &r); status != http.StatusCreated || err != nil {
		t.Fatalf("API run now: %d %s", status, body)
	}
	if r.Cause != run.CauseRunNow || r.Requester != "admin" || r.Build == nil || r.Build.Version != "v1.4.2" || r.Build.Marker != "stable" {
		t.Errorf("API run now: %+v, want a run-now run testing the marker's build", r)
	}
	status, body, _ = e.post(t, c, path, nil, hdr)
	var again APIRun
	if err := json.Unmarshal([]byte(body), &again); status != http.StatusOK || err != nil || again.ID != r.ID {
		t.Errorf("API retry: %d, run %d, want 200 and run %d", status, again.ID, r.ID)
	}
	if status, _, _ := e.post(t, c, "/api/v1/periodics/acme/widgets/nope/run", nil, hdr); status != http.StatusNotFound {
		t.Errorf("unknown periodic: %d, want 404", status)
	}
}

//go:build browser

package web

// The browser tests drive the UI in headless Chromium (Debian's chromium
// package; set LOCKSTEP_CHROMIUM to use another binary). Run them with
//
//	go test -race -tags browser ./internal/web
//
// They save a screenshot of every page they visit in the directory named
// by LOCKSTEP_ARTIFACTS (default: the test's temporary directory).
// TestScreenshots writes the README's screenshots when
// LOCKSTEP_SCREENSHOTS names a directory (relative to the module root):
//
//	LOCKSTEP_SCREENSHOTS=docs/images go test -tags browser -run TestScreenshots ./internal/web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/metrics"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

// chromiumPath finds the browser, failing the test when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LOCKSTEP_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: install it (apt-get install -y chromium) or set LOCKSTEP_CHROMIUM")
	return ""
}

// newBrowser starts a headless Chromium for the test and returns its tab's
// context, which ends with the test or after a minute.
func newBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return bctx
}

// artifactsDir is where screenshots go.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LOCKSTEP_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(testfixtures.ModuleRoot(t), dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// viewportShot saves what the viewport shows: what is above the fold.
func viewportShot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// visit loads path and returns the response status.
func visit(t *testing.T, ctx context.Context, base, path string) int64 {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(base+path))
	if err != nil {
		t.Fatalf("visit %s: %v", path, err)
	}
	return resp.Status
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript predicate in the page for up to 20 seconds.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		body := eval[string](t, ctx, `document.body ? document.body.innerText.slice(0, 2000) : ""`)
		t.Fatalf("waiting for %s: %v\npage: %s", what, err, body)
	}
}

// browserEnv is lockstep's web server over a seeded store, with the real
// runner and the local executor, listening on a free loopback port.
type browserEnv struct {
	*testEnv
	base string
}

func newBrowserEnv(t *testing.T, now time.Time) *browserEnv {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "lockstep.db")
	sd := seed(t, db, filepath.Join(dir, "seed-logs"), now)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	// The live job waits for files the test makes in its /tmp, which a
	// sandboxed job does not share: these tests are of the UI.
	exec := local.New(local.Options{
		WorkDir: filepath.Join(dir, "workspaces"), LogDir: filepath.Join(dir, "logs"), Logger: log,
		Sandbox: local.SandboxOff,
	})
	rnr := runner.New(runner.Options{Store: st, Executor: exec, Logger: log, Config: config.Default})
	mets, err := metrics.New(metrics.Options{Runs: st, Deliveries: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{
		Store: st, Deliveries: st, Pulls: st, Builds: st, Refusals: st, PullList: st, Logger: log,
		Periodics:  seedPeriodics(t, st, time.Now),
		AdminToken: testToken, Metrics: mets.Handler(), Clock: clock.RealClock{},
		LogPoll: 50 * time.Millisecond,
	})
	ts := httptest.NewServer(srv)
	done := make(chan struct{}, 2)
	go func() { _ = rnr.Run(ctx); done <- struct{}{} }()
	go func() { _ = mets.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		srv.CloseStreams()
		ts.Close()
		cancel()
		<-done
		<-done
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := exec.Shutdown(sctx); err != nil {
			t.Errorf("executor shutdown: %v", err)
		}
		st.Close()
	})
	return &browserEnv{testEnv: &testEnv{store: st, srv: srv, ts: ts, seed: sd, dir: dir}, base: ts.URL}
}

// checkA11y checks what a page must have to be usable with a keyboard and
// a screen reader, and at a phone's width.
func checkA11y(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	unlabelled := eval[int](t, ctx, `[...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter(e => !e.labels || e.labels.length === 0).length`)
	if unlabelled != 0 {
		t.Errorf("%s: %d form fields without a label", page, unlabelled)
	}
	if eval[int](t, ctx, `document.querySelectorAll('h1').length`) != 1 {
		t.Errorf("%s: want exactly one h1", page)
	}
	if eval[string](t, ctx, `document.documentElement.lang`) != "en" {
		t.Errorf("%s: the document has no language", page)
	}
}

func TestBrowser(t *testing.T) {
	e := newBrowserEnv(t, time.Now())
	ctx := newBrowser(t, 1280, 900)
	art := artifactsDir(t)
	ctx0 := context.Background()

	t.Run("every page", func(t *testing.T) {
		pages := []struct {
			name, path, h1 string
		}{
			{"runs", "/runs", "Runs"},
			{"run", fmt.Sprintf("/runs/%d", e.seed.Periodic), fmt.Sprintf("Run %d", e.seed.Periodic)},
			{"run-failed", fmt.Sprintf("/runs/%d", e.seed.PullFailed), fmt.Sprintf("Run %d", e.seed.PullFailed)},
			{"run-error", fmt.Sprintf("/runs/%d", e.seed.PullError), fmt.Sprintf("Run %d", e.seed.PullError)},
			{"pull", "/repos/acme/widgets/pulls/42", "PR #42 Fix flaky retry"},
			{"pulls", "/pulls", "Pull requests"},
			{"repo", "/repos/acme/widgets", "acme/widgets"},
			{"periodics", "/periodics", "Periodics"},
			{"markers", "/markers", "Markers"},
			{"deliveries", "/deliveries", "Webhook deliveries"},
			{"deliveries-refused", "/deliveries?state=refused", "Webhook deliveries"},
			{"login", "/login", "Sign in"},
		}
		for _, p := range pages {
			if status := visit(t, ctx, e.base, p.path); status != 200 {
				t.Errorf("%s: status %d", p.path, status)
			}
			if h1 := eval[string](t, ctx, `document.querySelector('h1').textContent`); !strings.HasPrefix(h1, p.h1) {
				t.Errorf("%s: h1 %q, want %q", p.path, h1, p.h1)
			}
			checkA11y(t, ctx, p.path)
			screenshot(t, ctx, filepath.Join(art, p.name+"-desktop.png"))
		}
		// The stale marker cannot be missed: an alert at the top of the
		// page, before any marker.
		visit(t, ctx, e.base, "/markers")
		if got := eval[string](t, ctx, `document.querySelector('main [role=alert]').id`); got != "stale-alert" {
			t.Errorf("first alert on the markers page: %q, want stale-alert", got)
		}
		if bg := eval[string](t, ctx, `getComputedStyle(document.getElementById('stale-alert')).backgroundColor`); bg == "rgba(0, 0, 0, 0)" {
			t.Error("the stale alert has no background")
		}
		// The keyboard reaches the skip link first, and focus is visible.
		if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
			t.Fatal(err)
		}
		if got := eval[string](t, ctx, `document.activeElement.className + ' ' + getComputedStyle(document.activeElement).outlineStyle`); got != "skip solid" {
			t.Errorf("first Tab: focused %q, want the skip link with a solid outline", got)
		}
	})

	t.Run("phone width", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
			t.Fatal(err)
		}
		defer chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900))
		for _, p := range []struct{ name, path string }{
			{"runs", "/runs"}, {"run", fmt.Sprintf("/runs/%d", e.seed.Periodic)}, {"run-failed", fmt.Sprintf("/runs/%d", e.seed.PullFailed)},
			{"markers", "/markers"}, {"deliveries", "/deliveries"}, {"pulls", "/pulls"}, {"repo", "/repos/acme/widgets"},
			{"pull", "/repos/acme/widgets/pulls/42"}, {"periodics", "/periodics"},
		} {
			visit(t, ctx, e.base, p.path)
			// Nothing scrolls sideways: tables become cards.
			if w := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
				t.Errorf("%s is %d px wider than a phone's screen", p.path, w)
			}
			if w := eval[int](t, ctx, `Math.max(0, ...[...document.querySelectorAll('.table-wrap')].map(e => e.scrollWidth - e.clientWidth))`); w > 0 {
				t.Errorf("%s: a table scrolls %d px sideways", p.path, w)
			}
			checkA11y(t, ctx, p.path)
			screenshot(t, ctx, filepath.Join(art, p.name+"-phone.png"))
		}
	})

	t.Run("filter runs", func(t *testing.T) {
		visit(t, ctx, e.base, "/runs")
		resp, err := chromedp.RunResponse(ctx,
			chromedp.SendKeys(chromedp.CSS("#f-repo"), "acme/widgets"),
			chromedp.SetValue(chromedp.CSS("#f-state"), "failure,error"),
			chromedp.Click(chromedp.CSS("form.filters button[type=submit]")),
		)
		if err != nil || resp.Status != 200 {
			t.Fatalf("filter: %v %v", resp, err)
		}
		loc := eval[string](t, ctx, `location.search`)
		if !strings.Contains(loc, "repo=acme%2Fwidgets") || !strings.Contains(loc, "state=failure%2Cerror") {
			t.Errorf("filtered URL %q", loc)
		}
		rows := eval[[]string](t, ctx, `[...document.querySelectorAll('table.runs tbody tr')].map(r => r.cells[3].textContent + ' ' + r.cells[1].textContent)`)
		if len(rows) == 0 {
			t.Fatal("no runs listed")
		}
		for _, r := range rows {
			if !strings.HasPrefix(r, "acme/widgets ") || !(strings.Contains(r, "failure") || strings.Contains(r, "error")) {
				t.Errorf("row %q does not match the filter", r)
			}
		}
		if v := eval[string](t, ctx, `document.getElementById('f-repo').value`); v != "acme/widgets" {
			t.Errorf("the filter form forgot the repository: %q", v)
		}
		screenshot(t, ctx, filepath.Join(art, "runs-filtered.png"))
	})

	// A job that writes a line, waits for the test, writes another, and
	// waits again before it ends.
	steps := filepath.Join(e.dir, "steps")
	if err := os.MkdirAll(steps, 0o755); err != nil {
		t.Fatal(err)
	}
	live, err := e.store.CreateRun(ctx0, &run.Run{Spec: run.Spec{
		Job: "e2e", Type: run.Presubmit, Cause: run.CauseCommand, Requester: "octocat",
		Refs: run.Refs{Repo: seedRepo, Pull: seedPull, HeadSHA: seedHead, BaseRef: "main"},
		Env:  map[string]string{"STEPS": steps},
		Script: `echo "e2e: first line"
while [ ! -e "$STEPS/one" ]; do sleep 0.02; done
echo "e2e: second line"
while [ ! -e "$STEPS/two" ]; do sleep 0.02; done
echo "e2e: all scenarios passed"`,
		Timeout:    time.Minute,
		TriggerKey: run.RequestKey(seedRepo, seedPull, seedHead, "e2e", "browser"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	livePath := fmt.Sprintf("/runs/%d", live.ID)

	t.Run("live log", func(t *testing.T) {
		visit(t, ctx, e.base, livePath)
		waitJS(t, ctx, "the first line", `document.getElementById('log').textContent.includes('e2e: first line')`)
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.lockstepSamePage = true`)); err != nil {
			t.Fatal(err)
		}
		touch(t, filepath.Join(steps, "one"))
		waitJS(t, ctx, "the second line, live", `document.getElementById('log').textContent.includes('e2e: second line')`)
		// Live lines are numbered and linkable like the others.
		// The first line follows lockstep's own ("the sandbox is off").
		first := eval[int](t, ctx, `[...document.querySelectorAll('#log .ln')].findIndex(l => l.textContent.includes('e2e: first line')) + 1`)
		want := fmt.Sprintf("e2e: second line #L%d", first+1)
		if got := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('#L%[1]d .lt').textContent + ' ' + document.querySelector('#L%[1]d .lnum').getAttribute('href')`, first+1)); got != want {
			t.Errorf("second live line: %q, want %q", got, want)
		}
		if !eval[bool](t, ctx, `window.lockstepSamePage === true`) {
			t.Error("the page reloaded: the line did not arrive live")
		}
		screenshot(t, ctx, filepath.Join(art, "run-live.png"))
		touch(t, filepath.Join(steps, "two"))
		waitJS(t, ctx, "the end of the run", `document.getElementById('log-live').textContent.includes('ended: success')`)
		if got := eval[string](t, ctx, `document.querySelector('#run-state .state').textContent`); got != "✓ success" {
			t.Errorf("state badge after the end: %q", got)
		}
		if n := strings.Count(eval[string](t, ctx, `document.getElementById('log').textContent`), "e2e: first line"); n != 1 {
			t.Errorf("the first line appears %d times", n)
		}
		if !eval[bool](t, ctx, `window.lockstepSamePage === true`) {
			t.Error("the page reloaded")
		}
	})

	t.Run("re-run", func(t *testing.T) {
		// Without the admin token: no buttons, only the way to sign in.
		visit(t, ctx, e.base, livePath)
		if eval[bool](t, ctx, `document.getElementById('rerun') !== null || document.getElementById('abort') !== null`) {
			t.Error("a visitor sees Re-run or Abort")
		}
		screenshot(t, ctx, filepath.Join(art, "run-visitor.png"))

		// Sign in with the token: back on the run, the re-run works.
		if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(".actions .hint a"))); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.RunResponse(ctx,
			chromedp.SendKeys(chromedp.CSS("#token"), testToken),
			chromedp.Submit(chromedp.CSS("#token")),
		); err != nil {
			t.Fatal(err)
		}
		if loc := eval[string](t, ctx, `location.pathname`); loc != livePath {
			t.Fatalf("after signing in: at %s, want %s", loc, livePath)
		}
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#rerun")))
		if err != nil || resp.Status != 200 {
			t.Fatalf("re-run: %v %v", resp, err)
		}
		newPath := eval[string](t, ctx, `location.pathname`)
		if newPath == livePath || !strings.HasPrefix(newPath, "/runs/") {
			t.Fatalf("after the re-run: at %s", newPath)
		}
		if txt := eval[string](t, ctx, `document.querySelector('main').innerText`); !strings.Contains(txt, "re-run of run "+live.ID.String()) || !strings.Contains(txt, "asked for by admin") {
			t.Errorf("the new run page does not say what it is:\n%s", txt)
		}
		// The new run runs (the steps exist, so its script ends at once)
		// and appears at the top of the runs page.
		waitJS(t, ctx, "the re-run's end", `document.getElementById('log-live') === null || document.getElementById('log-live').textContent.includes('ended')`)
		visit(t, ctx, e.base, "/runs")
		first := eval[string](t, ctx, `document.querySelector('table.runs tbody tr td a').getAttribute('href')`)
		if first != newPath {
			t.Errorf("first run listed: %s, want the re-run %s", first, newPath)
		}
		screenshot(t, ctx, filepath.Join(art, "runs-after-rerun.png"))
	})
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScreenshots writes the README's screenshots (the run page of a
// failed run at desktop and phone width, the markers page, the deliveries
// page) to LOCKSTEP_SCREENSHOTS, or to the artifacts directory.
func TestScreenshots(t *testing.T) {
	e := newBrowserEnv(t, time.Now())
	ctx := newBrowser(t, 1280, 900)
	dir := os.Getenv("LOCKSTEP_SCREENSHOTS")
	if dir == "" {
		dir = artifactsDir(t)
	} else if !filepath.IsAbs(dir) {
		dir = filepath.Join(testfixtures.ModuleRoot(t), dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shots := []struct {
		name, path string
		phone      bool
	}{
		{"run-page.png", fmt.Sprintf("/runs/%d", e.seed.PullFailed), false},
		{"run-page-phone.png", fmt.Sprintf("/runs/%d", e.seed.PullFailed), true},
		{"markers-page.png", "/markers", false},
		{"deliveries-page.png", "/deliveries", false},
	}
	for _, s := range shots {
		w, h := int64(1280), int64(900)
		var opts []chromedp.EmulateViewportOption
		if s.phone {
			w, h = 390, 844
			opts = append(opts, chromedp.EmulateMobile)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h, opts...)); err != nil {
			t.Fatal(err)
		}
		if status := visit(t, ctx, e.base, s.path); status != 200 {
			t.Fatalf("%s: status %d", s.path, status)
		}
		// What a person sees first: the viewport.
		viewportShot(t, ctx, filepath.Join(dir, s.name))
		fi, err := os.Stat(filepath.Join(dir, s.name))
		if err != nil || fi.Size() < 10_000 {
			t.Errorf("%s: %v, %d bytes", s.name, err, fi.Size())
		}
	}
}

func storeListNewest() store.ListOptions { return store.ListOptions{Limit: 1} }

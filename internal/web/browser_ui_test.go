//go:build browser

package web

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// TestBrowserWhyIsItRed checks, in a browser, that the UI answers "why is
// it red?" at a glance: states told apart, stale builds called so, the
// run page leading with the reason and the log, coloured and numbered
// log lines, refused deliveries, pull requests, run now, and the phone
// layout.
func TestBrowserWhyIsItRed(t *testing.T) {
	e := newBrowserEnv(t, time.Now())
	ctx := newBrowser(t, 1280, 900)
	art := artifactsDir(t)
	ctx0 := context.Background()

	// A nightly run that passed on the stale build.
	old, err := e.store.GetRun(ctx0, e.seed.Periodic)
	if err != nil {
		t.Fatal(err)
	}
	spec := old.Spec
	spec.TriggerKey = "browser/stale-success"
	now := time.Now()
	staleOK, err := e.store.CreateRun(ctx0, &run.Run{Spec: spec, Status: run.Status{State: run.Success, StartedAt: &now, FinishedAt: &now}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("error and failure differ", func(t *testing.T) {
		visit(t, ctx, e.base, "/repos/acme/widgets/pulls/42")
		look := func(sel string) string {
			return eval[string](t, ctx, fmt.Sprintf(`(e => e ? getComputedStyle(e).backgroundColor + ' ' + getComputedStyle(e).color + ' ' + e.textContent : 'none')(document.querySelector(%q))`, sel))
		}
		errLook, failLook := look(".state-error"), look(".state-failure")
		if errLook == "none" || failLook == "none" {
			t.Fatalf("the pull page shows no error (%s) or no failure (%s)", errLook, failLook)
		}
		errColours, _, _ := strings.Cut(errLook, " ⚠")
		failColours, _, _ := strings.Cut(failLook, " ✗")
		if errColours == failColours || !strings.HasSuffix(errLook, "⚠ error") || !strings.HasSuffix(failLook, "✗ failure") {
			t.Errorf("error looks like %q, failure like %q: want different colours and icons", errLook, failLook)
		}
		screenshot(t, ctx, filepath.Join(art, "error-vs-failure-desktop.png"))
	})

	t.Run("stale builds one colour everywhere", func(t *testing.T) {
		colours := map[string]string{}
		for _, c := range []struct{ path, sel string }{
			{"/runs?type=periodic", ".state-stale"},
			{fmt.Sprintf("/runs/%d", staleOK.ID), ".state-stale"},
			{fmt.Sprintf("/runs/%d", staleOK.ID), ".badge-stale"},
			{"/periodics", ".badge-stale"},
			{"/markers", ".badge-stale-big"},
			{"/markers", "#stale-alert"},
		} {
			visit(t, ctx, e.base, c.path)
			bg := eval[string](t, ctx, fmt.Sprintf(`(e => e ? getComputedStyle(e).backgroundColor : 'none')(document.querySelector(%q))`, c.sel))
			colours[c.path+" "+c.sel] = bg
		}
		var first string
		for where, bg := range colours {
			if bg == "none" || bg == "rgba(0, 0, 0, 0)" {
				t.Errorf("%s: no stale colour (%s)", where, bg)
			}
			if first == "" {
				first = bg
			}
			if bg != first {
				t.Errorf("stale colours differ: %v", colours)
				break
			}
		}
		visit(t, ctx, e.base, "/runs?type=periodic")
		if txt := eval[string](t, ctx, `document.querySelector('table.runs').innerText`); !strings.Contains(txt, "success, on a stale build") {
			t.Errorf("the runs list does not say the success was on a stale build:\n%s", txt)
		}
		visit(t, ctx, e.base, fmt.Sprintf("/runs/%d", staleOK.ID))
		if txt := eval[string](t, ctx, `document.getElementById('run-state').innerText`); !strings.Contains(txt, "success, on a stale build") {
			t.Errorf("the run page's state: %q", txt)
		}
		screenshot(t, ctx, filepath.Join(art, "stale-success-desktop.png"))
	})

	t.Run("run page leads with why", func(t *testing.T) {
		visit(t, ctx, e.base, fmt.Sprintf("/runs/%d", e.seed.PullFailed))
		viewportShot(t, ctx, filepath.Join(art, "run-failed-fold-desktop.png"))
		fold := eval[int](t, ctx, `window.innerHeight`)
		for _, sel := range []string{"#run-state", "#first-error", "#log .ln:last-child"} {
			r := eval[[]float64](t, ctx, fmt.Sprintf(`(r => [r.top, r.bottom])(document.querySelector(%q).getBoundingClientRect())`, sel))
			if r[0] < 0 || r[1] > float64(fold) {
				t.Errorf("%s is at %v, not within the first %d px", sel, r, fold)
			}
		}
		// The log's end is in view inside its box.
		if d := eval[int](t, ctx, `(p => p.scrollHeight - p.scrollTop - p.clientHeight)(document.getElementById('log'))`); d > 2 {
			t.Errorf("the log is not scrolled to its end: %d px below", d)
		}
		// The details are folded: no executor handle or trigger key in view.
		if eval[bool](t, ctx, `document.getElementById('details').open`) {
			t.Error("the details are unfolded")
		}
		if txt := eval[string](t, ctx, `document.querySelector('main').innerText`); strings.Contains(txt, "pgid:") || strings.Contains(txt, "/auto") {
			t.Error("the executor handle or the trigger key shows without unfolding the details")
		}
		// Colours: the failing test line is red and bold.
		look := eval[string](t, ctx, `(e => getComputedStyle(e).color + ' ' + getComputedStyle(e).fontWeight)(document.querySelector('#L8 .a-f1'))`)
		if look != "rgb(255, 123, 114) 700" {
			t.Errorf("the failing test's line is drawn %q, want red and bold", look)
		}
	})

	t.Run("a linked log line", func(t *testing.T) {
		visit(t, ctx, e.base, "/runs") // so that the next visit loads the page, not only its fragment
		visit(t, ctx, e.base, fmt.Sprintf("/runs/%d#L5", e.seed.PullFailed))
		r := eval[[]float64](t, ctx, `(r => [r.top, r.bottom])(document.getElementById('L5').getBoundingClientRect())`)
		box := eval[[]float64](t, ctx, `(r => [r.top, r.bottom])(document.getElementById('log').getBoundingClientRect())`)
		if r[0] < box[0] || r[1] > box[1] {
			t.Errorf("line 5 at %v is outside the log's box %v", r, box)
		}
		if bg := eval[string](t, ctx, `getComputedStyle(document.getElementById('L5')).backgroundColor`); bg == "rgba(0, 0, 0, 0)" {
			t.Error("the linked line is not highlighted")
		}
		// Clicking a line number links it.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#L3 .lnum`))); err != nil {
			t.Fatal(err)
		}
		if h := eval[string](t, ctx, `location.hash`); h != "#L3" {
			t.Errorf("after clicking line 3's number the URL ends %q", h)
		}
		viewportShot(t, ctx, filepath.Join(art, "run-linked-line-desktop.png"))
	})

	t.Run("refused deliveries", func(t *testing.T) {
		visit(t, ctx, e.base, "/deliveries")
		txt := eval[string](t, ctx, `document.querySelector('main').innerText`)
		for _, want := range []string{"Refused at intake", "401 unauthorized", "signature does not match the body", "413 too_large", "415 unsupported_media"} {
			if !strings.Contains(txt, want) {
				t.Errorf("the deliveries page lacks %q", want)
			}
		}
		screenshot(t, ctx, filepath.Join(art, "deliveries-refused-desktop.png"))
	})

	t.Run("phone", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
			t.Fatal(err)
		}
		defer chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900))
		// The filter form is folded: a line, not 40% of the screen.
		visit(t, ctx, e.base, "/runs")
		h := eval[float64](t, ctx, `document.getElementById('filters').getBoundingClientRect().height`)
		if h > 844*0.1 {
			t.Errorf("the folded filter form is %.0f px high", h)
		}
		if eval[bool](t, ctx, `document.getElementById('filters').open`) {
			t.Error("the filter form is open on a phone")
		}
		// Every run is a card showing its state without scrolling
		// sideways.
		if w := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
			t.Errorf("the runs page is %d px too wide", w)
		}
		viewportShot(t, ctx, filepath.Join(art, "runs-fold-phone.png"))
		// Unfolded, it works.
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#filters summary`))); err != nil {
			t.Fatal(err)
		}
		if !eval[bool](t, ctx, `document.getElementById('f-repo').getBoundingClientRect().height > 0`) {
			t.Error("the unfolded filter form shows no fields")
		}

		// The deliveries page: a delivery id never makes a tall cell
		// that pushes the outcome off the screen.
		visit(t, ctx, e.base, "/deliveries")
		rows := eval[[][]float64](t, ctx, `[...document.querySelectorAll('table.deliveries tbody tr')].map(r => [r.querySelector('td[data-label=Delivery]').getBoundingClientRect().height, r.querySelector('td.outcome').getBoundingClientRect().top - r.getBoundingClientRect().top])`)
		if len(rows) == 0 {
			t.Fatal("no deliveries listed")
		}
		for i, r := range rows {
			if r[0] > 60 || r[1] > 200 {
				t.Errorf("delivery row %d: id cell %.0f px high, outcome %.0f px below the row's top", i, r[0], r[1])
			}
		}
		viewportShot(t, ctx, filepath.Join(art, "deliveries-fold-phone.png"))

		visit(t, ctx, e.base, fmt.Sprintf("/runs/%d", e.seed.PullFailed))
		fold := eval[int](t, ctx, `window.innerHeight`)
		r := eval[[]float64](t, ctx, `(r => [r.top, r.bottom])(document.getElementById('first-error').getBoundingClientRect())`)
		if r[1] > float64(fold) {
			t.Errorf("on a phone the first error is at %v, below the fold %d", r, fold)
		}
		viewportShot(t, ctx, filepath.Join(art, "run-failed-fold-phone.png"))
	})

	t.Run("run now", func(t *testing.T) {
		visit(t, ctx, e.base, "/login?next=/periodics")
		if _, err := chromedp.RunResponse(ctx,
			chromedp.SendKeys(chromedp.CSS("#token"), testToken),
			chromedp.Submit(chromedp.CSS("#token")),
		); err != nil {
			t.Fatal(err)
		}
		if loc := eval[string](t, ctx, `location.pathname`); loc != "/periodics" {
			t.Fatalf("after signing in: at %s", loc)
		}
		screenshot(t, ctx, filepath.Join(art, "periodics-admin-desktop.png"))
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`form[action="/periodics/acme/widgets/hourly-smoke/run"] button`)))
		if err != nil || resp.Status != 200 {
			t.Fatalf("run now: %v %v", resp, err)
		}
		if loc := eval[string](t, ctx, `location.pathname`); !strings.HasPrefix(loc, "/runs/") {
			t.Fatalf("after run now: at %s", loc)
		}
		if txt := eval[string](t, ctx, `document.querySelector('.run-facts').innerText`); !strings.Contains(txt, "run now, asked for by admin") {
			t.Errorf("the new run says %q", txt)
		}
		screenshot(t, ctx, filepath.Join(art, "run-now-desktop.png"))
	})
}

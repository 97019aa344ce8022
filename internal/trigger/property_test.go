package trigger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// TestPropertyNoRunBeforeTrustedAuthorization plays random sequences of
// events and comments by trusted and untrusted users on an untrusted
// author's pull request, and checks after every step that no run exists
// before a trusted user authorized one (COMMANDS.md rules 2, 5, 6):
// /ok-to-test, /test or /retest from a trusted user, or the ok-to-test
// label. The author's own /ok-to-test, one in the body, in a quote or a
// code block, lgtm, needs-ok-to-test and untrusted /test grant nothing.
func TestPropertyNoRunBeforeTrustedAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	untrustedComments := []string{"/ok-to-test", "/test all", "/test unit", "/retest", "/lgtm", "please /ok-to-test"}
	harmlessTrusted := []string{
		"/lgtm", "> /ok-to-test", "```\n/ok-to-test\n```", "~~~\n/test all\n~~~", "looks good to me",
		"I think this is /ok-to-test", "/approve", "/hold",
	}
	authorizing := []string{"/ok-to-test", "/test unit", "/retest", "/test all", "/lgtm\n/ok-to-test"}
	for seed := uint64(0); seed < 60; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		n := 100 + int(seed)
		head := 0
		sha := func() string { return fmt.Sprintf("s%d-%d", n, head) }
		pr := e.pull(n, outsider, sha())
		pr.Body = strPtr("/ok-to-test\n/test all")
		e.handle(prEvent("opened", pr, outsider))
		authorized := false
		for step := 0; step < 25 && !authorized; step++ {
			e.clock.Step(time.Second)
			var what string
			switch rng.IntN(9) {
			case 0:
				head++
				e.gh.SetHead(repo, n, sha())
				e.gh.UpdatePull(repo, n, func(p *githubtestPull) { p.UpdatedAt = e.clock.Now() })
				what = "synchronize"
				e.handle(prEvent("synchronize", e.prPayload(n), outsider))
			case 1:
				what = "labeled lgtm"
				e.handle(labelEvent(e.prPayload(n), "lgtm", trusted))
			case 2:
				what = "labeled needs-ok-to-test"
				e.handle(labelEvent(e.prPayload(n), "needs-ok-to-test", botLogin))
			case 3, 4:
				body := untrustedComments[rng.IntN(len(untrustedComments))]
				who := outsider
				if rng.IntN(2) == 0 {
					who = "eve"
				}
				what = fmt.Sprintf("%s comments %q", who, body)
				e.handle(e.comment(n, who, body))
			case 5, 6:
				body := harmlessTrusted[rng.IntN(len(harmlessTrusted))]
				what = fmt.Sprintf("trusted comments %q", body)
				e.handle(e.comment(n, trusted, body))
			case 7:
				what = "reopened/ready_for_review/edited"
				for _, a := range []string{"reopened", "ready_for_review", "edited"} {
					e.handle(prEvent(a, e.prPayload(n), outsider))
				}
			case 8:
				if rng.IntN(4) == 0 {
					body := authorizing[rng.IntN(len(authorizing))]
					what = fmt.Sprintf("trusted authorizes with %q", body)
					authorized = true
					e.handle(e.comment(n, trusted, body))
				}
			}
			count := countRuns(t, e, n)
			if !authorized && count > 0 {
				t.Fatalf("seed %d step %d (%s): %d runs exist on an untrusted pull request nobody trusted authorized", seed, step, what, count)
			}
			if authorized && count == 0 {
				t.Fatalf("seed %d step %d (%s): a trusted authorization created no run", seed, step, what)
			}
		}
	}
}

func countRuns(t *testing.T, e *env, n int) int {
	t.Helper()
	page, err := e.store.ListRuns(context.Background(), store.ListOptions{Repo: repo, Pull: n, Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Runs)
}

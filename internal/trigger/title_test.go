package trigger_test

import (
	"context"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// A pull request's title, from the webhook payload, is kept with its
// state and on the runs it starts, for the UI and the API.
func TestPullTitleRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pr := e.pull(7, trusted, "h7")
	pr.Title = strPtr("Retry flaky uploads")
	e.handle(prEvent("opened", pr, trusted))
	ctx := context.Background()
	p, err := e.store.GetPullState(ctx, repo, 7)
	if err != nil {
		t.Fatal(err)
	}
	if p.Title != "Retry flaky uploads" {
		t.Errorf("stored title %q, want %q", p.Title, "Retry flaky uploads")
	}
	page, err := e.store.ListRuns(ctx, store.ListOptions{Repo: repo, Pull: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Runs) == 0 {
		t.Fatal("no runs started")
	}
	for _, r := range page.Runs {
		if r.Spec.Refs.Title != "Retry flaky uploads" {
			t.Errorf("run %d: title %q, want the pull request's", r.ID, r.Spec.Refs.Title)
		}
	}
}

package trigger_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/forge/offline"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/trigger"
)

// TestOfflineCommands: without forge credentials, the pull requests
// lockstep knows are those webhooks told it about, and commands on them
// work, after a restart too. A command on a pull request no webhook
// named fails for good, saying what to do.
func TestOfflineCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg, err := config.Parse(strings.NewReader(`
repos:
  acme/widget:
    clone_url: /nowhere
    presubmits:
      - name: unit
        always_run: true
        run: "true"
      - name: lint
        run: "true"
trust:
  users: [alice]
`), "offline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "lockstep.db")
	newTrigger := func(st *sqlite.Store) *trigger.Trigger {
		return trigger.New(trigger.Options{
			Store: st, Forge: &offline.Forge{Logger: quiet, Pulls: st}, Logger: quiet,
			Config: func() *config.Config { return cfg },
		})
	}
	e := &env{t: t}
	st := openStore(t, dbPath)
	trig := newTrigger(st)

	_, err = trig.Handle(ctx, "d-unknown", e.comment(2, "alice", "/test lint"))
	if err == nil || !errors.Is(err, forge.ErrNotFound) || !controller.IsTerminal(err) || !strings.Contains(err.Error(), "send one first") {
		t.Fatalf("/test on a pull request never seen: err = %v, want a terminal not-found saying to send its pull_request webhook first", err)
	}

	head := strings.Repeat("a", 40)
	pr := &github.PullRequest{
		Number: github.Ptr(2), State: github.Ptr("open"),
		User:      &github.User{Login: github.Ptr("alice")},
		Head:      &github.PullRequestBranch{SHA: github.Ptr(head), Ref: github.Ptr("fix")},
		Base:      &github.PullRequestBranch{SHA: github.Ptr(strings.Repeat("b", 40)), Ref: github.Ptr("main")},
		UpdatedAt: &github.Timestamp{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
	}
	out, err := trig.Handle(ctx, "d-opened", prEvent("opened", pr, "alice"))
	if err != nil || len(out.Runs) != 1 {
		t.Fatalf("opened: outcome %+v, err %v; want the unit run", out, err)
	}
	out, err = trig.Handle(ctx, "d-test", e.comment(2, "alice", "/test lint"))
	if err != nil || len(out.Runs) != 1 {
		t.Fatalf("/test lint: outcome %+v, err %v; want one run", out, err)
	}
	got, err := st.GetRun(ctx, out.Runs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Job != "lint" || got.Spec.Refs.HeadSHA != head || got.Spec.Refs.HeadRef != "fix" || got.Spec.Cause != run.CauseCommand {
		t.Errorf("run %+v, want lint on %s, caused by the command", got.Spec, head)
	}

	// A restart: a new store handle and a new trigger know the pull
	// request from what was stored.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dbPath)
	trig = newTrigger(st)
	out, err = trig.Handle(ctx, "d-retest", e.comment(2, "alice", "/test unit\n/test lint"))
	if err != nil || len(out.Runs) != 2 {
		t.Fatalf("/test after a restart: outcome %+v, err %v; want two runs", out, err)
	}
	var jobs []string
	for _, id := range out.Runs {
		r, err := st.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, r.Spec.Job+"@"+r.Spec.Refs.HeadSHA)
	}
	slices.Sort(jobs)
	if want := []string{"lint@" + head, "unit@" + head}; !slices.Equal(jobs, want) {
		t.Errorf("runs after the restart %v, want %v", jobs, want)
	}
}

package trigger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-github/v89/github"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/config"
	ghforge "github.com/lockstep-ci/lockstep/internal/forge/github"
	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/transport"
	"github.com/lockstep-ci/lockstep/internal/trigger"
)

const (
	repo       = "acme/widget"
	trusted    = "alice"   // a member of acme
	outsider   = "mallory" // trusted by nobody
	collab     = "carol"   // a collaborator of acme/widget
	botLogin   = "lockstep-bot"
	testConfig = `
repos:
  acme/widget:
    clone_url: /nowhere
    presubmits:
      - name: unit
        always_run: true
        run: "true"
        secrets: [DEPLOY_KEY]
      - name: lint
        always_run: true
        run: "true"
      - name: docs
        run_if_changed: '^docs/'
        run: "true"
      - name: e2e
        run: "true"
      - name: bench
        optional: true
        run: "true"
    postsubmits:
      - name: publish
        branches: [main]
        run: "true"
        secrets: [DEPLOY_KEY]
local:
  secrets_dir: /etc/lockstep/secrets
trust:
  cache_ttl: 10m
github:
  bot_login: lockstep-bot
`
)

// env is a trigger over a real SQLite store and the GitHub double, with
// the real forge client and transport chain in between.
type env struct {
	t     testing.TB
	gh    *githubtest.Server
	store store.Store
	cfg   *config.Config
	clock *clocktesting.FakeClock
	trig  *trigger.Trigger
	seq   atomic.Int64
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, openStore(t, filepath.Join(t.TempDir(), "lockstep.db")))
}

// newEnvWith is newEnv with the configuration text cfgText.
func newEnvWith(t testing.TB, cfgText string) *env {
	t.Helper()
	return newEnvOnWith(t, openStore(t, filepath.Join(t.TempDir(), "lockstep.db")), cfgText)
}

// newEnvOn returns an env over st.
func newEnvOn(t testing.TB, st store.Store) *env {
	t.Helper()
	return newEnvOnWith(t, st, testConfig)
}

// newEnvOnWith returns an env over st with the configuration text cfgText.
func newEnvOnWith(t testing.TB, st store.Store, cfgText string) *env {
	t.Helper()
	cfg, err := config.Parse(stringsReader(cfgText), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gh := githubtest.NewServer(t)
	gh.AddMember("acme", trusted)
	gh.AddCollaborator(repo, collab)
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	e := &env{t: t, gh: gh, store: st, cfg: cfg, clock: clk}
	e.trig = e.newTrigger()
	return e
}

func openStore(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (e *env) forge() *ghforge.Client {
	e.t.Helper()
	c, err := ghforge.New(ghforge.Options{
		Endpoint: e.gh.URL(),
		HTTPClient: &http.Client{Transport: transport.New(transport.Options{
			Endpoint: e.gh.URL(), Tokens: transport.StaticToken("test-token"),
		})},
		BotLogin: botLogin,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) newTrigger() *trigger.Trigger {
	return trigger.New(trigger.Options{
		Store: e.store, Forge: e.forge(), Clock: e.clock, Logger: quiet,
		Config: func() *config.Config { return e.cfg },
	})
}

// pull adds pull request n by author at head to the double and returns
// its webhook form.
func (e *env) pull(n int, author, head string) *github.PullRequest {
	e.gh.AddPull(repo, githubtest.Pull{
		Number: n, Author: author, HeadSHA: head, HeadRef: "feature", BaseRef: "main", BaseSHA: "base0",
		UpdatedAt: e.clock.Now(),
	})
	return e.prPayload(n)
}

// prPayload is pull request n as the double shows it now, in a payload.
func (e *env) prPayload(n int) *github.PullRequest {
	p, ok := e.gh.Pull(repo, n)
	if !ok {
		e.t.Fatalf("no pull %d", n)
	}
	var labels []*github.Label
	for _, l := range p.Labels {
		labels = append(labels, &github.Label{Name: github.Ptr(l)})
	}
	return &github.PullRequest{
		Number: github.Ptr(n), State: github.Ptr("open"), Draft: github.Ptr(p.Draft),
		User:      &github.User{Login: github.Ptr(p.Author)},
		Head:      &github.PullRequestBranch{SHA: github.Ptr(p.HeadSHA), Ref: github.Ptr(p.HeadRef)},
		Base:      &github.PullRequestBranch{SHA: github.Ptr(p.BaseSHA), Ref: github.Ptr("main")},
		Labels:    labels,
		UpdatedAt: &github.Timestamp{Time: p.UpdatedAt},
	}
}

func ghRepo() *github.Repository {
	return &github.Repository{FullName: github.Ptr(repo), Name: github.Ptr("widget"), Owner: &github.User{Login: github.Ptr("acme")}}
}

func prEvent(action string, pr *github.PullRequest, sender string) *github.PullRequestEvent {
	return &github.PullRequestEvent{Action: github.Ptr(action), Number: pr.Number, PullRequest: pr, Repo: ghRepo(), Sender: &github.User{Login: github.Ptr(sender)}}
}

func labelEvent(pr *github.PullRequest, label, sender string) *github.PullRequestEvent {
	ev := prEvent("labeled", pr, sender)
	ev.Label = &github.Label{Name: github.Ptr(label)}
	return ev
}

// comment returns a new comment event by author on pull request n.
func (e *env) comment(n int, author, body string) *github.IssueCommentEvent {
	id := e.seq.Add(1) + 1000
	return &github.IssueCommentEvent{
		Action: github.Ptr("created"),
		Issue: &github.Issue{
			Number: github.Ptr(n), State: github.Ptr("open"),
			PullRequestLinks: &github.PullRequestLinks{URL: github.Ptr(fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", repo, n))},
		},
		Comment: &github.IssueComment{ID: github.Ptr(id), Body: github.Ptr(body), User: &github.User{Login: github.Ptr(author)}},
		Repo:    ghRepo(), Sender: &github.User{Login: github.Ptr(author)},
	}
}

// handle runs one event through the trigger, as a fresh delivery.
func (e *env) handle(ev any) store.Outcome {
	e.t.Helper()
	out, err := e.trig.Handle(context.Background(), fmt.Sprintf("d-%d", e.seq.Add(1)), ev)
	if err != nil {
		e.t.Fatalf("Handle(%T): %v", ev, err)
	}
	return out
}

// runs returns the trigger keys of the runs of pull request n that are
// not asked to abort, sorted.
func (e *env) runs(n int) []string {
	e.t.Helper()
	page, err := e.store.ListRuns(context.Background(), store.ListOptions{Repo: repo, Pull: n, Limit: store.MaxLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for _, r := range page.Runs {
		if _, _, aborted := r.AbortRequested(); !aborted {
			keys = append(keys, r.Spec.TriggerKey)
		}
	}
	sort.Strings(keys)
	return keys
}

func autoKeys(n int, sha string, jobs ...string) []string {
	var keys []string
	for _, j := range jobs {
		keys = append(keys, run.AutoKey(repo, n, sha, j))
	}
	sort.Strings(keys)
	return keys
}

// payload marshals an event the way GitHub sends it.
func payload(t testing.TB, ev any) []byte {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type githubtestPull = githubtest.Pull

// quiet discards logs: tests assert on state, not on log lines.
var quiet = slog.New(slog.DiscardHandler)

func strPtr(s string) *string { return &s }
func boolPtr(b bool) *bool    { return &b }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortStrings(s []string) { sort.Strings(s) }

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func pushEvent(ref, after string) *github.PushEvent {
	return &github.PushEvent{
		Ref: github.Ptr(ref), After: github.Ptr(after), Before: github.Ptr("0123"),
		Repo:    &github.PushEventRepository{FullName: github.Ptr(repo), Name: github.Ptr("widget")},
		Pusher:  &github.CommitAuthor{Name: github.Ptr(trusted)},
		Sender:  &github.User{Login: github.Ptr(trusted)},
		Commits: []*github.HeadCommit{{Modified: []string{"main.go"}}},
	}
}

// setState drives the newest run of job on pull request n to state, as
// the runner would.
func setState(t testing.TB, e *env, n int, job string, state run.State) {
	t.Helper()
	ctx := context.Background()
	page, err := e.store.ListRuns(ctx, store.ListOptions{Repo: repo, Pull: n, Job: job, Limit: 1})
	if err != nil || len(page.Runs) == 0 {
		t.Fatalf("no run of %s on #%d: %v", job, n, err)
	}
	r := page.Runs[0]
	for _, s := range []run.State{run.Scheduled, run.Running, state} {
		r.Status.State = s
		if r, err = e.store.UpdateRunStatus(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

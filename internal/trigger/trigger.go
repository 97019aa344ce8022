// Package trigger turns forge events and chat commands into runs: it
// decides who is trusted, which jobs an event or a command starts, and
// which trigger key each run gets, so that every trigger produces exactly
// one run whatever the duplicates and reorderings of the webhooks
// (COMMANDS.md has the rules). It also aborts the runs a new head SHA
// supersedes, and resyncs open pull requests to repair lost webhooks.
package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/go-github/v89/github"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Labels lockstep reads and writes on pull requests.
const (
	LabelOKToTest      = "ok-to-test"
	LabelNeedsOKToTest = "needs-ok-to-test"
)

// Store is what the trigger keeps.
type Store interface {
	store.Runs
	store.Pulls
	store.Effects
}

// Forge is what the trigger asks the forge.
type Forge interface {
	forge.Pulls
	forge.Trust
	forge.Issues
	forge.Identity
}

// Options configure a Trigger. Store, Forge and Config are required.
type Options struct {
	Store  Store
	Forge  Forge
	Config func() *config.Config
	Clock  clock.WithTicker
	Logger *slog.Logger
}

// Trigger handles decoded events. It is safe for concurrent use: events
// about one pull request are handled one at a time, in the order their
// handlers take the pull request's lock; correctness does not depend on
// that order (see observe).
type Trigger struct {
	opts  Options
	log   *slog.Logger
	trust *trustCache
	files *filesCache

	pulls pullLocks // by "repo#n"

	botOnce  sync.Mutex // botOnce guards bot
	bot      string
	botKnown bool
}

// New returns a Trigger.
func New(opts Options) *Trigger {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Trigger{
		opts:  opts,
		log:   opts.Logger.With("component", "trigger"),
		trust: newTrustCache(opts.Forge, opts.Clock),
		files: newFilesCache(opts.Forge),
	}
}

// Handle acts on one decoded event (as webhook.Decode returns it) of
// delivery id and says what it caused. An error wrapped by
// controller.Terminal cannot succeed on retry; any other may.
func (t *Trigger) Handle(ctx context.Context, delivery string, event any) (store.Outcome, error) {
	var out store.Outcome
	var err error
	switch ev := event.(type) {
	case *github.PullRequestEvent:
		out.Action, out.Sender = ev.GetAction(), ev.GetSender().GetLogin()
		err = t.pullRequest(ctx, ev, &out)
	case *github.IssueCommentEvent:
		out.Action, out.Sender = ev.GetAction(), ev.GetSender().GetLogin()
		err = t.issueComment(ctx, ev, &out)
	case *github.PushEvent:
		out.Action, out.Sender = "push", ev.GetSender().GetLogin()
		err = t.push(ctx, ev, &out)
	case *github.CheckRunEvent:
		out.Action, out.Sender = ev.GetAction(), ev.GetSender().GetLogin()
		err = t.checkRun(ctx, delivery, ev, &out)
	case *github.CheckSuiteEvent:
		out.Action, out.Sender = ev.GetAction(), ev.GetSender().GetLogin()
		err = t.checkSuite(ctx, delivery, ev, &out)
	default:
		out.Ignored = fmt.Sprintf("lockstep does not act on %T", event)
	}
	if errors.Is(err, forge.ErrNotFound) {
		err = controller.Terminal(err)
	}
	return out, err
}

// repoConfig returns the configuration of repo, or nil and says so in out.
func (t *Trigger) repoConfig(repo string, out *store.Outcome) (*config.Config, *config.Repo) {
	out.Repo = repo
	cfg := t.opts.Config()
	rc := cfg.Repos[repo]
	if rc == nil {
		out.Ignored = fmt.Sprintf("repository %s is not in lockstep's configuration", repo)
	}
	return cfg, rc
}

// lockPull serializes the handling of one pull request.
func (t *Trigger) lockPull(repo string, number int) func() {
	return t.pulls.lock(fmt.Sprintf("%s#%d", repo, number))
}

// botLogin returns the login lockstep acts as, or "" if it cannot be
// known (no forge credentials); it asks the forge once.
func (t *Trigger) botLogin(ctx context.Context) string {
	if login := t.opts.Config().GitHub.BotLogin; login != "" {
		return login
	}
	t.botOnce.Lock()
	defer t.botOnce.Unlock()
	if !t.botKnown {
		login, err := t.opts.Forge.BotLogin(ctx)
		if err != nil {
			t.log.Warn("cannot tell lockstep's own login", "err", err)
			return ""
		}
		t.bot, t.botKnown = login, true
	}
	return t.bot
}

func isBot(login, bot string) bool { return bot != "" && strings.EqualFold(login, bot) }

// pullState converts a forge pull request.
func pullState(p *forge.Pull) *store.PullState {
	return &store.PullState{
		Repo: p.Repo, Number: p.Number, Title: p.Title, State: p.State, Draft: p.Draft, Author: p.Author,
		HeadSHA: p.HeadSHA, HeadRef: p.HeadRef, BaseRef: p.BaseRef, BaseSHA: p.BaseSHA,
		Labels: p.Labels, Mergeable: p.Mergeable, UpdatedAt: p.UpdatedAt, HeadCloneURL: p.HeadCloneURL,
	}
}

// pullFromEvent converts the pull request of a webhook payload.
func pullFromEvent(repo string, pr *github.PullRequest) *store.PullState {
	var labels []string
	for _, l := range pr.Labels {
		labels = append(labels, l.GetName())
	}
	return &store.PullState{
		Repo: repo, Number: pr.GetNumber(), Title: pr.GetTitle(), State: pr.GetState(), Draft: pr.GetDraft(),
		Author: pr.GetUser().GetLogin(), HeadSHA: pr.GetHead().GetSHA(), HeadRef: pr.GetHead().GetRef(),
		BaseRef: pr.GetBase().GetRef(), BaseSHA: pr.GetBase().GetSHA(), Labels: labels,
		Mergeable: pr.Mergeable, UpdatedAt: pr.GetUpdatedAt().Time,
		HeadCloneURL: pr.GetHead().GetRepo().GetCloneURL(),
	}
}

// observe records what an event says of a pull request if it is newer
// than what lockstep knows (by the forge's updated_at; on a tie between
// two different heads, the forge is asked), and returns the newest known
// state and whether the event's head SHA is still the head (COMMANDS.md
// rule 18). Decisions are taken on the returned state, never on the
// event's, so a late event cannot undo a newer one.
func (t *Trigger) observe(ctx context.Context, seen *store.PullState) (*store.PullState, bool, error) {
	st := t.opts.Store
	for attempt := 0; ; attempt++ {
		cur, err := st.GetPullState(ctx, seen.Repo, seen.Number)
		switch {
		case errors.Is(err, store.ErrNotFound):
			created, err := st.PutPullState(ctx, seen)
			if errors.Is(err, store.ErrAlreadyExists) && attempt < 5 {
				continue
			}
			return created, err == nil, err
		case err != nil:
			return nil, false, err
		}
		next := seen
		switch {
		case seen.UpdatedAt.After(cur.UpdatedAt):
		case seen.UpdatedAt.Equal(cur.UpdatedAt) && (seen.HeadSHA != cur.HeadSHA || seen.BaseRef != cur.BaseRef || seen.State != cur.State):
			// Two states with one time: the forge says which is current.
			p, err := t.opts.Forge.GetPull(ctx, seen.Repo, seen.Number)
			if err != nil {
				return nil, false, fmt.Errorf("confirm head of %s#%d: %w", seen.Repo, seen.Number, err)
			}
			next = pullState(p)
			if next.UpdatedAt.Before(cur.UpdatedAt) {
				next.UpdatedAt = cur.UpdatedAt
			}
		default:
			return cur, seen.HeadSHA == cur.HeadSHA, nil
		}
		next.ResourceVersion = cur.ResourceVersion
		next.Epoch = cur.Epoch
		if (cur.State == "open" && next.State == "closed") || (!cur.Draft && next.Draft) {
			next.Epoch++ // its automatic runs are aborted; the next ones are new
		}
		put, err := st.PutPullState(ctx, next)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		return put, seen.HeadSHA == put.HeadSHA, nil
	}
}

// setLabels records on the stored state a label change lockstep made.
func (t *Trigger) setLabels(ctx context.Context, repo string, number int, add, remove string) error {
	return store.RetryOnConflict(ctx, func() error {
		cur, err := t.opts.Store.GetPullState(ctx, repo, number)
		if err != nil {
			return err
		}
		var labels []string
		for _, l := range cur.Labels {
			if l != add && l != remove {
				labels = append(labels, l)
			}
		}
		if add != "" {
			labels = append(labels, add)
		}
		cur.Labels = labels
		_, err = t.opts.Store.PutPullState(ctx, cur)
		return err
	})
}

// Package offline is the forge lockstep uses when no forge credentials
// are configured: runs still start from signed webhooks (lockstep hook
// send) and from the CLI, but nothing is read from or written to a forge.
// Trust comes from the configuration's lists alone, the pull requests
// lockstep knows are those it has seen in pull_request webhooks (as the
// store keeps them), and labels, comments and statuses are logged instead
// of posted.
package offline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/store"
)

var _ forge.Client = (*Forge)(nil)

// errOffline explains why a lookup fails.
var errOffline = fmt.Errorf("%w: no forge credentials are configured (set github.token_file or a GitHub App)", forge.ErrNotFound)

// PullStates is where the offline forge finds pull requests: the store,
// in which the trigger records the newest state of every pull request a
// webhook told it about. Being the store, it survives restarts.
type PullStates interface {
	GetPullState(ctx context.Context, repo string, number int) (*store.PullState, error)
}

// Forge answers every question as a forge that knows only what webhooks
// said would. Its zero value knows no pull request and logs to slog's
// default logger. It is safe for concurrent use if Pulls is.
type Forge struct {
	Logger *slog.Logger
	// Pulls holds the pull requests seen through webhooks; nil means none.
	Pulls PullStates
}

func (f *Forge) log() *slog.Logger {
	if f.Logger == nil {
		return slog.Default()
	}
	return f.Logger
}

// GetPull returns the newest state of the pull request that webhooks
// reported, so that commands on it work offline. A pull request no
// pull_request webhook named fails with forge.ErrNotFound.
func (f *Forge) GetPull(ctx context.Context, repo string, number int) (*forge.Pull, error) {
	if f.Pulls == nil {
		return nil, fmt.Errorf("look up %s#%d: %w", repo, number, errOffline)
	}
	p, err := f.Pulls.GetPullState(ctx, repo, number)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("look up %s#%d: %w: working offline, lockstep knows only the pull requests it received a pull_request webhook for; send one first (lockstep hook send --event pull_request)", repo, number, forge.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("look up %s#%d: %w", repo, number, err)
	}
	return &forge.Pull{
		Repo: p.Repo, Number: p.Number, State: p.State, Draft: p.Draft, Author: p.Author,
		HeadSHA: p.HeadSHA, HeadRef: p.HeadRef, BaseRef: p.BaseRef, BaseSHA: p.BaseSHA,
		Labels: append([]string(nil), p.Labels...), Mergeable: p.Mergeable, UpdatedAt: p.UpdatedAt,
		HeadCloneURL: p.HeadCloneURL,
	}, nil
}

// ListOpenPulls returns none.
func (f *Forge) ListOpenPulls(ctx context.Context, repo string) ([]*forge.Pull, error) {
	return nil, nil
}

// ListPullFiles fails: without a forge, the changed files are unknown.
func (f *Forge) ListPullFiles(ctx context.Context, repo string, number int) ([]string, error) {
	return nil, fmt.Errorf("list files of %s#%d: %w", repo, number, errOffline)
}

// IsMember reports false: only the configuration's lists grant trust.
func (f *Forge) IsMember(ctx context.Context, org, user string) (bool, error) { return false, nil }

// IsCollaborator reports false.
func (f *Forge) IsCollaborator(ctx context.Context, repo, user string) (bool, error) {
	return false, nil
}

// AddLabel logs the label it would add.
func (f *Forge) AddLabel(ctx context.Context, repo string, number int, label string) error {
	f.log().Info("offline: would add label", "repo", repo, "pr", number, "label", label)
	return nil
}

// RemoveLabel logs the label it would remove.
func (f *Forge) RemoveLabel(ctx context.Context, repo string, number int, label string) error {
	f.log().Info("offline: would remove label", "repo", repo, "pr", number, "label", label)
	return nil
}

// CreateComment logs the comment it would post.
func (f *Forge) CreateComment(ctx context.Context, repo string, number int, body string) error {
	f.log().Info("offline: would comment", "repo", repo, "pr", number, "body", body)
	return nil
}

// ListComments returns none.
func (f *Forge) ListComments(ctx context.Context, repo string, number int) ([]forge.Comment, error) {
	return nil, nil
}

// CreateStatus logs the status it would set.
func (f *Forge) CreateStatus(ctx context.Context, repo, sha string, s forge.Status) error {
	f.log().Info("offline: would set status", "repo", repo, "sha", sha, "context", s.Context, "state", s.State)
	return nil
}

// ListStatuses returns none.
func (f *Forge) ListStatuses(ctx context.Context, repo, sha string) ([]forge.Status, error) {
	return nil, nil
}

// BotLogin returns no login: without credentials lockstep has no account.
func (f *Forge) BotLogin(ctx context.Context) (string, error) { return "", nil }

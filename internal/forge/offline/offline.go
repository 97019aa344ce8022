// Package offline is the forge lockstep uses when no forge credentials
// are configured: runs still start from signed webhooks (lockstep hook
// send) and from the CLI, but nothing is read from or written to a forge.
// Trust comes from the configuration's lists alone, pull requests cannot
// be looked up, and labels, comments and statuses are logged instead of
// posted.
package offline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/lockstep-ci/lockstep/internal/forge"
)

var _ forge.Client = (*Forge)(nil)

// errOffline explains why a lookup fails.
var errOffline = fmt.Errorf("%w: no forge credentials are configured (set github.token_file or a GitHub App)", forge.ErrNotFound)

// Forge answers every question as a forge that knows nothing would. Its
// zero value logs to slog's default logger.
type Forge struct {
	Logger *slog.Logger
}

func (f *Forge) log() *slog.Logger {
	if f.Logger == nil {
		return slog.Default()
	}
	return f.Logger
}

// GetPull fails: without a forge, a pull request cannot be looked up.
func (f *Forge) GetPull(ctx context.Context, repo string, number int) (*forge.Pull, error) {
	return nil, fmt.Errorf("look up %s#%d: %w", repo, number, errOffline)
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

// Package offline is the forge lockstep uses when no forge credentials
// are configured: runs still start from signed webhooks (lockstep hook
// send) and from the CLI, but nothing is read from or written to a forge.
// Trust comes from the configuration's lists alone, the pull requests
// lockstep knows are those it has seen in pull_request webhooks (as the
// store keeps them), their changed files come from git when the
// repository's clone URL is a local repository, and labels, comments and
// statuses are logged instead of posted.
package offline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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
	// CloneURL returns where a repository is cloned from (its
	// configuration's clone_url). When that is a local git repository,
	// ListPullFiles asks git for a pull request's changed files; nil
	// means it never can.
	CloneURL func(repo string) string
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
		Repo: p.Repo, Number: p.Number, Title: p.Title, State: p.State, Draft: p.Draft, Author: p.Author,
		HeadSHA: p.HeadSHA, HeadRef: p.HeadRef, BaseRef: p.BaseRef, BaseSHA: p.BaseSHA,
		Labels: append([]string(nil), p.Labels...), Mergeable: p.Mergeable, UpdatedAt: p.UpdatedAt,
		HeadCloneURL: p.HeadCloneURL,
	}, nil
}

// ListOpenPulls returns none.
func (f *Forge) ListOpenPulls(ctx context.Context, repo string) ([]*forge.Pull, error) {
	return nil, nil
}

// ListPullFiles returns the files a known pull request changes, as git
// tells them from the repository's local clone URL: the paths the head
// changes against its merge base with the base commit (both paths of a
// rename), as GitHub lists them. Without a local repository, the changed
// files are unknown and it fails.
func (f *Forge) ListPullFiles(ctx context.Context, repo string, number int) ([]string, error) {
	dir := ""
	if f.CloneURL != nil {
		dir = localPath(f.CloneURL(repo))
	}
	if dir == "" {
		return nil, fmt.Errorf("list files of %s#%d: %w (or a clone_url that is a local git repository)", repo, number, errOffline)
	}
	p, err := f.GetPull(ctx, repo, number)
	if err != nil {
		return nil, fmt.Errorf("list files of %s#%d: %w", repo, number, err)
	}
	cmd := exec.CommandContext(ctx, "git", "-C", dir, "diff", "--name-only", "--no-renames", "-z", p.BaseSHA+"..."+p.HeadSHA, "--")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list files of %s#%d: git diff %s...%s in %s: %w: %s", repo, number, p.BaseSHA, p.HeadSHA, dir, err, strings.TrimSpace(stderr.String()))
	}
	var files []string
	for _, name := range strings.Split(string(out), "\x00") {
		if name != "" {
			files = append(files, name)
		}
	}
	return files, nil
}

// localPath returns the directory a clone URL names when it is a local
// path or a file:// URL, or "".
func localPath(cloneURL string) string {
	if rest, ok := strings.CutPrefix(cloneURL, "file://"); ok {
		cloneURL = rest
	}
	if !filepath.IsAbs(cloneURL) {
		return ""
	}
	if fi, err := os.Stat(cloneURL); err != nil || !fi.IsDir() {
		return ""
	}
	return cloneURL
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

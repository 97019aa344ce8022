// Package forge defines what lockstep needs from a code forge: pull
// requests and their files, trust (membership, collaborators), labels,
// comments and commit statuses. The GitHub implementation is in
// forge/github; others (Gitea/Forgejo) follow the same interfaces.
//
// The interfaces are small, one per concern, so each controller asks only
// for what it uses. Implementations are safe for concurrent use.
package forge

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound: the forge has no such object (a deleted repository,
	// commit or pull request).
	ErrNotFound = errors.New("not found on the forge")
	// ErrUnprocessable: the forge refused the request as invalid for the
	// object's current state, such as a status on a commit that no longer
	// exists (GitHub's 422). Retrying cannot help.
	ErrUnprocessable = errors.New("refused by the forge")
)

// Pull is a pull request as the forge reports it.
type Pull struct {
	Repo    string // owner/name
	Number  int
	Title   string
	State   string // open or closed
	Draft   bool
	Author  string
	HeadSHA string
	HeadRef string
	BaseRef string
	BaseSHA string
	Labels  []string
	// Mergeable is nil while the forge has not computed it.
	Mergeable *bool
	UpdatedAt time.Time
	// CloneURL of the head repository (forks differ from the base).
	HeadCloneURL string
}

// HasLabel reports whether p carries label.
func (p *Pull) HasLabel(label string) bool {
	for _, l := range p.Labels {
		if l == label {
			return true
		}
	}
	return false
}

// Pulls reads pull requests.
type Pulls interface {
	// GetPull returns pull request number of repo.
	GetPull(ctx context.Context, repo string, number int) (*Pull, error)
	// ListOpenPulls returns every open pull request of repo.
	ListOpenPulls(ctx context.Context, repo string) ([]*Pull, error)
	// ListPullFiles returns the paths a pull request changes (for a rename,
	// both the old and the new path).
	ListPullFiles(ctx context.Context, repo string, number int) ([]string, error)
}

// Trust answers who may run code.
type Trust interface {
	// IsMember reports whether user is a member of org.
	IsMember(ctx context.Context, org, user string) (bool, error)
	// IsCollaborator reports whether user is a collaborator of repo.
	IsCollaborator(ctx context.Context, repo, user string) (bool, error)
}

// Comment is a comment on an issue or pull request.
type Comment struct {
	ID     int64
	Author string
	Body   string
}

// Issues changes labels and comments of pull requests.
type Issues interface {
	AddLabel(ctx context.Context, repo string, number int, label string) error
	// RemoveLabel removes label; removing a label that is not there is
	// not an error.
	RemoveLabel(ctx context.Context, repo string, number int, label string) error
	CreateComment(ctx context.Context, repo string, number int, body string) error
	ListComments(ctx context.Context, repo string, number int) ([]Comment, error)
}

// Status states, as GitHub names them.
const (
	StatusPending = "pending"
	StatusSuccess = "success"
	StatusFailure = "failure"
	StatusError   = "error"
)

// Status is a commit status: one context's state on one commit.
type Status struct {
	Context     string
	State       string // one of the Status* constants
	Description string // at most 140 characters
	TargetURL   string
}

// Statuses reads and writes commit statuses.
type Statuses interface {
	// CreateStatus sets a context's status on sha. A commit that no longer
	// exists fails with ErrUnprocessable.
	CreateStatus(ctx context.Context, repo, sha string, s Status) error
	// ListStatuses returns the newest status of each context on sha.
	ListStatuses(ctx context.Context, repo, sha string) ([]Status, error)
}

// Identity says who lockstep is on the forge.
type Identity interface {
	// BotLogin returns the login lockstep acts as (for a GitHub App,
	// "NAME[bot]").
	BotLogin(ctx context.Context) (string, error)
}

// Client is everything a forge implementation offers.
type Client interface {
	Pulls
	Trust
	Issues
	Statuses
	Identity
}

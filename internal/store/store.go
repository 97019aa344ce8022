// Package store defines how lockstep keeps its objects: runs now, and the
// deliveries, builds, markers and schedules of later controllers. Its
// semantics are those of a Kubernetes API server, because every controller
// depends on them:
//
//   - Create is idempotent on a unique key: a second create with the same
//     key returns the existing object and ErrAlreadyExists.
//   - Every object carries a ResourceVersion, the store revision of its last
//     write. A write based on an older one fails with ErrConflict and
//     changes nothing.
//   - A Run's Spec is immutable; its Status is written only by UpdateStatus.
//   - Watch is an ordered, resumable change feed: every write gets a
//     revision from one counter that only grows, and a watcher that resumes
//     from the last revision it saw misses nothing.
//
// Implementations live in subpackages named after their technology
// (store/sqlite). They are safe for concurrent use by many goroutines.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound: no object has that ID.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write was based on a ResourceVersion that is no
	// longer current. Re-read and retry (see RetryOnConflict).
	ErrConflict = errors.New("conflict: object was modified since it was read")
	// ErrAlreadyExists: an object with the same unique key exists; it is
	// returned alongside the error.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalid: the write is not allowed whatever the version (a changed
	// spec, a forbidden state transition, a missing field).
	ErrInvalid = errors.New("invalid")
)

// Runs stores runs.
type Runs interface {
	// CreateRun stores r as a new run (pending unless r says otherwise)
	// and returns it with its metadata filled in. If a run with r.Spec.TriggerKey exists, it
	// returns that run and ErrAlreadyExists, and creates nothing.
	CreateRun(ctx context.Context, r *run.Run) (*run.Run, error)
	// GetRun returns the run with id, or ErrNotFound.
	GetRun(ctx context.Context, id run.ID) (*run.Run, error)
	// ListRuns returns runs matching opts, newest first, one page at a time.
	ListRuns(ctx context.Context, opts ListOptions) (RunPage, error)
	// UpdateRun replaces r's labels if r.ResourceVersion is current, and
	// returns the run as stored. The spec is immutable: a spec that differs
	// from the stored one fails with ErrInvalid. The status in r is ignored.
	UpdateRun(ctx context.Context, r *run.Run) (*run.Run, error)
	// UpdateRunStatus replaces r's status if r.ResourceVersion is current,
	// and returns the run as stored. It fails with ErrConflict when the
	// version is stale and with ErrInvalid when the state changes in a way
	// run.CanTransition forbids; a status that keeps the state (such as a
	// reporter recording Status.Reported on a finished run) is always
	// allowed. An update that changes nothing returns the run unchanged,
	// with no new revision. The spec in r is ignored.
	UpdateRunStatus(ctx context.Context, r *run.Run) (*run.Run, error)
	// WatchRuns calls fn, in revision order, with every run written after
	// revision from (each in its latest state: intermediate versions may be
	// folded into one event), until ctx is done or fn returns an error.
	// It returns ctx.Err() or fn's error. fn runs on the caller's
	// goroutine; pass the Revision of the last event seen to resume.
	WatchRuns(ctx context.Context, from int64, fn func(RunEvent) error) error
	// Revision returns the store's current revision: watching from it sees
	// every write that happens after the call.
	Revision(ctx context.Context) (int64, error)
}

// RunEvent is one entry of the run change feed.
type RunEvent struct {
	// Revision is the store revision of the write; it equals
	// Run.ResourceVersion.
	Revision int64
	Run      *run.Run
}

// ListOptions filters and pages a run listing. Zero fields match anything.
type ListOptions struct {
	Repo  string
	Pull  int
	SHA   string // matches the head SHA or, for runs without one, the base SHA
	Job   string
	Type  run.Type
	State []run.State // any of these
	// Limit caps the page size; zero means DefaultLimit, and values above
	// MaxLimit are lowered to it.
	Limit int
	// Continue is the token from the previous page's RunPage.Continue.
	Continue string
}

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// RunPage is one page of a listing.
type RunPage struct {
	Runs []*run.Run
	// Continue fetches the next page; empty on the last page. Pages are
	// stable: runs created while paging appear at the front, never twice.
	Continue string
}

// RetryOnConflict calls fn until it returns something other than
// ErrConflict, backing off between attempts, for at most five attempts or
// until ctx is done. fn must re-read the object it writes.
func RetryOnConflict(ctx context.Context, fn func() error) error {
	backoff := 5 * time.Millisecond
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = fn(); !errors.Is(err, ErrConflict) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff *= 2
	}
	return fmt.Errorf("gave up after 5 conflicts: %w", err)
}

// Store is a whole store, as lockstep serve opens it: every role
// interface, and Close. Components take the role interfaces they use; the
// process that opens the store closes it, after its users are done.
type Store interface {
	Runs
	Deliveries
	Pulls
	Effects
	Refusals
	Schedules
	Builds
	Markers
	Leases
	Logs
	// Close releases the store. Watchers still running fail.
	Close() error
}

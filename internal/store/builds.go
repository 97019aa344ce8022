package store

import (
	"context"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// Schedule is the stored state of one periodic job's schedule: when it is
// due next and what happened at the due times already past. Schedules are
// keyed by (Repo, Job). Next only moves through a compare-and-swap on
// ResourceVersion, so however many schedulers share a store, each due time
// is handled once.
type Schedule struct {
	Repo            string    `json:"repo"`
	Job             string    `json:"job"`
	ResourceVersion int64     `json:"resource_version"`
	CreatedAt       time.Time `json:"created_at"`
	// Spec is the schedule Next was planned with, as the scheduler writes
	// it ("interval 1h0m0s", "cron 0 3 * * * Europe/Paris"); when the
	// job's configured schedule no longer matches it, Next is planned
	// again.
	Spec string `json:"spec"`
	// Next is the next due time.
	Next time.Time `json:"next"`
	// LastDue is the last due time handled, fired or skipped; LastRun the
	// run created for the last due time that fired.
	LastDue *time.Time `json:"last_due,omitempty"`
	LastRun run.ID     `json:"last_run,omitempty"`
	// Skips lists the due times that fired no run, newest first, at most
	// MaxSkips of them.
	Skips []Skip `json:"skips,omitempty"`
}

// MaxSkips caps Schedule.Skips.
const MaxSkips = 50

// Skip records due times of a schedule that fired no run, and why. One
// Skip may stand for a range of due times (Count of them, from Due to
// Last), as after downtime.
type Skip struct {
	Due   time.Time `json:"due"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
	// Reason is a CamelCase word (Missed, PreviousRunUnfinished,
	// StaleBuild, NoBuild); Message the sentence for a person.
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// AddSkip puts k at the front of s.Skips, dropping the oldest beyond
// MaxSkips.
func (s *Schedule) AddSkip(k Skip) {
	skips := make([]Skip, 0, min(len(s.Skips)+1, MaxSkips))
	skips = append(skips, k)
	for _, old := range s.Skips {
		if len(skips) == MaxSkips {
			break
		}
		skips = append(skips, old)
	}
	s.Skips = skips
}

// Schedules stores periodic schedules. Implementations are safe for
// concurrent use.
type Schedules interface {
	// GetSchedule returns the schedule of job in repo, or ErrNotFound.
	GetSchedule(ctx context.Context, repo, job string) (*Schedule, error)
	// ListSchedules returns every schedule, ordered by repo and job.
	ListSchedules(ctx context.Context) ([]*Schedule, error)
	// CreateSchedule stores s. If a schedule of the same job exists, it
	// returns that one and ErrAlreadyExists, and writes nothing.
	CreateSchedule(ctx context.Context, s *Schedule) (*Schedule, error)
	// UpdateSchedule replaces s if s.ResourceVersion is current (else
	// ErrConflict) and returns it as stored.
	UpdateSchedule(ctx context.Context, s *Schedule) (*Schedule, error)
	// FireSchedule replaces s, as UpdateSchedule does, and creates r, as
	// Runs.CreateRun does, in one transaction: both or neither. The
	// stored schedule's LastRun is the ID of the run, which is the
	// existing run if one has r's trigger key (the schedule is still
	// written, and no error is returned).
	FireSchedule(ctx context.Context, s *Schedule, r *run.Run) (*Schedule, *run.Run, error)
}

// Build is what a job that produces builds made in one successful run.
// Builds are ordered by ID, which grows with creation: on a branch, a
// build with a greater ID is newer.
type Build struct {
	ID              int64     `json:"id"`
	ResourceVersion int64     `json:"resource_version"`
	CreatedAt       time.Time `json:"created_at"`
	Repo            string    `json:"repo"`
	Branch          string    `json:"branch"`
	Commit          string    `json:"commit,omitempty"`
	// Version is the first line the job wrote to $LOCKSTEP_BUILD_FILE;
	// Artifacts are the further lines, where the build's files are.
	Version   string   `json:"version"`
	Artifacts []string `json:"artifacts,omitempty"`
	// Job and Run name the job and the run that produced the build; a run
	// produces at most one build.
	Job string `json:"job"`
	Run run.ID `json:"run"`
}

// BuildListOptions filters a build listing. Zero fields match anything.
type BuildListOptions struct {
	Repo   string
	Branch string
	// AfterID and BeforeID keep builds with an ID greater than AfterID,
	// or less than BeforeID, when not zero.
	AfterID  int64
	BeforeID int64
	// Limit caps how many builds ListBuilds returns; zero means
	// DefaultLimit, and values above MaxLimit are lowered to it.
	Limit int
}

// Builds stores builds. Implementations are safe for concurrent use.
type Builds interface {
	// CreateBuild stores b as a new build and returns it with its ID and
	// creation time. If run b.Run already produced a build, it returns
	// that build and ErrAlreadyExists, and writes nothing.
	CreateBuild(ctx context.Context, b *Build) (*Build, error)
	// GetBuild returns the build with id, or ErrNotFound.
	GetBuild(ctx context.Context, id int64) (*Build, error)
	// ListBuilds returns the builds matching opts, newest first.
	ListBuilds(ctx context.Context, opts BuildListOptions) ([]*Build, error)
	// CountBuilds returns how many builds match opts; opts.Limit is
	// ignored.
	CountBuilds(ctx context.Context, opts BuildListOptions) (int, error)
}

// Marker is a named pointer to a build of one branch, such as
// latest-green. It moves only forward, to a newer build of its branch,
// and only through a compare-and-swap; every move is kept in its history.
type Marker struct {
	Name            string    `json:"name"`
	ResourceVersion int64     `json:"resource_version"`
	CreatedAt       time.Time `json:"created_at"`
	Repo            string    `json:"repo"`
	Branch          string    `json:"branch"`
	// BuildID is the build the marker names; zero until it first moves.
	// Version and Commit are that build's, filled in by the store.
	BuildID int64  `json:"build_id,omitempty"`
	Version string `json:"version,omitempty"`
	Commit  string `json:"commit,omitempty"`
	// MovedAt is when the marker last moved, stamped by the store; Run
	// is the run whose success moved it.
	MovedAt *time.Time `json:"moved_at,omitempty"`
	Run     run.ID     `json:"run,omitempty"`
	// Status is what the builds controller last observed about the
	// marker.
	Status MarkerStatus `json:"status"`
}

// MarkerStatus is what the builds controller observed about a marker.
type MarkerStatus struct {
	// ObservedBuildID is the build the marker named when the status was
	// written; a status observed for an older build is out of date.
	ObservedBuildID int64 `json:"observed_build_id,omitempty"`
	// Conditions holds the Stale condition.
	Conditions []run.Condition `json:"conditions,omitempty"`
	// NewerBuilds counts the builds of the branch newer than the marker's;
	// Newest is the newest of them.
	NewerBuilds   int        `json:"newer_builds"`
	NewestBuildID int64      `json:"newest_build_id,omitempty"`
	NewestVersion string     `json:"newest_version,omitempty"`
	NewestAt      *time.Time `json:"newest_at,omitempty"`
	// GateFailures counts the gate job's finished runs that did not
	// succeed since its last success, the first of them at
	// GateFailingSince.
	GateFailures     int        `json:"gate_failures"`
	GateFailingSince *time.Time `json:"gate_failing_since,omitempty"`
}

// Age returns how long m has pointed at its build at now: since it last
// moved, or since it was created when it never moved.
func (m *Marker) Age(now time.Time) time.Duration {
	since := m.CreatedAt
	if m.MovedAt != nil {
		since = *m.MovedAt
	}
	return now.Sub(since)
}

// MarkerMove is one entry of a marker's history.
type MarkerMove struct {
	Marker string `json:"marker"`
	// FromBuild is the build the marker named before; zero for its first
	// move.
	FromBuild int64     `json:"from_build,omitempty"`
	ToBuild   int64     `json:"to_build"`
	Version   string    `json:"version"`
	Run       run.ID    `json:"run,omitempty"`
	At        time.Time `json:"at"`
}

// Markers stores markers and their history. Implementations are safe for
// concurrent use.
type Markers interface {
	// GetMarker returns the marker called name, or ErrNotFound.
	GetMarker(ctx context.Context, name string) (*Marker, error)
	// ListMarkers returns every marker, ordered by name.
	ListMarkers(ctx context.Context) ([]*Marker, error)
	// CreateMarker stores m, naming no build. If a marker of that name
	// exists, it returns it and ErrAlreadyExists, and writes nothing.
	CreateMarker(ctx context.Context, m *Marker) (*Marker, error)
	// UpdateMarker replaces m if m.ResourceVersion is current (else
	// ErrConflict) and returns it as stored. Repo and Branch cannot
	// change. A changed BuildID moves the marker: the build must exist,
	// belong to the marker's repo and branch, and be newer than the one
	// the marker names, or the update fails with ErrInvalid; the store
	// then fills in Version, Commit and MovedAt and adds the move to the
	// history, in the same transaction.
	UpdateMarker(ctx context.Context, m *Marker) (*Marker, error)
	// MarkerHistory returns the moves of the marker called name, newest
	// first, at most limit of them (DefaultLimit when zero).
	MarkerHistory(ctx context.Context, name string, limit int) ([]MarkerMove, error)
}

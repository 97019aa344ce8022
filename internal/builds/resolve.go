package builds

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Reader is what Resolve reads.
type Reader interface {
	GetMarker(ctx context.Context, name string) (*store.Marker, error)
	GetBuild(ctx context.Context, id int64) (*store.Build, error)
	ListBuilds(ctx context.Context, opts store.BuildListOptions) ([]*store.Build, error)
	CountBuilds(ctx context.Context, opts store.BuildListOptions) (int, error)
}

// Reasons a fire of a job consuming builds may skip or fail.
const (
	ReasonStaleBuild = "StaleBuild" // the marker is stale and on_stale said skip or fail
)

// Resolution is the build a run of a job consuming builds would test.
type Resolution struct {
	// Build is nil when there is no build to test; Reason (NoBuild) and
	// Message then say why.
	Build *store.Build
	// UnderTest is what the run records; nil when Build is.
	UnderTest *run.BuildUnderTest
	// Stale, Reason and Message say whether the marker is stale and why.
	Stale   bool
	Reason  string
	Message string
}

// Resolve finds the build that a job of repo with build source src tests
// at now: the build marker src.Marker names, with its age, its lag
// behind the newest build of its branch and whether it is stale; or the
// newest build of branch src.Branch of repo. It does not apply on_stale:
// UnderTest.Decision is left for the caller.
func Resolve(ctx context.Context, rd Reader, cfg *config.Config, repo string, src config.BuildSource, now time.Time) (Resolution, error) {
	if src.Marker == "" {
		bs, err := rd.ListBuilds(ctx, store.BuildListOptions{Repo: repo, Branch: src.Branch, Limit: 1})
		if err != nil {
			return Resolution{}, fmt.Errorf("newest build of %s@%s: %w", repo, src.Branch, err)
		}
		if len(bs) == 0 {
			return Resolution{Reason: ReasonNoBuild, Message: fmt.Sprintf("%s@%s has no build yet", repo, src.Branch)}, nil
		}
		b := bs[0]
		return Resolution{Build: b, Reason: ReasonFresh, UnderTest: &run.BuildUnderTest{
			BuildID: b.ID, Version: b.Version, Commit: b.Commit,
		}}, nil
	}

	mc, ok := cfg.Marker(src.Marker)
	if !ok {
		return Resolution{}, fmt.Errorf("marker %s is not configured", src.Marker)
	}
	m, err := rd.GetMarker(ctx, src.Marker)
	if errors.Is(err, store.ErrNotFound) || (err == nil && m.BuildID == 0) {
		return Resolution{Reason: ReasonNoBuild, Message: fmt.Sprintf("marker %s names no build yet", src.Marker)}, nil
	}
	if err != nil {
		return Resolution{}, err
	}
	b, err := rd.GetBuild(ctx, m.BuildID)
	if err != nil {
		return Resolution{}, fmt.Errorf("build %d of marker %s: %w", m.BuildID, m.Name, err)
	}
	newer := store.BuildListOptions{Repo: m.Repo, Branch: m.Branch, AfterID: m.BuildID}
	n, err := rd.CountBuilds(ctx, newer)
	if err != nil {
		return Resolution{}, err
	}
	var newestAge time.Duration
	if n > 0 {
		newer.Limit = 1
		bs, err := rd.ListBuilds(ctx, newer)
		if err != nil {
			return Resolution{}, err
		}
		if len(bs) > 0 {
			newestAge = now.Sub(bs[0].CreatedAt)
		}
	}
	st := MarkerStaleness(mc, m, src.MaxAge.Duration, now)
	res := Resolution{Build: b, Stale: st.Stale, Reason: st.Reason, Message: st.Message}
	res.UnderTest = &run.BuildUnderTest{
		Marker: m.Name, BuildID: b.ID, Version: b.Version, Commit: b.Commit,
		MarkerAge: st.Age, NewerBuilds: n, NewestAge: newestAge, Stale: st.Stale,
	}
	return res, nil
}

// The environment variables a run testing a build gets.
const (
	EnvBuildID        = "LOCKSTEP_BUILD_ID"
	EnvBuildVersion   = "LOCKSTEP_BUILD_VERSION"
	EnvBuildCommit    = "LOCKSTEP_BUILD_COMMIT"
	EnvBuildArtifacts = "LOCKSTEP_BUILD_ARTIFACTS"
	EnvBuildMarker    = "LOCKSTEP_BUILD_MARKER"
	EnvBuildStale     = "LOCKSTEP_BUILD_STALE"
)

// Env returns the environment variables describing the build res names
// to the job testing it: its ID, version, commit, artifact locations (one
// per line), the marker it came from and whether it is stale.
func Env(res Resolution) map[string]string {
	if res.Build == nil {
		return nil
	}
	b := res.Build
	env := map[string]string{
		EnvBuildID:        strconv.FormatInt(b.ID, 10),
		EnvBuildVersion:   b.Version,
		EnvBuildCommit:    b.Commit,
		EnvBuildArtifacts: strings.Join(b.Artifacts, "\n"),
		EnvBuildStale:     strconv.FormatBool(res.Stale),
	}
	if res.UnderTest != nil && res.UnderTest.Marker != "" {
		env[EnvBuildMarker] = res.UnderTest.Marker
	}
	return env
}

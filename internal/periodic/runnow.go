package periodic

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/lockstep-ci/lockstep/internal/builds"
	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// RunNowStore is what RunNow reads and writes.
type RunNowStore interface {
	CreateRun(ctx context.Context, r *run.Run) (*run.Run, error)
	builds.Reader
}

// RequesterAdmin is the requester of runs started with RunNow.
const RequesterAdmin = "admin"

// RunNow creates a run of the periodic job of repo in cfg at once,
// outside its schedule, as an administrator asked for it in request (a
// UI or API request id): a second call with the same request returns the
// run the first created, and created false. The schedule is left alone:
// its next due time still fires, and its concurrency policy does not
// apply to the run. A job that tests builds tests the build its schedule
// would, stale or not (the administrator asked for it: Decision is
// "run"); with no build to test, RunNow fails with store.ErrInvalid.
// An unknown job fails with store.ErrNotFound.
func RunNow(ctx context.Context, st RunNowStore, cfg *config.Config, repo, job, request string, now time.Time) (r *run.Run, created bool, err error) {
	rc := cfg.Repos[repo]
	var p *config.Periodic
	if rc != nil {
		for i := range rc.Periodics {
			if rc.Periodics[i].Name == job {
				p = &rc.Periodics[i]
			}
		}
	}
	if p == nil {
		return nil, false, fmt.Errorf("periodic %s of %s: %w", job, repo, store.ErrNotFound)
	}
	k := jobKey{repo, job}
	nr := newRun(k, jobOf(cfg, repo, *p), now)
	nr.Spec.Cause = run.CauseRunNow
	nr.Spec.Requester = RequesterAdmin
	nr.Spec.TriggerKey = run.RunNowKey(repo, job, request)
	if src := p.Build; src != nil {
		res, err := builds.Resolve(ctx, st, cfg, repo, *src, now)
		if err != nil {
			return nil, false, fmt.Errorf("run %s of %s now: resolve the build to test: %w", job, repo, err)
		}
		if res.Build == nil {
			return nil, false, fmt.Errorf("run %s of %s now: %w: %s; there is no build to test", job, repo, store.ErrInvalid, res.Message)
		}
		if res.Stale {
			res.UnderTest.Decision = config.OnStaleRun
		}
		nr.Spec.Build = res.UnderTest
		if env := builds.Env(res); len(env) > 0 {
			merged := make(map[string]string, len(nr.Spec.Env)+len(env))
			maps.Copy(merged, nr.Spec.Env)
			maps.Copy(merged, env)
			nr.Spec.Env = merged
		}
	}
	got, err := st.CreateRun(ctx, nr)
	if errors.Is(err, store.ErrAlreadyExists) {
		return got, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("run %s of %s now: %w", job, repo, err)
	}
	return got, true, nil
}

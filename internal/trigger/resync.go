package trigger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Resync lists the open pull requests of every configured repository and
// creates the automatic runs missing for their heads, and aborts runs of
// heads they no longer have: webhooks do get lost. The trigger keys make
// it unable to duplicate anything. It returns every repository's error.
func (t *Trigger) Resync(ctx context.Context) error {
	cfg := t.opts.Config()
	var errs []error
	for _, repo := range slices.Sorted(maps.Keys(cfg.Repos)) {
		if err := t.resyncRepo(ctx, repo); err != nil {
			errs = append(errs, fmt.Errorf("resync %s: %w", repo, err))
		}
	}
	return errors.Join(errs...)
}

func (t *Trigger) resyncRepo(ctx context.Context, repo string) error {
	pulls, err := t.opts.Forge.ListOpenPulls(ctx, repo)
	if err != nil {
		return err
	}
	for _, pull := range pulls {
		var out store.Outcome
		cfg, rc := t.repoConfig(repo, &out)
		if rc == nil {
			return nil // removed from the configuration meanwhile
		}
		err := func() error {
			defer t.lockPull(repo, pull.Number)()
			p, current, err := t.observe(ctx, pullState(pull))
			if err != nil || !current || p.State != "open" {
				return err
			}
			if err := t.abortRuns(ctx, repo, p.Number, func(r *run.Run) bool {
				return r.Spec.Refs.HeadSHA != p.HeadSHA || r.Spec.Refs.BaseRef != p.BaseRef
			}, run.ReasonSuperseded, "superseded by head "+short(p.HeadSHA), &out); err != nil {
				return err
			}
			if p.Mergeable != nil && !*p.Mergeable {
				return nil
			}
			trusted, err := t.pullTrusted(ctx, cfg, p)
			if err != nil || !trusted {
				return err
			}
			jobs, err := t.automaticSet(ctx, rc, p)
			if err != nil {
				return err
			}
			return t.createRuns(ctx, rc, p, autoPlan(p, jobs), run.CauseResync, "", &out)
		}()
		if err != nil {
			return fmt.Errorf("pull request %d: %w", pull.Number, err)
		}
		if len(out.Runs) > 0 || len(out.Aborted) > 0 {
			t.log.Info("resync repaired a pull request", "repo", repo, "pr", pull.Number, "runs", out.Runs, "aborted", out.Aborted)
		}
	}
	return nil
}

// RunResync calls Resync every resync_interval (read from the current
// configuration each time) until ctx is done.
func (t *Trigger) RunResync(ctx context.Context) error {
	for {
		timer := t.opts.Clock.NewTimer(t.opts.Config().EffectiveResyncInterval())
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C():
		}
		if err := t.Resync(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("resync failed; trying again at the next interval", "err", err)
		}
	}
}

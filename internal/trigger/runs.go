package trigger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// planned is one run a trigger asks for: a job and its trigger key.
type planned struct {
	job config.Presubmit
	key string
}

// automaticSet returns the presubmits a pull request at p runs by itself
// (COMMANDS.md rule 7); on a draft, only the jobs that run on drafts.
func (t *Trigger) automaticSet(ctx context.Context, rc *config.Repo, p *store.PullState) ([]config.Presubmit, error) {
	changes := func() ([]string, error) { return t.files.get(ctx, p.Repo, p.Number, p.HeadSHA) }
	var set []config.Presubmit
	for _, job := range rc.Presubmits {
		if p.Draft && !job.RunOnDrafts {
			continue
		}
		ok, err := job.ShouldRun(p.BaseRef, changes)
		if err != nil {
			return nil, err
		}
		if ok {
			set = append(set, job)
		}
	}
	return set, nil
}

// autoPlan keys jobs with the automatic key of p's head: every automatic
// trigger of one (pull request, head, job) shares it. A pull request
// reopened, or made ready again after being a draft, is in a new epoch:
// its earlier automatic runs were aborted, so its keys differ.
func autoPlan(p *store.PullState, jobs []config.Presubmit) []planned {
	var plan []planned
	for _, j := range jobs {
		key := run.AutoKey(p.Repo, p.Number, p.HeadSHA, j.Name)
		if p.Epoch > 0 {
			key = fmt.Sprintf("%s.%d", key, p.Epoch)
		}
		plan = append(plan, planned{job: j, key: key})
	}
	return plan
}

// requestPlan keys jobs with an explicit request (a comment or delivery
// id): a redelivered request is still one.
func requestPlan(p *store.PullState, jobs []config.Presubmit, request string) []planned {
	var plan []planned
	for _, j := range jobs {
		plan = append(plan, planned{job: j, key: run.RequestKey(p.Repo, p.Number, p.HeadSHA, j.Name, request)})
	}
	return plan
}

// createRuns creates the planned runs of pull request p; a run whose key
// exists already is not created again, and is listed as existing.
func (t *Trigger) createRuns(ctx context.Context, rc *config.Repo, p *store.PullState, plan []planned, cause run.Cause, requester string, out *store.Outcome) error {
	if len(plan) == 0 {
		return nil
	}
	// The pull request's code is its author's: only a trusted author's
	// runs get the secrets their jobs name, whoever asked for the run
	// (an /ok-to-test vouches for running the code, not for handing it
	// credentials).
	authorTrusted, err := t.userTrusted(ctx, t.opts.Config(), p.Repo, p.Author)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, pl := range plan {
		if seen[pl.job.Name] {
			continue
		}
		seen[pl.job.Name] = true
		r := &run.Run{Spec: run.Spec{
			Job:  pl.job.Name,
			Type: run.Presubmit,
			Refs: run.Refs{
				Repo: p.Repo, CloneURL: rc.EffectiveCloneURL(p.Repo),
				BaseRef: p.BaseRef, BaseSHA: p.BaseSHA,
				Pull: p.Number, HeadSHA: p.HeadSHA, HeadRef: p.HeadRef, Author: p.Author, Title: p.Title,
			},
			Cause:      cause,
			Requester:  requester,
			Context:    pl.job.StatusContext(),
			Script:     pl.job.Run,
			Env:        pl.job.Env,
			Timeout:    pl.job.EffectiveTimeout(),
			NoNetwork:  pl.job.Sandbox.NoNetwork(),
			TriggerKey: pl.key,

			Executor:       pl.job.Executor,
			ExecutorConfig: pl.job.ExecutorConfig(t.opts.Config().GitLab),
		}}
		if authorTrusted {
			r.Spec.Secrets = pl.job.Secrets
		}
		created, err := t.opts.Store.CreateRun(ctx, r)
		switch {
		case errors.Is(err, store.ErrAlreadyExists):
			out.Existing = append(out.Existing, created.ID)
		case err != nil:
			return fmt.Errorf("create run of %s: %w", pl.job.Name, err)
		default:
			out.Runs = append(out.Runs, created.ID)
			t.log.Info("run created", "run", created.ID, "job", pl.job.Name, "repo", p.Repo, "pr", p.Number, "sha", p.HeadSHA, "cause", cause, "key", pl.key)
		}
	}
	return nil
}

// abortRuns asks the runner to abort the unfinished runs of pull request
// number of repo for which stale reports true.
func (t *Trigger) abortRuns(ctx context.Context, repo string, number int, stale func(*run.Run) bool, reason, message string, out *store.Outcome) error {
	opts := store.ListOptions{Repo: repo, Pull: number, State: []run.State{run.Pending, run.Scheduled, run.Running}, Limit: store.MaxLimit}
	for {
		page, err := t.opts.Store.ListRuns(ctx, opts)
		if err != nil {
			return fmt.Errorf("list runs of %s#%d: %w", repo, number, err)
		}
		for _, r := range page.Runs {
			if !stale(r) {
				continue
			}
			aborted := false
			err := store.RetryOnConflict(ctx, func() error {
				cur, err := t.opts.Store.GetRun(ctx, r.ID)
				if err != nil {
					return err
				}
				if aborted = cur.RequestAbort(reason, message); !aborted {
					return nil
				}
				_, err = t.opts.Store.UpdateRun(ctx, cur)
				return err
			})
			if err != nil {
				return fmt.Errorf("abort run %d: %w", r.ID, err)
			}
			if aborted {
				out.Aborted = append(out.Aborted, r.ID)
			}
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// once posts a comment on a pull request exactly once per key, however
// often the triggering event is delivered and across crashes: the claim is
// stored before posting, and a claim found pending (a crash between claim
// and post) is checked against the comments, which carry the key in a
// hidden marker.
func (t *Trigger) once(ctx context.Context, key, repo string, number int, body string) (posted bool, err error) {
	st, err := t.opts.Store.ClaimEffect(ctx, key)
	if err != nil {
		return false, err
	}
	marker := fmt.Sprintf("<!-- lockstep:%s -->", key)
	switch st {
	case store.EffectDone:
		return false, nil
	case store.EffectPending:
		comments, err := t.opts.Forge.ListComments(ctx, repo, number)
		if err != nil {
			return false, fmt.Errorf("look for comment %s: %w", key, err)
		}
		if slices.ContainsFunc(comments, func(c forge.Comment) bool { return strings.Contains(c.Body, marker) }) {
			return false, t.opts.Store.CompleteEffect(ctx, key)
		}
	}
	if err := t.opts.Forge.CreateComment(ctx, repo, number, body+"\n\n"+marker); err != nil {
		if rerr := t.opts.Store.ReleaseEffect(ctx, key); rerr != nil {
			t.log.Error("release effect", "key", key, "err", rerr)
		}
		return false, fmt.Errorf("comment on %s#%d: %w", repo, number, err)
	}
	return true, t.opts.Store.CompleteEffect(ctx, key)
}

// jobList names the presubmits of rc that run against branch, for replies.
func jobList(rc *config.Repo, branch string) string {
	var required, optional []string
	for _, j := range rc.Presubmits {
		if !j.RunsAgainstBranch(branch) {
			continue
		}
		if j.Optional {
			optional = append(optional, "`"+j.Name+"`")
		} else {
			required = append(required, "`"+j.Name+"`")
		}
	}
	var b strings.Builder
	if len(required) == 0 && len(optional) == 0 {
		fmt.Fprintf(&b, "No job runs against branch `%s`.", branch)
		return b.String()
	}
	if len(required) > 0 {
		fmt.Fprintf(&b, "Required jobs for `%s`: %s.", branch, strings.Join(required, ", "))
	}
	if len(optional) > 0 {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Optional jobs: %s.", strings.Join(optional, ", "))
	}
	return b.String()
}

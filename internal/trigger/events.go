package trigger

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/command"
	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

const welcomeText = "Thanks for your pull request. Its author is not yet trusted to run code on lockstep, " +
	"so no job runs until a trusted member of the project checks the change and comments `/ok-to-test` " +
	"(or adds the `ok-to-test` label).\n\nOnce it is trusted, `/retest` re-runs failed jobs and `/test JOB` runs one job."

const draftText = "This pull request is a draft, so lockstep runs no jobs on it. Mark it ready for review to start them, " +
	"or comment `/test JOB` to run one job now."

// pullRequest handles pull_request events (COMMANDS.md rules 11–15).
func (t *Trigger) pullRequest(ctx context.Context, ev *github.PullRequestEvent, out *store.Outcome) error {
	repo := ev.GetRepo().GetFullName()
	cfg, rc := t.repoConfig(repo, out)
	if rc == nil {
		return nil
	}
	pr := ev.GetPullRequest()
	out.Pull = pr.GetNumber()
	action := ev.GetAction()
	switch action {
	case "opened", "reopened", "ready_for_review", "synchronize", "closed", "converted_to_draft", "labeled":
	case "edited":
		if ev.GetChanges().GetBase() == nil {
			out.Ignored = "an edit that does not change the base branch starts nothing"
			return nil
		}
	default:
		out.Ignored = fmt.Sprintf("action %q starts nothing", action)
		return nil
	}
	if action == "labeled" {
		if name := ev.GetLabel().GetName(); name != LabelOKToTest {
			out.Ignored = fmt.Sprintf("label %q starts nothing", name)
			return nil
		}
		if isBot(ev.GetSender().GetLogin(), t.botLogin(ctx)) {
			out.Ignored = "ok-to-test was added by lockstep itself, for a comment that started the runs"
			return nil
		}
	}

	defer t.lockPull(repo, out.Pull)()
	p, current, err := t.observe(ctx, pullFromEvent(repo, pr))
	if err != nil {
		return err
	}
	if !current {
		out.Stale = true
		out.Ignored = fmt.Sprintf("the event is about head %s, but the pull request's head is now %s", short(pr.GetHead().GetSHA()), short(p.HeadSHA))
		return nil
	}
	switch action {
	case "closed":
		if p.State != "closed" {
			out.Stale = true
			out.Ignored = "the pull request was reopened since"
			return nil
		}
		return t.abortRuns(ctx, repo, p.Number, func(*run.Run) bool { return true }, run.ReasonPullClosed, "the pull request was closed", out)
	case "converted_to_draft":
		if !p.Draft {
			out.Stale = true
			out.Ignored = "the pull request was marked ready for review since"
			return nil
		}
		return t.abortRuns(ctx, repo, p.Number, func(r *run.Run) bool { return !t.runsOnDrafts(rc, r.Spec.Job) }, run.ReasonPullDraft, "the pull request became a draft", out)
	case "synchronize", "edited":
		err := t.abortRuns(ctx, repo, p.Number, func(r *run.Run) bool {
			return r.Spec.Refs.HeadSHA != p.HeadSHA || r.Spec.Refs.BaseRef != p.BaseRef
		}, run.ReasonSuperseded, fmt.Sprintf("superseded by head %s on %s", short(p.HeadSHA), p.BaseRef), out)
		if err != nil {
			return err
		}
	}
	if p.State != "open" {
		out.Ignored = "the pull request is closed"
		return nil
	}
	if p.Mergeable != nil && !*p.Mergeable {
		out.Ignored = "GitHub reports the pull request as not mergeable"
		return nil
	}
	trusted, err := t.pullTrusted(ctx, cfg, p)
	if err != nil {
		return err
	}
	if !trusted {
		if action != "opened" {
			// Only the opening of a pull request is welcomed (as Prow does):
			// a push, a reopening or a new base does not make the author any
			// more trusted, and a maintainer may have taken the label off.
			out.Ignored = fmt.Sprintf("author %s is not trusted: waiting for a trusted /ok-to-test", p.Author)
			return nil
		}
		return t.welcome(ctx, p, out)
	}
	if err := t.dropStaleNeedsOKToTest(ctx, p, action == "labeled", out); err != nil {
		return err
	}
	jobs, err := t.automaticSet(ctx, rc, p)
	if err != nil {
		return err
	}
	if p.Draft && len(jobs) == 0 {
		if action == "opened" {
			if posted, err := t.once(ctx, fmt.Sprintf("draft/%s#%d", repo, p.Number), repo, p.Number, draftText); err != nil {
				return err
			} else if posted {
				out.Notes = append(out.Notes, "commented that drafts are skipped")
			}
		}
		out.Ignored = "drafts are skipped"
		return nil
	}
	if len(jobs) == 0 {
		out.Ignored = "no job's conditions match this pull request"
		return nil
	}
	return t.createRuns(ctx, rc, p, autoPlan(p, jobs), run.CauseEvent, ev.GetSender().GetLogin(), out)
}

func (t *Trigger) runsOnDrafts(rc *config.Repo, job string) bool {
	j, ok := rc.Presubmit(job)
	return ok && j.RunOnDrafts
}

// welcome labels an untrusted pull request needs-ok-to-test and posts the
// welcome comment, each once in the pull request's life: a redelivered
// opened event never puts back a label a maintainer took off.
func (t *Trigger) welcome(ctx context.Context, p *store.PullState, out *store.Outcome) error {
	out.Ignored = fmt.Sprintf("author %s is not trusted: waiting for a trusted /ok-to-test", p.Author)
	key := fmt.Sprintf("label/%s/%s#%d", LabelNeedsOKToTest, p.Repo, p.Number)
	st, err := t.opts.Store.ClaimEffect(ctx, key)
	if err != nil {
		return err
	}
	if st != store.EffectDone {
		if !slices.Contains(p.Labels, LabelNeedsOKToTest) {
			if err := t.opts.Forge.AddLabel(ctx, p.Repo, p.Number, LabelNeedsOKToTest); err != nil {
				if rerr := t.opts.Store.ReleaseEffect(ctx, key); rerr != nil {
					t.log.Error("release effect", "key", key, "err", rerr)
				}
				return err
			}
			if err := t.setLabels(ctx, p.Repo, p.Number, LabelNeedsOKToTest, ""); err != nil {
				return err
			}
			out.Notes = append(out.Notes, "labeled needs-ok-to-test")
		}
		if err := t.opts.Store.CompleteEffect(ctx, key); err != nil {
			return err
		}
	}
	posted, err := t.once(ctx, fmt.Sprintf("welcome/%s#%d", p.Repo, p.Number), p.Repo, p.Number, welcomeText)
	if posted {
		out.Notes = append(out.Notes, "posted the welcome comment")
	}
	return err
}

// dropStaleNeedsOKToTest removes needs-ok-to-test from a trusted pull
// request that also carries ok-to-test (or, with labeled, was just given
// it), as Prow does when it acts on the pull request.
func (t *Trigger) dropStaleNeedsOKToTest(ctx context.Context, p *store.PullState, labeled bool, out *store.Outcome) error {
	if !slices.Contains(p.Labels, LabelNeedsOKToTest) || !(labeled || slices.Contains(p.Labels, LabelOKToTest)) {
		return nil
	}
	if err := t.opts.Forge.RemoveLabel(ctx, p.Repo, p.Number, LabelNeedsOKToTest); err != nil {
		return err
	}
	if err := t.setLabels(ctx, p.Repo, p.Number, "", LabelNeedsOKToTest); err != nil {
		return err
	}
	p.Labels = slices.DeleteFunc(slices.Clone(p.Labels), func(l string) bool { return l == LabelNeedsOKToTest })
	out.Notes = append(out.Notes, "removed the stale needs-ok-to-test")
	return nil
}

// issueComment handles chat commands (COMMANDS.md rules 3–10).
func (t *Trigger) issueComment(ctx context.Context, ev *github.IssueCommentEvent, out *store.Outcome) error {
	repo := ev.GetRepo().GetFullName()
	cfg, rc := t.repoConfig(repo, out)
	if rc == nil {
		return nil
	}
	out.Pull = ev.GetIssue().GetNumber()
	commenter := ev.GetComment().GetUser().GetLogin()
	switch {
	case ev.GetAction() != "created":
		out.Ignored = fmt.Sprintf("comment %s: only new comments carry commands", ev.GetAction())
		return nil
	case !ev.GetIssue().IsPullRequest():
		out.Ignored = "a comment on an issue, not a pull request"
		return nil
	case ev.GetIssue().GetState() != "open":
		out.Ignored = "the pull request is closed"
		return nil
	case isBot(commenter, t.botLogin(ctx)):
		out.Ignored = "lockstep's own comment"
		return nil
	}
	req := command.Parse(ev.GetComment().GetBody())
	if req.Empty() {
		out.Ignored = "no command"
		return nil
	}
	commentID := ev.GetComment().GetID()
	request := "c" + strconv.FormatInt(commentID, 10)

	defer t.lockPull(repo, out.Pull)()
	pull, err := t.opts.Forge.GetPull(ctx, repo, out.Pull)
	if err != nil {
		return err
	}
	p, _, err := t.observe(ctx, pullState(pull))
	if err != nil {
		return err
	}
	if p.State != "open" {
		out.Ignored = "the pull request is closed"
		return nil
	}
	commenterTrusted, err := t.userTrusted(ctx, cfg, repo, commenter)
	if err != nil {
		return err
	}
	prTrusted, err := t.pullTrusted(ctx, cfg, p)
	if err != nil {
		return err
	}

	var replies []string
	replies = append(replies, req.Problems...)
	// help is set when a reply should list the jobs one can ask for.
	help := len(req.Problems) > 0
	var plan []planned
	if req.OKToTest {
		if !commenterTrusted {
			replies = append(replies, fmt.Sprintf("@%s: only trusted users can use `/ok-to-test`.", commenter))
		} else {
			if err := t.okToTest(ctx, p, out); err != nil {
				return err
			}
			prTrusted = true
			jobs, err := t.automaticSet(ctx, rc, p)
			if err != nil {
				return err
			}
			plan = append(plan, autoPlan(p, jobs)...)
		}
	}
	if req.TestAll || len(req.Tests) > 0 || req.Retest || req.RetestRequired || req.TestManualRequired {
		if !commenterTrusted && !prTrusted {
			replies = append(replies, fmt.Sprintf("@%s: this pull request needs a trusted user's `/ok-to-test` before tests can run.", commenter))
		} else {
			if !req.OKToTest {
				if err := t.dropStaleNeedsOKToTest(ctx, p, false, out); err != nil {
					return err
				}
			}
			jobs, more, list, err := t.requestedJobs(ctx, rc, p, req, request)
			if err != nil {
				return err
			}
			replies = append(replies, more...)
			help = help || list
			plan = append(plan, requestPlan(p, jobs, request)...)
		}
	}
	if help {
		replies = append(replies, jobList(rc, p.BaseRef))
	}
	if err := t.createRuns(ctx, rc, p, plan, run.CauseCommand, commenter, out); err != nil {
		return err
	}
	if len(plan) == 0 && out.Ignored == "" {
		out.Ignored = "the commands start no job"
	}
	if len(replies) > 0 {
		body := strings.Join(replies, "\n\n")
		posted, err := t.once(ctx, fmt.Sprintf("reply/%s/%d", repo, commentID), repo, p.Number, body)
		if err != nil {
			return err
		}
		if posted {
			out.Notes = append(out.Notes, "replied to comment "+strconv.FormatInt(commentID, 10))
		}
	}
	return nil
}

// okToTest marks a pull request trusted: ok-to-test on, needs-ok-to-test
// off.
func (t *Trigger) okToTest(ctx context.Context, p *store.PullState, out *store.Outcome) error {
	has := map[string]bool{}
	for _, l := range p.Labels {
		has[l] = true
	}
	if !has[LabelOKToTest] {
		if err := t.opts.Forge.AddLabel(ctx, p.Repo, p.Number, LabelOKToTest); err != nil {
			return err
		}
		out.Notes = append(out.Notes, "labeled ok-to-test")
	}
	if has[LabelNeedsOKToTest] {
		if err := t.opts.Forge.RemoveLabel(ctx, p.Repo, p.Number, LabelNeedsOKToTest); err != nil {
			return err
		}
		out.Notes = append(out.Notes, "removed needs-ok-to-test")
	}
	if err := t.setLabels(ctx, p.Repo, p.Number, LabelOKToTest, LabelNeedsOKToTest); err != nil {
		return err
	}
	p.Labels = append(p.Labels, LabelOKToTest)
	return nil
}

// requestedJobs returns the jobs /test, /retest, /retest-required and
// /test-manual-required ask for, the replies owed (unknown jobs, an empty
// set), and whether those replies should list the jobs.
func (t *Trigger) requestedJobs(ctx context.Context, rc *config.Repo, p *store.PullState, req command.Request, request string) ([]config.Presubmit, []string, bool, error) {
	var jobs []config.Presubmit
	var replies []string
	help := false
	if req.TestAll {
		set, err := t.automaticSet(ctx, rc, p)
		if err != nil {
			return nil, nil, false, err
		}
		if len(set) == 0 {
			replies = append(replies, "`/test all` starts no job here: no job's conditions match this pull request.")
			help = true
		}
		jobs = append(jobs, set...)
	}
	var unknown []string
	for _, name := range req.Tests {
		job, ok := rc.Presubmit(name)
		switch {
		case !ok:
			unknown = append(unknown, "`"+name+"`")
		case !job.RunsAgainstBranch(p.BaseRef):
			replies = append(replies, fmt.Sprintf("Job `%s` does not run against branch `%s`.", name, p.BaseRef))
			help = true
		default:
			jobs = append(jobs, job)
		}
	}
	if len(unknown) > 0 {
		replies = append(replies, fmt.Sprintf("No job is called %s.", strings.Join(unknown, ", ")))
		help = true
	}
	if req.Retest || req.RetestRequired {
		newest, err := t.headRuns(ctx, p, request)
		if err != nil {
			return nil, nil, false, err
		}
		set, err := t.retestSet(ctx, rc, p, newest, !req.Retest)
		if err != nil {
			return nil, nil, false, err
		}
		jobs = append(jobs, set...)
	}
	if req.TestManualRequired {
		newest, err := t.headRuns(ctx, p, request)
		if err != nil {
			return nil, nil, false, err
		}
		set := manualRequiredSet(rc, p, newest)
		if len(set) == 0 {
			replies = append(replies, "`/test-manual-required` starts no job here: every required job that does not start by itself already has a run on this head.")
			help = true
		}
		jobs = append(jobs, set...)
	}
	return jobs, replies, help, nil
}

// headRuns returns the state of the newest run of each presubmit on p's
// head, leaving out the runs that request itself created, so that a
// redelivered request chooses the same jobs as the first delivery.
func (t *Trigger) headRuns(ctx context.Context, p *store.PullState, request string) (map[string]run.State, error) {
	newest := map[string]run.State{}
	opts := store.ListOptions{Repo: p.Repo, Pull: p.Number, SHA: p.HeadSHA, Type: run.Presubmit, Limit: store.MaxLimit}
	for {
		page, err := t.opts.Store.ListRuns(ctx, opts)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Runs {
			if r.Spec.TriggerKey == run.RequestKey(p.Repo, p.Number, p.HeadSHA, r.Spec.Job, request) {
				continue
			}
			if _, ok := newest[r.Spec.Job]; !ok {
				newest[r.Spec.Job] = r.Status.State // pages are newest first
			}
		}
		if page.Continue == "" {
			return newest, nil
		}
		opts.Continue = page.Continue
	}
}

// retestSet returns the jobs /retest starts (rule 9): those whose newest
// run on the head failed or errored, and automatic jobs with no run
// there; with requiredOnly (/retest-required), only the required ones.
func (t *Trigger) retestSet(ctx context.Context, rc *config.Repo, p *store.PullState, newest map[string]run.State, requiredOnly bool) ([]config.Presubmit, error) {
	var jobs []config.Presubmit
	for _, j := range rc.Presubmits {
		if requiredOnly && j.Optional {
			continue
		}
		if s, ok := newest[j.Name]; ok && (s == run.Failure || s == run.Error) && j.RunsAgainstBranch(p.BaseRef) {
			jobs = append(jobs, j)
		}
	}
	auto, err := t.automaticSet(ctx, rc, p)
	if err != nil {
		return nil, err
	}
	for _, j := range auto {
		if requiredOnly && j.Optional {
			continue
		}
		if _, ok := newest[j.Name]; !ok {
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

// manualRequiredSet returns the jobs /test-manual-required starts: the
// required jobs for p's base branch that only a command starts (no
// always_run, run_if_changed or skip_if_only_changed) and that have no run
// on p's head yet.
func manualRequiredSet(rc *config.Repo, p *store.PullState, newest map[string]run.State) []config.Presubmit {
	var jobs []config.Presubmit
	for _, j := range rc.Presubmits {
		if _, ran := newest[j.Name]; !ran && !j.Optional && j.ManualOnly() && j.RunsAgainstBranch(p.BaseRef) {
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// push starts postsubmits (rule 16).
func (t *Trigger) push(ctx context.Context, ev *github.PushEvent, out *store.Outcome) error {
	repo := ev.GetRepo().GetFullName()
	_, rc := t.repoConfig(repo, out)
	if rc == nil {
		return nil
	}
	after := ev.GetAfter()
	branch, isBranch := strings.CutPrefix(ev.GetRef(), "refs/heads/")
	switch {
	case ev.GetDeleted() || strings.Trim(after, "0") == "":
		out.Ignored = "a branch deletion starts nothing"
		return nil
	case !isBranch:
		out.Ignored = fmt.Sprintf("%s is not a branch", ev.GetRef())
		return nil
	}
	changes := func() ([]string, error) {
		var files []string
		for _, c := range ev.Commits {
			files = append(files, c.Added...)
			files = append(files, c.Modified...)
			files = append(files, c.Removed...)
		}
		return files, nil
	}
	for _, job := range rc.Postsubmits {
		ok, err := job.ShouldRun(branch, changes)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		r := &run.Run{Spec: run.Spec{
			Job: job.Name, Type: run.Postsubmit,
			Refs:  run.Refs{Repo: repo, CloneURL: rc.EffectiveCloneURL(repo), BaseRef: branch, BaseSHA: after},
			Cause: run.CauseEvent, Requester: ev.GetPusher().GetName(),
			Context: job.StatusContext(), Script: job.Run, Env: job.Env, Timeout: job.EffectiveTimeout(),
			Secrets: job.Secrets, NoNetwork: job.Sandbox.NoNetwork(),
			TriggerKey: run.PostsubmitKey(repo, after, job.Name),
			Executor:   job.Executor, ExecutorConfig: job.ExecutorConfig(t.opts.Config().GitLab),
		}}
		created, err := t.opts.Store.CreateRun(ctx, r)
		switch {
		case err == nil:
			out.Runs = append(out.Runs, created.ID)
		case created != nil:
			out.Existing = append(out.Existing, created.ID)
		default:
			return fmt.Errorf("create run of %s: %w", job.Name, err)
		}
	}
	if len(out.Runs)+len(out.Existing) == 0 {
		out.Ignored = fmt.Sprintf("no postsubmit runs on a push to %s", branch)
	}
	return nil
}

// checkRun handles GitHub's "Re-run" button on one check: the job whose
// context is the check's name, keyed by the delivery.
func (t *Trigger) checkRun(ctx context.Context, delivery string, ev *github.CheckRunEvent, out *store.Outcome) error {
	cr := ev.GetCheckRun()
	if ev.GetAction() != "rerequested" {
		out.Ignored = fmt.Sprintf("check_run %s starts nothing", ev.GetAction())
		return nil
	}
	return t.rerequest(ctx, delivery, ev.GetRepo().GetFullName(), cr.PullRequests, cr.GetHeadSHA(), cr.GetName(), ev.GetSender().GetLogin(), out)
}

// checkSuite handles "Re-run all checks": /retest, keyed by the delivery.
func (t *Trigger) checkSuite(ctx context.Context, delivery string, ev *github.CheckSuiteEvent, out *store.Outcome) error {
	cs := ev.GetCheckSuite()
	if ev.GetAction() != "rerequested" {
		out.Ignored = fmt.Sprintf("check_suite %s starts nothing", ev.GetAction())
		return nil
	}
	return t.rerequest(ctx, delivery, ev.GetRepo().GetFullName(), cs.PullRequests, cs.GetHeadSHA(), "", ev.GetSender().GetLogin(), out)
}

// rerequest re-runs the job with context name (all failed jobs, when name
// is empty) on the pull request the check belongs to, if sha is its head.
func (t *Trigger) rerequest(ctx context.Context, delivery, repo string, pulls []*github.PullRequest, sha, name, sender string, out *store.Outcome) error {
	cfg, rc := t.repoConfig(repo, out)
	if rc == nil {
		return nil
	}
	if len(pulls) == 0 {
		out.Ignored = "the check belongs to no pull request"
		return nil
	}
	out.Pull = pulls[0].GetNumber()
	defer t.lockPull(repo, out.Pull)()
	pull, err := t.opts.Forge.GetPull(ctx, repo, out.Pull)
	if err != nil {
		return err
	}
	p, _, err := t.observe(ctx, pullState(pull))
	if err != nil {
		return err
	}
	if p.HeadSHA != sha {
		out.Stale = true
		out.Ignored = fmt.Sprintf("the check is on %s, but the pull request's head is now %s", short(sha), short(p.HeadSHA))
		return nil
	}
	trusted, err := t.userTrusted(ctx, cfg, repo, sender)
	if err != nil {
		return err
	}
	if prTrusted, err := t.pullTrusted(ctx, cfg, p); err != nil {
		return err
	} else if !trusted && !prTrusted {
		out.Ignored = fmt.Sprintf("%s may not re-run jobs on an untrusted pull request", sender)
		return nil
	}
	var jobs []config.Presubmit
	if name == "" {
		newest, err := t.headRuns(ctx, p, "d"+delivery)
		if err != nil {
			return err
		}
		if jobs, err = t.retestSet(ctx, rc, p, newest, false); err != nil {
			return err
		}
	} else {
		for _, j := range rc.Presubmits {
			if j.StatusContext() == name {
				jobs = append(jobs, j)
			}
		}
		if len(jobs) == 0 {
			out.Ignored = fmt.Sprintf("no job reports as %q", name)
			return nil
		}
	}
	return t.createRuns(ctx, rc, p, requestPlan(p, jobs, "d"+delivery), run.CauseRerun, sender, out)
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

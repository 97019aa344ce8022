package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// ErrJobNotFound is returned (wrapped) by FindJob when no repository has
// a job of that name.
var ErrJobNotFound = errors.New("job not found")

// ErrAmbiguousJob is returned (wrapped) by FindJob when several
// repositories have a job of that name.
var ErrAmbiguousJob = errors.New("job name is ambiguous")

// Job returns the job called name in the repository repo ("owner/name").
func (c *Config) Job(repo, name string) (Job, bool) {
	r, ok := c.Repos[repo]
	if !ok || r == nil {
		return Job{}, false
	}
	for _, j := range r.jobs(repo) {
		if j.Name == name {
			return j, true
		}
	}
	return Job{}, false
}

// Jobs returns every job of c: repositories in name order, and within
// one, presubmits, postsubmits and periodics in the order of the file.
func (c *Config) Jobs() []Job {
	var out []Job
	for _, name := range slices.Sorted(maps.Keys(c.Repos)) {
		out = append(out, c.Repos[name].jobs(name)...)
	}
	return out
}

// FindJob returns the jobs called name across every repository, in
// repository order; it is what `lockstep run JOB` uses when no repository
// is given. When no repository has such a job the error wraps
// ErrJobNotFound and suggests a close name; when several have one, FindJob
// returns them all with an error wrapping ErrAmbiguousJob that lists
// them, and the caller must choose a repository.
func (c *Config) FindJob(name string) ([]Job, error) {
	var found []Job
	var names []string
	for _, j := range c.Jobs() {
		if j.Name == name {
			found = append(found, j)
		}
		names = append(names, j.Name)
	}
	switch len(found) {
	case 0:
		slices.Sort(names)
		names = slices.Compact(names)
		if s := suggest(name, names); s != "" {
			return nil, fmt.Errorf("%w: no repository has a job %q; did you mean %q?", ErrJobNotFound, name, s)
		}
		return nil, fmt.Errorf("%w: no repository has a job %q", ErrJobNotFound, name)
	case 1:
		return found, nil
	}
	repos := make([]string, len(found))
	for i, j := range found {
		repos[i] = j.Repo
	}
	return found, fmt.Errorf("%w: %d repositories have a job %q (%s); choose one",
		ErrAmbiguousJob, len(found), name, strings.Join(repos, ", "))
}

// jobs returns r's jobs; name is r's "owner/name".
func (r *Repo) jobs(name string) []Job {
	if r == nil {
		return nil
	}
	var out []Job
	for _, j := range r.Presubmits {
		out = append(out, Job{JobBase: j.JobBase, Type: run.Presubmit, Repo: name})
	}
	for _, j := range r.Postsubmits {
		out = append(out, Job{JobBase: j.JobBase, Type: run.Postsubmit, Repo: name})
	}
	for _, j := range r.Periodics {
		out = append(out, Job{JobBase: j.JobBase, Type: run.Periodic, Repo: name})
	}
	return out
}

// Presubmit returns r's presubmit called name.
func (r *Repo) Presubmit(name string) (Presubmit, bool) {
	if r == nil {
		return Presubmit{}, false
	}
	return findJob(r.Presubmits, name)
}

// Postsubmit returns r's postsubmit called name.
func (r *Repo) Postsubmit(name string) (Postsubmit, bool) {
	if r == nil {
		return Postsubmit{}, false
	}
	return findJob(r.Postsubmits, name)
}

// Periodic returns r's periodic called name.
func (r *Repo) Periodic(name string) (Periodic, bool) {
	if r == nil {
		return Periodic{}, false
	}
	return findJob(r.Periodics, name)
}

// findJob returns the job of jobs called name.
func findJob[J interface{ jobName() string }](jobs []J, name string) (J, bool) {
	for _, j := range jobs {
		if j.jobName() == name {
			return j, true
		}
	}
	var zero J
	return zero, false
}

func (j JobBase) jobName() string { return j.Name }

// EffectiveCloneURL returns where executors fetch the repository name
// ("owner/name"): CloneURL, or https://github.com/OWNER/NAME.git when it is
// empty. r may be nil.
func (r *Repo) EffectiveCloneURL(name string) string {
	if r != nil && r.CloneURL != "" {
		return r.CloneURL
	}
	return "https://github.com/" + name + ".git"
}

// EffectiveTimeout returns Timeout, or DefaultTimeout when it is zero.
func (j JobBase) EffectiveTimeout() time.Duration {
	if j.Timeout.Duration <= 0 {
		return DefaultTimeout
	}
	return j.Timeout.Duration
}

// ChangedFiles returns the paths a pull request or a push changes. The
// presubmit and postsubmit ShouldRun methods call it only when their
// answer depends on the files; a caller deciding for several jobs wraps
// its lookup with sync.OnceValues so the files are fetched once.
type ChangedFiles func() ([]string, error)

// branchRegexps is a Brancher compiled: the alternation of its Branches
// and of its SkipBranches, each nil when the list is empty.
type branchRegexps struct {
	branches, skip *regexp.Regexp
}

// compileBrancher compiles branches and skip, or returns nil if one of
// the expressions does not compile.
func compileBrancher(branches, skip []string) *branchRegexps {
	var out branchRegexps
	var err error
	if out.branches, err = alternation(branches); err != nil {
		return nil
	}
	if out.skip, err = alternation(skip); err != nil {
		return nil
	}
	return &out
}

// alternation compiles exprs into one expression matching what any of
// them matches, or returns nil for no expressions. Each is grouped so
// that flags such as (?i) stay inside it.
func alternation(exprs []string) (*regexp.Regexp, error) {
	if len(exprs) == 0 {
		return nil, nil
	}
	parts := make([]string, len(exprs))
	for i, e := range exprs {
		parts[i] = "(?:" + e + ")"
	}
	return regexp.Compile(strings.Join(parts, "|"))
}

// RunsAgainstAllBranches reports whether b sets no branch filter.
func (b Brancher) RunsAgainstAllBranches() bool {
	return len(b.Branches) == 0 && len(b.SkipBranches) == 0
}

// RunsAgainstBranch reports whether b admits the base branch branch (a
// name without refs/heads/), as Prow does: with no filter every branch;
// otherwise not if a skip_branches expression matches, else if branches
// is empty or one of its expressions matches. Expressions are unanchored:
// "main" also matches "maintenance", "^main$" only main. On a Config that
// was not validated, an expression that does not compile admits nothing.
func (b Brancher) RunsAgainstBranch(branch string) bool {
	if b.RunsAgainstAllBranches() {
		return true
	}
	re := b.re
	if re == nil {
		if re = compileBrancher(b.Branches, b.SkipBranches); re == nil {
			return false
		}
	}
	if re.skip != nil && re.skip.MatchString(branch) {
		return false
	}
	return re.branches == nil || re.branches.MatchString(branch)
}

// StatusContext returns the status context of p's runs: Context, or the
// job's name.
func (p Presubmit) StatusContext() string {
	if p.Context != "" {
		return p.Context
	}
	return p.Name
}

// ManualOnly reports whether p is never in the automatic set: it has none
// of always_run, run_if_changed and skip_if_only_changed, so only
// `/test NAME` starts it.
func (p Presubmit) ManualOnly() bool {
	return !p.AlwaysRun && p.RunIfChanged == "" && p.SkipIfOnlyChanged == ""
}

// NeedsChangedFiles reports whether ShouldRun needs the changed files to
// decide: p is not always_run and has run_if_changed or
// skip_if_only_changed.
func (p Presubmit) NeedsChangedFiles() bool {
	return !p.AlwaysRun && (p.RunIfChanged != "" || p.SkipIfOnlyChanged != "")
}

// RunsAgainstChanges reports whether files put p in the automatic set
// through its file filter: a file matches run_if_changed, or a file does
// not match skip_if_only_changed (so no files never do). It is false for
// a presubmit with neither filter, always_run or not.
func (p Presubmit) RunsAgainstChanges(files []string) bool {
	re, err := p.changesRegexp()
	if err != nil || re == nil {
		return false
	}
	skip := p.RunIfChanged == ""
	for _, f := range files {
		if re.MatchString(f) != skip {
			return true
		}
	}
	return false
}

// ShouldRun reports whether p is in the automatic set of a pull request
// whose base branch is branch (COMMANDS.md rule 7, Prow's semantics):
// the branch filter admits branch, and p is always_run or its file filter
// is satisfied by changes (see RunsAgainstChanges). A manual-only job is
// never in the set. changes is called only when NeedsChangedFiles; its
// error is returned. For `/test NAME`, which ignores file filters, use
// RunsAgainstBranch alone.
func (p Presubmit) ShouldRun(branch string, changes ChangedFiles) (bool, error) {
	if !p.RunsAgainstBranch(branch) {
		return false, nil
	}
	if p.AlwaysRun {
		return true, nil
	}
	if !p.NeedsChangedFiles() {
		return false, nil
	}
	if _, err := p.changesRegexp(); err != nil {
		return false, fmt.Errorf("job %s: %w", p.Name, err)
	}
	if changes == nil {
		return false, fmt.Errorf("job %s: the changed files are needed to decide", p.Name)
	}
	files, err := changes()
	if err != nil {
		return false, fmt.Errorf("job %s: list changed files: %w", p.Name, err)
	}
	return p.RunsAgainstChanges(files), nil
}

// changesRegexp returns p's file filter compiled, or nil when it has none.
func (p Presubmit) changesRegexp() (*regexp.Regexp, error) {
	if p.changes != nil {
		return p.changes, nil
	}
	expr := p.RunIfChanged
	if expr == "" {
		expr = p.SkipIfOnlyChanged
	}
	if expr == "" {
		return nil, nil
	}
	return regexp.Compile(expr)
}

// StatusContext returns the status context of p's runs: Context, or the
// job's name.
func (p Postsubmit) StatusContext() string {
	if p.Context != "" {
		return p.Context
	}
	return p.Name
}

// ShouldRun reports whether a push to branch (without refs/heads/) runs p
// (COMMANDS.md rule 16): the branch filter admits branch, and p has no
// run_if_changed or one of the pushed files (added, modified or removed)
// matches it. changes is called only when p has run_if_changed.
func (p Postsubmit) ShouldRun(branch string, changes ChangedFiles) (bool, error) {
	if !p.RunsAgainstBranch(branch) {
		return false, nil
	}
	if p.RunIfChanged == "" {
		return true, nil
	}
	re := p.changes
	if re == nil {
		var err error
		if re, err = regexp.Compile(p.RunIfChanged); err != nil {
			return false, fmt.Errorf("job %s: %w", p.Name, err)
		}
	}
	if changes == nil {
		return false, fmt.Errorf("job %s: the changed files are needed to decide", p.Name)
	}
	files, err := changes()
	if err != nil {
		return false, fmt.Errorf("job %s: list changed files: %w", p.Name, err)
	}
	return slices.ContainsFunc(files, re.MatchString), nil
}

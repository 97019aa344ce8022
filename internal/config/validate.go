package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

var (
	jobNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	ownerRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)
	repoNameRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	cronTZLabel = regexp.MustCompile(`^\s*(CRON_TZ|TZ)=`)
)

// Validate checks c and returns every problem at once, joined with
// errors.Join, each an *Error whose message reads "PATH: problem", as in
//
//	repos["acme/widget"].presubmits[2].timeout: invalid duration "3x"
//
// Validate also compiles the regular expressions and schedules of c's
// jobs and keeps them in c, so the accessors (RunsAgainstBranch,
// ShouldRun, Schedule…) need not. Call it before sharing c: afterwards a
// valid *Config is read-only and safe for concurrent use.
func (c *Config) Validate() error {
	var p problemList
	for _, name := range slices.Sorted(maps.Keys(c.Repos)) {
		r := c.Repos[name]
		path := keyPath("repos", name)
		if msg := repoKeyProblem(name); msg != "" {
			p.addf(path, "%s", msg)
		}
		if r == nil {
			continue
		}
		r.validate(path, &p)
	}
	c.validateForge(&p)
	c.validateGitLab(&p)
	c.validateKubernetes(&p)
	c.validateLocal(&p)
	c.validateBuilds(&p)
	return p.err()
}

// repoKeyProblem returns what is wrong with the repository key name, or "".
func repoKeyProblem(name string) string {
	owner, repo, ok := strings.Cut(name, "/")
	if !ok || strings.Contains(repo, "/") {
		return fmt.Sprintf("repository %q must be written \"owner/name\", with one slash", name)
	}
	switch {
	case !ownerRE.MatchString(owner):
		return fmt.Sprintf("invalid owner %q: a GitHub owner has 1 to 39 letters, digits or hyphens and does not start with a hyphen", owner)
	case !repoNameRE.MatchString(repo) || repo == "." || repo == "..":
		return fmt.Sprintf("invalid repository name %q: use 1 to 100 letters, digits, '.', '-' or '_'", repo)
	}
	return ""
}

func (r *Repo) validate(path string, p *problemList) {
	names := map[string]string{}    // job name → path of the job that has it
	contexts := map[string]string{} // status context → path of the job that uses it
	checkName := func(jobPath, name string) {
		if name == "" {
			return
		}
		if first, ok := names[name]; ok {
			p.addf(fieldPath(jobPath, "name"), "duplicate job name %q, also used by %s", name, first)
			return
		}
		names[name] = jobPath
	}
	checkContext := func(jobPath string, rep Reporter, name string) {
		ctx := rep.Context
		if ctx == "" {
			ctx = name
		}
		if ctx == "" {
			return
		}
		if first, ok := contexts[ctx]; ok {
			how := ""
			if rep.Context == "" {
				if names[name] != jobPath {
					return // a duplicate name, already reported
				}
				how = " (the default: the job's name)"
			}
			p.addf(fieldPath(jobPath, "context"), "status context %q%s is already used by %s", ctx, how, first)
			return
		}
		contexts[ctx] = jobPath
	}

	for i := range r.Presubmits {
		j := &r.Presubmits[i]
		jp := indexPath(fieldPath(path, "presubmits"), i)
		j.validate(jp, p)
		checkName(jp, j.Name)
		checkContext(jp, j.Reporter, j.Name)
	}
	for i := range r.Postsubmits {
		j := &r.Postsubmits[i]
		jp := indexPath(fieldPath(path, "postsubmits"), i)
		j.validate(jp, p)
		checkName(jp, j.Name)
		checkContext(jp, j.Reporter, j.Name)
	}
	for i := range r.Periodics {
		j := &r.Periodics[i]
		jp := indexPath(fieldPath(path, "periodics"), i)
		j.validate(jp, p)
		checkName(jp, j.Name)
	}
}

func (j *JobBase) validate(path string, p *problemList) {
	switch {
	case j.Name == "":
		p.addf(fieldPath(path, "name"), "required")
	case !jobNameRE.MatchString(j.Name):
		p.addf(fieldPath(path, "name"), "invalid job name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", j.Name)
	}
	j.validateExecutor(path, p)
	if msg := j.Timeout.problem(); msg != "" {
		p.addf(fieldPath(path, "timeout"), "%s", msg)
	} else if j.Timeout.Duration < 0 {
		p.addf(fieldPath(path, "timeout"), "must not be negative, got %s", j.Timeout)
	}
	if j.MaxConcurrency < 0 {
		p.addf(fieldPath(path, "max_concurrency"), "must not be negative, got %d", j.MaxConcurrency)
	}
	for _, k := range slices.Sorted(maps.Keys(j.Env)) {
		if !envNameRE.MatchString(k) {
			p.addf(keyPath(fieldPath(path, "env"), k), "invalid environment variable name: use letters, digits and '_', not starting with a digit")
		}
	}
	j.validateSecrets(path, p)
}

func (b *Brancher) validate(path string, p *problemList) {
	b.re = nil
	if len(b.Branches) > 0 && len(b.SkipBranches) > 0 {
		p.addf(path, "branches and skip_branches are mutually exclusive; set at most one")
	}
	// Each expression must compile on its own: the alternation of
	// "x)|(y" and nothing else would compile, but mean something else.
	ok := true
	for i, re := range b.Branches {
		ok = compileInto(nil, re, indexPath(fieldPath(path, "branches"), i), p) && ok
	}
	for i, re := range b.SkipBranches {
		ok = compileInto(nil, re, indexPath(fieldPath(path, "skip_branches"), i), p) && ok
	}
	if ok {
		b.re = compileBrancher(b.Branches, b.SkipBranches)
	}
}

func (j *Presubmit) validate(path string, p *problemList) {
	j.JobBase.validate(path, p)
	j.Brancher.validate(path, p)
	j.changes = nil
	var set []string
	if j.AlwaysRun {
		set = append(set, "always_run")
	}
	if j.RunIfChanged != "" {
		set = append(set, "run_if_changed")
		compileInto(&j.changes, j.RunIfChanged, fieldPath(path, "run_if_changed"), p)
	}
	if j.SkipIfOnlyChanged != "" {
		set = append(set, "skip_if_only_changed")
		compileInto(&j.changes, j.SkipIfOnlyChanged, fieldPath(path, "skip_if_only_changed"), p)
	}
	if len(set) > 1 {
		j.changes = nil
		p.addf(path, "always_run, run_if_changed and skip_if_only_changed are mutually exclusive; set at most one, not %s", strings.Join(set, " and "))
	}
}

func (j *Postsubmit) validate(path string, p *problemList) {
	j.JobBase.validate(path, p)
	j.Brancher.validate(path, p)
	j.changes = nil
	if j.RunIfChanged != "" {
		compileInto(&j.changes, j.RunIfChanged, fieldPath(path, "run_if_changed"), p)
	}
}

func (j *Periodic) validate(path string, p *problemList) {
	j.JobBase.validate(path, p)
	j.schedule = nil
	intervalSet := j.Interval.bad || j.Interval.Duration != 0
	switch {
	case intervalSet && j.Cron != "":
		p.addf(path, "interval and cron are mutually exclusive; set exactly one")
	case !intervalSet && j.Cron == "":
		p.addf(path, "a periodic needs a schedule: set interval or cron")
	}
	if msg := j.Interval.problem(); msg != "" {
		p.addf(fieldPath(path, "interval"), "%s", msg)
	} else if j.Interval.Duration < 0 {
		p.addf(fieldPath(path, "interval"), "must be positive, got %s", j.Interval)
	}

	loc := time.UTC
	if j.TimeZone != "" {
		if j.Cron == "" {
			p.addf(fieldPath(path, "time_zone"), "only used with cron")
		} else if l, err := time.LoadLocation(j.TimeZone); err != nil {
			loc = nil
			p.addf(fieldPath(path, "time_zone"), "unknown time zone %q", j.TimeZone)
		} else {
			loc = l
		}
	}
	if j.Cron != "" {
		sched, err := parseCron(j.Cron)
		if err != nil {
			p.addf(fieldPath(path, "cron"), "%v", err)
		} else if loc != nil && !intervalSet {
			sched.Location = loc
			j.schedule = sched
		}
	} else if !j.Interval.bad && j.Interval.Duration > 0 {
		j.schedule = intervalSchedule(j.Interval.Duration)
	}

	switch j.ConcurrencyPolicy {
	case "", ConcurrencyForbid, ConcurrencyAllow, ConcurrencyReplace:
	default:
		p.addf(fieldPath(path, "concurrency_policy"), "must be %s, %s or %s, got %q",
			ConcurrencyForbid, ConcurrencyAllow, ConcurrencyReplace, j.ConcurrencyPolicy)
	}
}

// parseCron parses a standard five-field cron expression (or a descriptor
// such as @daily). Time zones are set with time_zone, and intervals with
// interval, so CRON_TZ= and @every are refused.
func parseCron(spec string) (*cron.SpecSchedule, error) {
	if m := cronTZLabel.FindStringSubmatch(spec); m != nil {
		return nil, fmt.Errorf("invalid cron expression %q: set the time zone with time_zone, not %s=", spec, m[1])
	}
	if strings.HasPrefix(strings.TrimSpace(spec), "@every") {
		return nil, fmt.Errorf("invalid cron expression %q: use interval for a fixed period", spec)
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("invalid cron expression %q: %v", spec, err)
	}
	ss, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("invalid cron expression %q: not a calendar schedule", spec)
	}
	return ss, nil
}

// compileInto compiles expr, storing it in *dst when dst is not nil, or
// reports why it does not compile at path. It reports whether expr
// compiled.
func compileInto(dst **regexp.Regexp, expr, path string, p *problemList) bool {
	re, err := regexp.Compile(expr)
	if err != nil {
		p.addf(path, "%s", regexpProblem(expr, err))
		return false
	}
	if dst != nil {
		*dst = re
	}
	return true
}

func regexpProblem(expr string, err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		if se.Expr != "" && se.Expr != expr {
			return fmt.Sprintf("invalid regular expression %q: %s in %q", expr, se.Code, se.Expr)
		}
		return fmt.Sprintf("invalid regular expression %q: %s", expr, se.Code)
	}
	return fmt.Sprintf("invalid regular expression %q: %v", expr, err)
}

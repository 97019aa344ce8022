// Package config reads lockstep's configuration file: Default, then a
// strict Parse (unknown fields are errors), then Validate, which returns
// every problem at once, each with its path. A Getter holds the current
// configuration and swaps it when the file changes.
package config

import (
	"crypto/sha256"
	"regexp"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// DefaultTimeout is the timeout of a job that does not set one (Prow's
// default for decorated jobs).
const DefaultTimeout = 2 * time.Hour

// Config is lockstep's configuration. Treat a *Config handed out by a
// Getter as read-only: it is shared. Validate fills in compiled regular
// expressions and schedules, kept in unexported fields; compare Configs
// with go-cmp using cmpopts.IgnoreUnexported.
type Config struct {
	// Repos maps "owner/name" to that repository's jobs.
	Repos map[string]*Repo `yaml:"repos"`
	// Markers are named pointers to builds, moved by gate jobs (see
	// Marker).
	Markers []Marker `yaml:"markers"`
	// GitHub says how to reach GitHub; Trust whom to run code for.
	GitHub GitHub `yaml:"github"`
	Trust  Trust  `yaml:"trust"`
	// GitLab says how to reach GitLab, for jobs with executor: gitlab.
	GitLab GitLab `yaml:"gitlab"`
	// Kubernetes says how to reach the cluster, for jobs with executor:
	// kubernetes.
	Kubernetes Kubernetes `yaml:"kubernetes"`
	// ResyncInterval is how often every open pull request is listed again
	// to create the runs lost webhooks should have; default 5m.
	ResyncInterval Duration `yaml:"resync_interval"`
	// BaseURL is lockstep's own address as users reach it, for links in
	// statuses and comments (e.g. https://ci.example.com).
	BaseURL string `yaml:"base_url"`
	// Local configures the local executor: its sandbox, workspaces and
	// the jobs' secrets.
	Local Local `yaml:"local"`

	// digest is the SHA-256 of the bytes Parse read; Watch compares it
	// with the file to tell whether the file changed.
	digest [sha256.Size]byte
	// pos maps a field's path to where Parse found it, so that Load can
	// point at the line of a problem Validate reports.
	pos map[string]position
}

// Repo is one repository and its jobs. Job names are unique within a
// repository, across presubmits, postsubmits and periodics.
type Repo struct {
	// CloneURL is where executors fetch the repository; a URL or a local
	// path. Default: https://github.com/OWNER/NAME.git (EffectiveCloneURL).
	// Load makes a relative local path absolute against the directory of
	// the configuration file.
	CloneURL    string       `yaml:"clone_url"`
	Presubmits  []Presubmit  `yaml:"presubmits"`
	Postsubmits []Postsubmit `yaml:"postsubmits"`
	Periodics   []Periodic   `yaml:"periodics"`
}

// JobBase is what every job has.
type JobBase struct {
	Name string `yaml:"name"`
	// Run is the job's script, executed with sh -e in the checked-out
	// repository; a gitlab job has none.
	Run string `yaml:"run"`
	// Timeout bounds a run's execution; past it the run is aborted.
	// Default DefaultTimeout.
	Timeout Duration `yaml:"timeout"`
	// MaxConcurrency caps how many runs of the job execute at once; zero
	// means no cap.
	MaxConcurrency int `yaml:"max_concurrency"`
	// Env is added to the environment of the job's script (for a gitlab
	// job: to the pipeline's variables).
	Env map[string]string `yaml:"env"`
	// Executor runs the job: local (default), gitlab or kubernetes.
	Executor string `yaml:"executor"`
	// GitLab is the job's pipeline, for executor: gitlab.
	GitLab *GitLabJob `yaml:"gitlab"`
	// Secrets names secrets (files under local.secrets_dir) whose values
	// are added to the environment of trusted runs of the job.
	Secrets []string `yaml:"secrets"`
	// Sandbox adjusts the job's sandbox (network).
	Sandbox *JobSandbox `yaml:"sandbox"`
	// KubeJob holds the Pod of a job with executor: kubernetes.
	KubeJob `yaml:",inline"`
}

// Brancher selects base branches by regular expression, like Prow's
// branches/skip_branches. At most one of the two is set.
type Brancher struct {
	Branches     []string `yaml:"branches"`
	SkipBranches []string `yaml:"skip_branches"`

	// re holds the compiled Branches and SkipBranches, set by Validate.
	re *branchRegexps
}

// Reporter says how a job's runs are shown on the forge.
type Reporter struct {
	// Context is the status context; default the job name.
	Context string `yaml:"context"`
	// SkipReport keeps the job's runs off the forge.
	SkipReport bool `yaml:"skip_report"`
}

// Presubmit is a job run on pull requests.
type Presubmit struct {
	JobBase  `yaml:",inline"`
	Brancher `yaml:",inline"`
	Reporter `yaml:",inline"`
	// AlwaysRun puts the job in the automatic set of every pull request.
	AlwaysRun bool `yaml:"always_run"`
	// RunIfChanged puts the job in the automatic set when a changed file
	// matches this regular expression.
	RunIfChanged string `yaml:"run_if_changed"`
	// SkipIfOnlyChanged puts the job in the automatic set unless every
	// changed file matches this regular expression.
	SkipIfOnlyChanged string `yaml:"skip_if_only_changed"`
	// Optional jobs report but are not required for merging.
	Optional bool `yaml:"optional"`
	// RunOnDrafts runs the job on draft pull requests too.
	RunOnDrafts bool `yaml:"run_on_drafts"`

	// changes is RunIfChanged or SkipIfOnlyChanged compiled, set by
	// Validate.
	changes *regexp.Regexp
}

// Postsubmit is a job run on pushes to branches.
type Postsubmit struct {
	JobBase  `yaml:",inline"`
	Brancher `yaml:",inline"`
	Reporter `yaml:",inline"`
	// RunIfChanged runs the job only when a pushed file matches.
	RunIfChanged string `yaml:"run_if_changed"`
	// ProducesBuild records a build for each successful run that wrote
	// one to $LOCKSTEP_BUILD_FILE, on the pushed branch.
	ProducesBuild bool `yaml:"produces_build"`

	// changes is RunIfChanged compiled, set by Validate.
	changes *regexp.Regexp
}

// Periodic is a job run on a schedule.
type Periodic struct {
	JobBase `yaml:",inline"`
	// Exactly one of Interval and Cron is set. Cron uses robfig/cron's
	// standard five-field syntax, interpreted in TimeZone (default UTC).
	Interval Duration `yaml:"interval"`
	Cron     string   `yaml:"cron"`
	TimeZone string   `yaml:"time_zone"`
	// ConcurrencyPolicy is forbid (default), allow or replace.
	ConcurrencyPolicy string `yaml:"concurrency_policy"`
	// Branch is the branch the job checks out; empty means the
	// repository's default branch.
	Branch string `yaml:"branch"`
	// ProducesBuild records a build of Branch for each successful run
	// that wrote one to $LOCKSTEP_BUILD_FILE.
	ProducesBuild bool `yaml:"produces_build"`
	// Build, if set, names the build each run tests.
	Build *BuildSource `yaml:"build"`

	// schedule is Interval or Cron in TimeZone, set by Validate.
	schedule Schedule
}

// Job is a job found by name: its common part and its type.
type Job struct {
	JobBase
	Type run.Type
	Repo string
}

// Duration is a time.Duration written as a Go duration string ("30m",
// "1h30m"). A string that does not parse is reported by Validate with its
// path.
type Duration struct {
	time.Duration
	raw string // as written, when it did not parse
	bad bool
}

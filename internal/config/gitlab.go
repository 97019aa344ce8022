package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The executors a job can name in `executor:`.
const (
	ExecutorLocal  = "local"
	ExecutorGitLab = "gitlab"
)

// DefaultGitLabURL is GitLab's address when gitlab.url is not set.
const DefaultGitLabURL = "https://gitlab.com"

// Defaults of the gitlab section's intervals.
const (
	DefaultGitLabPollInterval  = time.Minute
	DefaultGitLabTraceInterval = 10 * time.Second
)

// GitLab says how to reach the GitLab instance that runs the pipelines of
// jobs with `executor: gitlab`.
type GitLab struct {
	// URL is the instance's address; default https://gitlab.com.
	URL string `yaml:"url"`
	// TokenFile holds a token with the api scope on the projects.
	TokenFile string `yaml:"token_file"`
	// WebhookTokenFile holds the secret token of the project's pipeline
	// webhook, which GitLab sends as X-Gitlab-Token.
	WebhookTokenFile string `yaml:"webhook_token_file"`
	// PushURL is where lockstep pushes the commit under test, with
	// {project} replaced by the job's gitlab.project; default
	// URL/{project}.git. A job's gitlab.remote overrides it.
	PushURL string `yaml:"push_url"`
	// PollInterval is how long lockstep waits for a pipeline webhook
	// before asking GitLab itself; default 1m.
	PollInterval Duration `yaml:"poll_interval"`
	// TraceInterval is how often the traces of running jobs are read
	// while a pipeline runs; default 10s.
	TraceInterval Duration `yaml:"trace_interval"`
}

// EffectiveURL returns URL or the default, without a trailing slash.
func (g GitLab) EffectiveURL() string {
	if g.URL == "" {
		return DefaultGitLabURL
	}
	return strings.TrimRight(g.URL, "/")
}

// EffectivePollInterval returns PollInterval or its default.
func (g GitLab) EffectivePollInterval() time.Duration {
	if g.PollInterval.Duration <= 0 {
		return DefaultGitLabPollInterval
	}
	return g.PollInterval.Duration
}

// EffectiveTraceInterval returns TraceInterval or its default.
func (g GitLab) EffectiveTraceInterval() time.Duration {
	if g.TraceInterval.Duration <= 0 {
		return DefaultGitLabTraceInterval
	}
	return g.TraceInterval.Duration
}

// Remote returns where the commits of job j are pushed: j.Remote, or
// PushURL with {project} replaced, or URL/PROJECT.git.
func (g GitLab) Remote(j GitLabJob) string {
	if j.Remote != "" {
		return j.Remote
	}
	if g.PushURL != "" {
		return strings.ReplaceAll(g.PushURL, "{project}", j.Project)
	}
	return g.EffectiveURL() + "/" + j.Project + ".git"
}

// GitLabJob is the gitlab section of a job run by the GitLab executor:
// its run is a pipeline of Project, built from the project's own
// .gitlab-ci.yml.
type GitLabJob struct {
	// Project is the GitLab project's path, "group/name" (subgroups
	// allowed).
	Project string `yaml:"project"`
	// Variables are added to the pipeline's variables.
	Variables map[string]string `yaml:"variables"`
	// Remote overrides where the commit under test is pushed (a URL or a
	// local path), for this job.
	Remote string `yaml:"remote"`
	// Merge, true by default, pushes a pull request's head merged onto
	// its base, as the local executor tests it; false pushes the head
	// alone.
	Merge *bool `yaml:"merge"`
}

// EffectiveMerge returns Merge, true when unset.
func (j GitLabJob) EffectiveMerge() bool { return j.Merge == nil || *j.Merge }

// GitLabRun is what a run of a gitlab job records of the job's
// configuration in run.Spec.ExecutorConfig, so that a later change of the
// file does not alter a run that exists.
type GitLabRun struct {
	Project   string            `json:"project"`
	Remote    string            `json:"remote"`
	Variables map[string]string `json:"variables,omitempty"`
	Merge     bool              `json:"merge"`
}

// ExecutorName returns the name of the executor that runs j: its
// executor field, or local.
func (j JobBase) ExecutorName() string {
	if j.Executor == "" {
		return ExecutorLocal
	}
	return j.Executor
}

// ExecutorConfig returns what run.Spec.ExecutorConfig holds for a run of
// j: nil for the local executor, a GitLabRun for gitlab. g is the
// configuration's gitlab section.
func (j JobBase) ExecutorConfig(g GitLab) json.RawMessage {
	if j.ExecutorName() == ExecutorKubernetes {
		b, _ := json.Marshal(j.kubeRun()) // API types marshal without error
		return b
	}
	if j.ExecutorName() != ExecutorGitLab || j.GitLab == nil {
		return nil
	}
	b, _ := json.Marshal(GitLabRun{ // strings, a map of strings and a bool: it cannot fail
		Project: j.GitLab.Project, Remote: g.Remote(*j.GitLab),
		Variables: j.GitLab.Variables, Merge: j.GitLab.EffectiveMerge(),
	})
	return b
}

// validateExecutor checks the job's executor and its section.
func (j *JobBase) validateExecutor(path string, p *problemList) {
	if j.ExecutorName() != ExecutorKubernetes {
		j.validateNotKube(path, p)
	}
	switch j.ExecutorName() {
	case ExecutorKubernetes:
		j.validateKube(path, p)
	case ExecutorLocal:
		if j.GitLab != nil {
			p.addf(fieldPath(path, "gitlab"), "is only for jobs with executor: gitlab")
		}
		if strings.TrimSpace(j.Run) == "" {
			p.addf(fieldPath(path, "run"), "required")
		}
	case ExecutorGitLab:
		if j.GitLab == nil {
			p.addf(fieldPath(path, "gitlab"), "required for executor: gitlab: set at least gitlab.project")
			return
		}
		gp := fieldPath(path, "gitlab")
		if !validGitLabProject(j.GitLab.Project) {
			p.addf(fieldPath(gp, "project"), "%q is not a GitLab project path: write group/name (subgroups allowed)", j.GitLab.Project)
		}
		if strings.TrimSpace(j.Run) != "" {
			p.addf(fieldPath(path, "run"), "a gitlab job runs its project's .gitlab-ci.yml: remove run")
		}
		for _, k := range slices.Sorted(maps.Keys(j.GitLab.Variables)) {
			if !envNameRE.MatchString(k) {
				p.addf(keyPath(fieldPath(gp, "variables"), k), "invalid variable name: use letters, digits and '_', not starting with a digit")
			}
		}
	default:
		p.addf(fieldPath(path, "executor"), "unknown executor %q: use local, gitlab or kubernetes", j.Executor)
	}
}

// validGitLabProject reports whether s looks like a GitLab project path.
func validGitLabProject(s string) bool {
	parts := strings.Split(s, "/")
	if len(parts) < 2 {
		return false
	}
	for _, part := range parts {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, " \t\n:?#") {
			return false
		}
	}
	return true
}

// usesGitLab reports whether a job of c runs on GitLab.
func (c *Config) usesGitLab() bool {
	for _, j := range c.Jobs() {
		if j.ExecutorName() == ExecutorGitLab {
			return true
		}
	}
	return false
}

// validateGitLab checks the gitlab section.
func (c *Config) validateGitLab(p *problemList) {
	g := c.GitLab
	if g.URL != "" {
		u, err := url.Parse(g.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.addf("gitlab.url", "%q is not an http(s) URL", g.URL)
		}
	}
	for name, d := range map[string]Duration{"poll_interval": g.PollInterval, "trace_interval": g.TraceInterval} {
		if msg := d.problem(); msg != "" {
			p.addf(fieldPath("gitlab", name), "%s", msg)
		} else if d.Duration < 0 {
			p.addf(fieldPath("gitlab", name), "must not be negative, got %s", d)
		}
	}
	if c.usesGitLab() && g.TokenFile == "" {
		p.addf("gitlab.token_file", "required: a job has executor: gitlab")
	}
	if g.PushURL != "" && !strings.Contains(g.PushURL, "{project}") {
		p.addf("gitlab.push_url", "%q does not contain {project}", g.PushURL)
	}
}

// String returns the gitlab section's address, for logs.
func (g GitLab) String() string { return fmt.Sprintf("gitlab %s", g.EffectiveURL()) }

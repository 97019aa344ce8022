package config

import (
	"maps"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// The values of Local.Sandbox.
const (
	// SandboxAuto sandboxes every run where the machine allows it; where
	// it does not, presubmits are refused and other runs go on with a
	// warning. It is the default.
	SandboxAuto = "auto"
	// SandboxRequired refuses every run that cannot be sandboxed.
	SandboxRequired = "required"
	// SandboxOff runs every job unsandboxed, as lockstep's own user.
	SandboxOff = "off"
)

// secretNameRE is what a job's secret is called: an environment
// variable's name, which is also the name of its file.
var secretNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Local configures the local executor, which runs jobs on lockstep's own
// machine. Changes take effect when lockstep restarts.
type Local struct {
	// MaxConcurrency caps how many runs execute at once on this machine,
	// across every job and repository; 0 means the number of CPUs
	// (EffectiveMaxConcurrency). Runs past it wait, pending, with an
	// Admitted condition saying so, and are admitted fairly across
	// repositories and jobs, oldest first within a job.
	MaxConcurrency int `yaml:"max_concurrency"`
	// Sandbox is auto (default), required or off; see SandboxAuto.
	Sandbox string `yaml:"sandbox"`
	// WorkDir is where workspaces are made; it must be outside the data
	// directory. Default: lockstep-workspaces under the system's
	// temporary directory.
	WorkDir string `yaml:"work_dir"`
	// SecretsDir holds one file per secret a job may name in its
	// secrets list: the file SecretsDir/NAME holds the value of NAME.
	SecretsDir string `yaml:"secrets_dir"`
	// HiddenPaths are files and directories a sandboxed job does not see,
	// beside the ones lockstep knows (its data directory, its
	// configuration, the secret files it names).
	HiddenPaths []string `yaml:"hidden_paths"`
}

// EffectiveMaxConcurrency returns MaxConcurrency, or the number of CPUs
// when it is zero.
func (l Local) EffectiveMaxConcurrency() int {
	if l.MaxConcurrency > 0 {
		return l.MaxConcurrency
	}
	return runtime.NumCPU()
}

// EffectiveSandbox returns Sandbox or its default.
func (l Local) EffectiveSandbox() string {
	if l.Sandbox == "" {
		return SandboxAuto
	}
	return l.Sandbox
}

// JobSandbox adjusts the sandbox of one job's runs.
type JobSandbox struct {
	// Network, when false, gives the job no network but loopback.
	// Default true.
	Network *bool `yaml:"network"`
}

// NoNetwork reports whether a job with sandbox settings s runs without
// network.
func (s *JobSandbox) NoNetwork() bool {
	return s != nil && s.Network != nil && !*s.Network
}

func (c *Config) validateLocal(p *problemList) {
	l := c.Local
	if l.MaxConcurrency < 0 {
		p.addf("local.max_concurrency", "must not be negative, got %d (0 means the number of CPUs)", l.MaxConcurrency)
	}
	switch l.Sandbox {
	case "", SandboxAuto, SandboxRequired, SandboxOff:
	default:
		p.addf("local.sandbox", "%q is not one of auto, required, off", l.Sandbox)
	}
	for i, h := range l.HiddenPaths {
		if strings.TrimSpace(h) == "" {
			p.addf(indexPath("local.hidden_paths", i), "empty path")
		}
	}
	if l.SecretsDir != "" {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(c.Repos)) {
		if c.Repos[name] == nil {
			continue
		}
		for _, j := range c.Repos[name].jobs(name) {
			if len(j.Secrets) > 0 {
				p.addf("local.secrets_dir", "required: job %s of %s names secrets", j.Name, name)
			}
		}
	}
}

// validateSecrets checks a job's secrets list.
func (j *JobBase) validateSecrets(path string, p *problemList) {
	for i, s := range j.Secrets {
		if !secretNameRE.MatchString(s) {
			p.addf(indexPath(fieldPath(path, "secrets"), i), "invalid secret name %q: use letters, digits and '_', not starting with a digit", s)
		}
		if slices.Index(j.Secrets, s) != i {
			p.addf(indexPath(fieldPath(path, "secrets"), i), "secret %s is named twice", s)
		}
		if _, ok := j.Env[s]; ok {
			p.addf(indexPath(fieldPath(path, "secrets"), i), "secret %s is also set in env", s)
		}
	}
}

// resolveLocal makes local's relative paths absolute against dir.
func (c *Config) resolveLocal(dir string) {
	paths := []*string{&c.Local.WorkDir, &c.Local.SecretsDir}
	for i := range c.Local.HiddenPaths {
		paths = append(paths, &c.Local.HiddenPaths[i])
	}
	for _, f := range paths {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(dir, *f)
		}
	}
}

// SecretFiles returns the files holding secrets that c names (every
// *_file field: GitHub's token, App key and webhook secret, GitLab's
// tokens), then the jobs' secrets directory, if set.
func (c *Config) SecretFiles() []string {
	var out []string
	for _, f := range c.files() {
		if *f.value != "" {
			out = append(out, *f.value)
		}
	}
	if c.Local.SecretsDir != "" {
		out = append(out, c.Local.SecretsDir)
	}
	return out
}

package config

import "runtime"

// Local configures the local executor, which runs jobs as processes on
// the machine lockstep runs on.
type Local struct {
	// MaxConcurrency caps how many runs execute at once on this machine,
	// across every job and repository; 0 means the number of CPUs
	// (EffectiveMaxConcurrency). Runs past it wait, pending, with an
	// Admitted condition saying so, and are admitted fairly across
	// repositories and jobs, oldest first within a job.
	MaxConcurrency int `yaml:"max_concurrency"`
}

// EffectiveMaxConcurrency returns MaxConcurrency, or the number of CPUs
// when it is zero.
func (l Local) EffectiveMaxConcurrency() int {
	if l.MaxConcurrency > 0 {
		return l.MaxConcurrency
	}
	return runtime.NumCPU()
}

func (c *Config) validateLocal(p *problemList) {
	if c.Local.MaxConcurrency < 0 {
		p.addf("local.max_concurrency", "must not be negative, got %d (0 means the number of CPUs)", c.Local.MaxConcurrency)
	}
}

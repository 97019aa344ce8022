package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"
)

// The on_stale policies of a job consuming a marker's build: what a fire
// does when the marker is stale.
const (
	// OnStaleRun runs the job on the stale build, marking the run stale
	// (the default).
	OnStaleRun = "run"
	// OnStaleSkip fires no run and records the skip on the schedule.
	OnStaleSkip = "skip"
	// OnStaleFail creates the run already failed, with reason StaleBuild.
	OnStaleFail = "fail"
)

// MinInterval is the shortest interval of a periodic: its due times are
// keyed by the second (run.PeriodicKey).
const MinInterval = time.Second

// DefaultMaxGateFailures is how many failed runs of its gate job in a row
// make a marker stale when newer builds exist, unless the marker sets
// max_gate_failures.
const DefaultMaxGateFailures = 3

// Marker is a named pointer to a build of one branch, such as
// latest-green: it moves to a newer build when its gate job succeeds on
// that build, and never backward.
type Marker struct {
	// Name identifies the marker; it is also the name of its published
	// file, NAME.txt.
	Name string `yaml:"name"`
	// Repo ("owner/name") and Branch are where the marker's builds come
	// from.
	Repo   string `yaml:"repo"`
	Branch string `yaml:"branch"`
	// Gate is a periodic of Repo that consumes builds (it has build:
	// set); when one of its runs succeeds on a build newer than the
	// marker's, the marker moves to that build.
	Gate string `yaml:"gate"`
	// MaxAge, when set, makes the marker stale once it has pointed at the
	// same build for longer.
	MaxAge Duration `yaml:"max_age"`
	// MaxGateFailures makes the marker stale when newer builds exist and
	// the gate's last MaxGateFailures finished runs all failed. Unset
	// means DefaultMaxGateFailures; zero turns the rule off.
	MaxGateFailures *int `yaml:"max_gate_failures"`
	// PublishPath, when set, is an absolute path where the marker's
	// version is also written, as a one-line text file.
	PublishPath string `yaml:"publish_path"`
}

// EffectiveMaxGateFailures returns MaxGateFailures, or
// DefaultMaxGateFailures when it is unset.
func (m Marker) EffectiveMaxGateFailures() int {
	if m.MaxGateFailures == nil {
		return DefaultMaxGateFailures
	}
	return *m.MaxGateFailures
}

// BuildSource says which build each run of a periodic tests: the build a
// marker names, or the newest build of a branch of the periodic's
// repository. Exactly one of Marker and Branch is set.
type BuildSource struct {
	Marker string `yaml:"marker"`
	Branch string `yaml:"branch"`
	// MaxAge, with Marker, makes the marker stale for this job once it
	// has pointed at the same build for longer; the marker's own
	// staleness counts too.
	MaxAge Duration `yaml:"max_age"`
	// OnStale is run (default), skip or fail: what a fire does when the
	// marker is stale. Only with Marker.
	OnStale string `yaml:"on_stale"`
}

// EffectiveOnStale returns OnStale, or OnStaleRun when it is empty.
func (b BuildSource) EffectiveOnStale() string {
	if b.OnStale == "" {
		return OnStaleRun
	}
	return b.OnStale
}

// Marker returns the marker called name.
func (c *Config) Marker(name string) (Marker, bool) {
	for _, m := range c.Markers {
		if m.Name == name {
			return m, true
		}
	}
	return Marker{}, false
}

// MarkersGatedBy returns the markers whose gate is job in repo.
func (c *Config) MarkersGatedBy(repo, job string) []Marker {
	var out []Marker
	for _, m := range c.Markers {
		if m.Repo == repo && m.Gate == job {
			out = append(out, m)
		}
	}
	return out
}

// ProducesBuild reports whether job in repo is a postsubmit or a periodic
// with produces_build set.
func (c *Config) ProducesBuild(repo, job string) bool {
	r := c.Repos[repo]
	if r == nil {
		return false
	}
	if p, ok := r.Postsubmit(job); ok {
		return p.ProducesBuild
	}
	if p, ok := r.Periodic(job); ok {
		return p.ProducesBuild
	}
	return false
}

// validateBuilds checks the interval, branch and build fields of c's
// periodics, and its markers.
func (c *Config) validateBuilds(p *problemList) {
	markers := map[string]int{} // name → index of the first marker with it
	for i, m := range c.Markers {
		if _, ok := markers[m.Name]; !ok && m.Name != "" {
			markers[m.Name] = i
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Repos)) {
		r := c.Repos[name]
		if r == nil {
			continue
		}
		for i := range r.Periodics {
			j := &r.Periodics[i]
			jp := indexPath(fieldPath(keyPath("repos", name), "periodics"), i)
			if iv := j.Interval.Duration; iv > 0 && iv < MinInterval && !j.Interval.bad {
				p.addf(fieldPath(jp, "interval"), "must be at least %s, got %s: a periodic fires at most once a second", MinInterval, j.Interval)
			}
			if j.ProducesBuild && j.Branch == "" {
				p.addf(fieldPath(jp, "branch"), "required with produces_build: builds are recorded under the branch they were built from")
			}
			if j.Build != nil {
				c.validateBuildSource(j.Build, fieldPath(jp, "build"), p)
			}
		}
	}
	for i := range c.Markers {
		c.validateMarker(i, markers, p)
	}
}

func (c *Config) validateBuildSource(b *BuildSource, path string, p *problemList) {
	switch {
	case b.Marker != "" && b.Branch != "":
		p.addf(path, "marker and branch are mutually exclusive; set exactly one")
	case b.Marker == "" && b.Branch == "":
		p.addf(path, "set marker (test the build a marker names) or branch (test the newest build of a branch)")
	case b.Marker != "":
		if _, ok := c.Marker(b.Marker); !ok {
			p.addf(fieldPath(path, "marker"), "no marker %q is defined under markers%s", b.Marker, c.markerSuggestion(b.Marker))
		}
	}
	if msg := b.MaxAge.problem(); msg != "" {
		p.addf(fieldPath(path, "max_age"), "%s", msg)
	} else if b.MaxAge.Duration < 0 {
		p.addf(fieldPath(path, "max_age"), "must not be negative, got %s", b.MaxAge)
	}
	switch b.OnStale {
	case "", OnStaleRun, OnStaleSkip, OnStaleFail:
	default:
		p.addf(fieldPath(path, "on_stale"), "must be %s, %s or %s, got %q", OnStaleRun, OnStaleSkip, OnStaleFail, b.OnStale)
	}
	if b.Branch != "" {
		if b.MaxAge.bad || b.MaxAge.Duration != 0 {
			p.addf(fieldPath(path, "max_age"), "only used with marker: the newest build of a branch is never stale")
		}
		if b.OnStale != "" {
			p.addf(fieldPath(path, "on_stale"), "only used with marker: the newest build of a branch is never stale")
		}
	}
}

func (c *Config) markerSuggestion(name string) string {
	var names []string
	for _, m := range c.Markers {
		names = append(names, m.Name)
	}
	if s := suggest(name, names); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

func (c *Config) validateMarker(i int, first map[string]int, p *problemList) {
	m := &c.Markers[i]
	path := indexPath("markers", i)
	switch {
	case m.Name == "":
		p.addf(fieldPath(path, "name"), "required")
	case !jobNameRE.MatchString(m.Name):
		p.addf(fieldPath(path, "name"), "invalid marker name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", m.Name)
	case first[m.Name] != i:
		p.addf(fieldPath(path, "name"), "duplicate marker name %q, also used by %s", m.Name, indexPath("markers", first[m.Name]))
	}
	if m.Branch == "" {
		p.addf(fieldPath(path, "branch"), "required")
	}
	if msg := m.MaxAge.problem(); msg != "" {
		p.addf(fieldPath(path, "max_age"), "%s", msg)
	} else if m.MaxAge.Duration < 0 {
		p.addf(fieldPath(path, "max_age"), "must not be negative, got %s", m.MaxAge)
	}
	if m.MaxGateFailures != nil && *m.MaxGateFailures < 0 {
		p.addf(fieldPath(path, "max_gate_failures"), "must not be negative, got %d", *m.MaxGateFailures)
	}
	if m.PublishPath != "" && !filepath.IsAbs(m.PublishPath) {
		p.addf(fieldPath(path, "publish_path"), "must be an absolute path, got %q", m.PublishPath)
	}
	if m.Repo == "" {
		p.addf(fieldPath(path, "repo"), "required")
		return
	}
	r := c.Repos[m.Repo]
	if r == nil {
		p.addf(fieldPath(path, "repo"), "repository %q is not under repos", m.Repo)
		return
	}
	gatePath := fieldPath(path, "gate")
	if m.Gate == "" {
		p.addf(gatePath, "required: the periodic whose success on a newer build moves the marker")
		return
	}
	gate, ok := r.Periodic(m.Gate)
	if !ok {
		var names []string
		for _, j := range r.Periodics {
			names = append(names, j.Name)
		}
		msg := fmt.Sprintf("no periodic %q in %s", m.Gate, m.Repo)
		if s := suggest(m.Gate, names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		p.addf(gatePath, "%s", msg)
		return
	}
	switch b := gate.Build; {
	case b == nil:
		p.addf(gatePath, "periodic %q has no build: a gate must name the build it tests (build: {branch: %s})", m.Gate, m.Branch)
	case b.Marker == m.Name:
		p.addf(gatePath, "periodic %q tests the build of marker %q itself, so it can never move it; give it build: {branch: %s}", m.Gate, m.Name, m.Branch)
	case b.Branch != "" && b.Branch != m.Branch:
		p.addf(gatePath, "periodic %q tests builds of branch %q, but the marker follows branch %q", m.Gate, b.Branch, m.Branch)
	case b.Marker != "":
		if up, ok := c.Marker(b.Marker); ok && (up.Repo != m.Repo || up.Branch != m.Branch) {
			p.addf(gatePath, "periodic %q tests builds of marker %q (%s@%s), but the marker follows %s@%s",
				m.Gate, b.Marker, up.Repo, up.Branch, m.Repo, m.Branch)
		}
	}
}

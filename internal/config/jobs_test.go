package config

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/run"
)

const jobsYAML = `repos:
  acme/widget:
    presubmits:
      - {name: unit, run: make unit, timeout: 10m}
      - {name: lint, run: make lint}
    postsubmits:
      - {name: build, run: make build}
    periodics:
      - {name: nightly, run: make e2e, interval: 24h}
  acme/gadget:
    clone_url: /srv/git/gadget
    presubmits:
      - {name: unit, run: make test}
`

func TestJob(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, jobsYAML)
	tests := []struct {
		repo, name string
		wantOK     bool
		wantType   run.Type
		wantRun    string
	}{
		{"acme/widget", "unit", true, run.Presubmit, "make unit"},
		{"acme/widget", "build", true, run.Postsubmit, "make build"},
		{"acme/widget", "nightly", true, run.Periodic, "make e2e"},
		{"acme/gadget", "unit", true, run.Presubmit, "make test"},
		{"acme/gadget", "lint", false, "", ""},
		{"acme/none", "unit", false, "", ""},
	}
	for _, tt := range tests {
		j, ok := c.Job(tt.repo, tt.name)
		if ok != tt.wantOK {
			t.Errorf("Job(%q, %q) ok = %v, want %v", tt.repo, tt.name, ok, tt.wantOK)
			continue
		}
		if !ok {
			continue
		}
		if j.Type != tt.wantType || j.Run != tt.wantRun || j.Repo != tt.repo || j.Name != tt.name {
			t.Errorf("Job(%q, %q) = %+v, want type %s, run %q", tt.repo, tt.name, j, tt.wantType, tt.wantRun)
		}
	}
}

func TestJobs(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, jobsYAML)
	var got []string
	for _, j := range c.Jobs() {
		got = append(got, j.Repo+"/"+j.Name+":"+string(j.Type))
	}
	want := []string{
		"acme/gadget/unit:presubmit",
		"acme/widget/unit:presubmit",
		"acme/widget/lint:presubmit",
		"acme/widget/build:postsubmit",
		"acme/widget/nightly:periodic",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Jobs mismatch (-want +got):\n%s", diff)
	}
}

func TestFindJob(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, jobsYAML)
	tests := []struct {
		name      string
		wantRepos []string
		wantErr   error
		wantMsg   string
	}{
		{name: "lint", wantRepos: []string{"acme/widget"}},
		{name: "nightly", wantRepos: []string{"acme/widget"}},
		{name: "unit", wantRepos: []string{"acme/gadget", "acme/widget"}, wantErr: ErrAmbiguousJob,
			wantMsg: `job name is ambiguous: 2 repositories have a job "unit" (acme/gadget, acme/widget); choose one`},
		{name: "nighty", wantErr: ErrJobNotFound,
			wantMsg: `job not found: no repository has a job "nighty"; did you mean "nightly"?`},
		{name: "deploy", wantErr: ErrJobNotFound,
			wantMsg: `job not found: no repository has a job "deploy"`},
	}
	for _, tt := range tests {
		jobs, err := c.FindJob(tt.name)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("FindJob(%q) error = %v, want %v", tt.name, err, tt.wantErr)
		}
		if err != nil && err.Error() != tt.wantMsg {
			t.Errorf("FindJob(%q) error = %q, want %q", tt.name, err, tt.wantMsg)
		}
		var repos []string
		for _, j := range jobs {
			if j.Name != tt.name {
				t.Errorf("FindJob(%q) returned job %q", tt.name, j.Name)
			}
			repos = append(repos, j.Repo)
		}
		if diff := cmp.Diff(tt.wantRepos, repos); diff != "" {
			t.Errorf("FindJob(%q) repos mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestEffectiveTimeoutAndCloneURL(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, jobsYAML)
	unit, _ := c.Job("acme/widget", "unit")
	lint, _ := c.Job("acme/widget", "lint")
	if got, want := unit.EffectiveTimeout(), 10*time.Minute; got != want {
		t.Errorf("unit.EffectiveTimeout() = %v, want %v", got, want)
	}
	if got, want := lint.EffectiveTimeout(), DefaultTimeout; got != want {
		t.Errorf("lint.EffectiveTimeout() = %v, want %v", got, want)
	}
	tests := []struct{ repo, want string }{
		{"acme/widget", "https://github.com/acme/widget.git"},
		{"acme/gadget", "/srv/git/gadget"},
		{"acme/unknown", "https://github.com/acme/unknown.git"},
	}
	for _, tt := range tests {
		if got := c.Repos[tt.repo].EffectiveCloneURL(tt.repo); got != tt.want {
			t.Errorf("EffectiveCloneURL(%q) = %q, want %q", tt.repo, got, tt.want)
		}
	}
}

func TestRepoJobAccessors(t *testing.T) {
	t.Parallel()
	r := mustLoad(t, jobsYAML).Repos["acme/widget"]
	if p, ok := r.Presubmit("lint"); !ok || p.Run != "make lint" {
		t.Errorf("Presubmit(lint) = %+v, %v", p, ok)
	}
	if _, ok := r.Presubmit("build"); ok {
		t.Errorf("Presubmit(build) found a postsubmit")
	}
	if p, ok := r.Postsubmit("build"); !ok || p.Run != "make build" {
		t.Errorf("Postsubmit(build) = %+v, %v", p, ok)
	}
	if p, ok := r.Periodic("nightly"); !ok || p.Interval.Duration != 24*time.Hour {
		t.Errorf("Periodic(nightly) = %+v, %v", p, ok)
	}
	var nilRepo *Repo
	if _, ok := nilRepo.Periodic("nightly"); ok {
		t.Errorf("nil Repo found a periodic")
	}
}

// bothWays returns the presubmits of in twice: parsed only, so the
// accessors compile on the fly, and validated, so they use the cache.
func bothWays(t *testing.T, in string) map[string]*Repo {
	t.Helper()
	return map[string]*Repo{
		"parsed":    mustParse(t, in).Repos["acme/widget"],
		"validated": mustLoad(t, in).Repos["acme/widget"],
	}
}

func TestRunsAgainstBranch(t *testing.T) {
	t.Parallel()
	in := repo(`    presubmits:
      - {name: all, run: x}
      - {name: main-exact, run: x, branches: ["^main$"]}
      - {name: main-unanchored, run: x, branches: [main]}
      - {name: two, run: x, branches: ["^main$", "^release-\\d+\\.\\d+$"]}
      - {name: skip-gh-pages, run: x, skip_branches: ["^gh-pages$"]}
      - {name: skip-two, run: x, skip_branches: ["^gh-pages$", "^wip/"]}
      - {name: case-insensitive, run: x, branches: ["(?i)^main$", "^dev$"]}
`)
	tests := []struct {
		job, branch string
		want        bool
	}{
		{"all", "main", true},
		{"all", "anything/else", true},
		{"main-exact", "main", true},
		{"main-exact", "maintenance", false},
		{"main-exact", "dev", false},
		{"main-unanchored", "main", true},
		{"main-unanchored", "maintenance", true}, // Prow: expressions are unanchored
		{"main-unanchored", "not-main", true},
		{"main-unanchored", "dev", false},
		{"two", "main", true},
		{"two", "release-1.30", true},
		{"two", "release-x", false},
		{"skip-gh-pages", "gh-pages", false},
		{"skip-gh-pages", "main", true},
		{"skip-gh-pages", "gh-pages-old", true},
		{"skip-two", "wip/thing", false},
		{"skip-two", "gh-pages", false},
		{"skip-two", "feature", true},
		{"case-insensitive", "MAIN", true},
		{"case-insensitive", "DEV", false}, // (?i) stays inside its own expression
		{"case-insensitive", "dev", true},
	}
	for how, r := range bothWays(t, in) {
		for _, tt := range tests {
			p, ok := r.Presubmit(tt.job)
			if !ok {
				t.Fatalf("no job %s", tt.job)
			}
			if got := p.RunsAgainstBranch(tt.branch); got != tt.want {
				t.Errorf("%s: %s.RunsAgainstBranch(%q) = %v, want %v", how, tt.job, tt.branch, got, tt.want)
			}
		}
	}
}

func TestPresubmitShouldRun(t *testing.T) {
	t.Parallel()
	in := repo(`    presubmits:
      - {name: always, run: x, always_run: true}
      - {name: always-main, run: x, always_run: true, branches: ["^main$"]}
      - {name: manual, run: x}
      - {name: manual-main, run: x, branches: ["^main$"]}
      - {name: docs, run: x, run_if_changed: "^docs/"}
      - {name: docs-main, run: x, run_if_changed: "^docs/", branches: ["^main$"]}
      - {name: code, run: x, skip_if_only_changed: "^docs/|\\.md$"}
`)
	tests := []struct {
		job        string
		branch     string
		files      []string
		want       bool
		wantManual bool
		wantNeeds  bool // the changed files are needed
	}{
		{"always", "main", nil, true, false, false},
		{"always", "dev", []string{"docs/a.md"}, true, false, false},
		{"always-main", "main", nil, true, false, false},
		{"always-main", "dev", nil, false, false, false},
		{"manual", "main", []string{"a.go"}, false, true, false},
		{"manual-main", "main", nil, false, true, false},
		{"docs", "main", []string{"docs/index.md"}, true, false, true},
		{"docs", "main", []string{"main.go", "docs/x"}, true, false, true},
		{"docs", "main", []string{"main.go", "README.md"}, false, false, true},
		{"docs", "main", nil, false, false, true},
		{"docs-main", "dev", []string{"docs/index.md"}, false, false, true},
		{"docs-main", "main", []string{"docs/index.md"}, true, false, true},
		{"code", "main", []string{"main.go"}, true, false, true},
		{"code", "main", []string{"docs/a", "README.md", "x.go"}, true, false, true},
		{"code", "main", []string{"docs/a", "README.md"}, false, false, true},
		{"code", "main", nil, false, false, true}, // no file misses the expression
	}
	for how, r := range bothWays(t, in) {
		for _, tt := range tests {
			p, ok := r.Presubmit(tt.job)
			if !ok {
				t.Fatalf("no job %s", tt.job)
			}
			if got := p.ManualOnly(); got != tt.wantManual {
				t.Errorf("%s: %s.ManualOnly() = %v, want %v", how, tt.job, got, tt.wantManual)
			}
			if got := p.NeedsChangedFiles(); got != tt.wantNeeds {
				t.Errorf("%s: %s.NeedsChangedFiles() = %v, want %v", how, tt.job, got, tt.wantNeeds)
			}
			calls := 0
			got, err := p.ShouldRun(tt.branch, func() ([]string, error) {
				calls++
				return tt.files, nil
			})
			if err != nil {
				t.Errorf("%s: %s.ShouldRun(%q, %q): %v", how, tt.job, tt.branch, tt.files, err)
			}
			if got != tt.want {
				t.Errorf("%s: %s.ShouldRun(%q, %q) = %v, want %v", how, tt.job, tt.branch, tt.files, got, tt.want)
			}
			if calls > 1 || calls == 1 && !tt.wantNeeds {
				t.Errorf("%s: %s.ShouldRun called the changed files %d times; needs files: %v", how, tt.job, calls, tt.wantNeeds)
			}
		}
	}
}

func TestPresubmitShouldRunErrors(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, repo(`    presubmits:
      - {name: docs, run: x, run_if_changed: "^docs/"}
      - {name: always, run: x, always_run: true}
`))
	docs, _ := c.Repos["acme/widget"].Presubmit("docs")
	always, _ := c.Repos["acme/widget"].Presubmit("always")
	boom := errors.New("GitHub is down")
	failing := func() ([]string, error) { return nil, boom }

	if _, err := docs.ShouldRun("main", failing); !errors.Is(err, boom) {
		t.Errorf("docs.ShouldRun with a failing lookup = %v, want it wrapped", err)
	}
	if _, err := docs.ShouldRun("main", nil); err == nil {
		t.Errorf("docs.ShouldRun with no lookup succeeded, want an error")
	}
	if got, err := always.ShouldRun("main", failing); err != nil || !got {
		t.Errorf("always.ShouldRun with a failing lookup = %v, %v; want true, nil (the files are not needed)", got, err)
	}
}

func TestPostsubmitShouldRun(t *testing.T) {
	t.Parallel()
	in := repo(`    postsubmits:
      - {name: all, run: x}
      - {name: main, run: x, branches: ["^main$"]}
      - {name: release, run: x, skip_branches: ["^main$"]}
      - {name: code, run: x, run_if_changed: "\\.go$", branches: ["^main$"]}
`)
	tests := []struct {
		job       string
		branch    string
		files     []string
		want      bool
		wantCalls int
	}{
		{"all", "main", nil, true, 0},
		{"all", "feature/x", nil, true, 0},
		{"main", "main", nil, true, 0},
		{"main", "dev", nil, false, 0},
		{"release", "main", nil, false, 0},
		{"release", "release-1", nil, true, 0},
		{"code", "main", []string{"a.go"}, true, 1},
		{"code", "main", []string{"README.md", "cmd/x.go"}, true, 1},
		{"code", "main", []string{"README.md"}, false, 1},
		{"code", "main", nil, false, 1},
		{"code", "dev", []string{"a.go"}, false, 0},
	}
	for _, c := range []*Config{mustParse(t, in), mustLoad(t, in)} {
		r := c.Repos["acme/widget"]
		for _, tt := range tests {
			p, ok := r.Postsubmit(tt.job)
			if !ok {
				t.Fatalf("no job %s", tt.job)
			}
			calls := 0
			got, err := p.ShouldRun(tt.branch, func() ([]string, error) {
				calls++
				return tt.files, nil
			})
			if err != nil || got != tt.want {
				t.Errorf("%s.ShouldRun(%q, %q) = %v, %v; want %v, nil", tt.job, tt.branch, tt.files, got, err, tt.want)
			}
			if calls != tt.wantCalls {
				t.Errorf("%s.ShouldRun(%q) called the changed files %d times, want %d", tt.job, tt.branch, calls, tt.wantCalls)
			}
		}
	}
}

func TestStatusContext(t *testing.T) {
	t.Parallel()
	r := mustLoad(t, repo(`    presubmits:
      - {name: unit, run: x}
      - {name: lint, run: x, context: ci/lint}
    postsubmits:
      - {name: build, run: x}
      - {name: push, run: x, context: ci/push}
`)).Repos["acme/widget"]
	tests := []struct{ got, want string }{
		{r.Presubmits[0].StatusContext(), "unit"},
		{r.Presubmits[1].StatusContext(), "ci/lint"},
		{r.Postsubmits[0].StatusContext(), "build"},
		{r.Postsubmits[1].StatusContext(), "ci/push"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("context %d: got %q, want %q", i, tt.got, tt.want)
		}
	}
}

// TestValidatedConfigConcurrentUse reads a validated configuration from
// many goroutines; run with -race.
func TestValidatedConfigConcurrentUse(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, repo(`    presubmits:
      - {name: docs, run: x, run_if_changed: "^docs/", branches: ["^main$"]}
    periodics:
      - {name: p, run: x, cron: "*/5 * * * *", time_zone: Europe/Berlin}
`))
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 32 {
		wg.Go(func() {
			docs, _ := c.Repos["acme/widget"].Presubmit("docs")
			ok, err := docs.ShouldRun("main", func() ([]string, error) { return []string{"docs/x"}, nil })
			if err != nil || !ok {
				errs <- "ShouldRun failed"
			}
			p, _ := c.Repos["acme/widget"].Periodic("p")
			s, err := p.Schedule()
			if err != nil {
				errs <- err.Error()
				return
			}
			start := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
			if got, want := s.Next(start), time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC); !got.Equal(want) {
				errs <- "Next = " + got.String()
			}
			if _, err := c.FindJob("docs"); err != nil {
				errs <- err.Error()
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []string
	for e := range errs {
		all = append(all, e)
	}
	if len(all) > 0 {
		t.Errorf("concurrent use failed: %s", strings.Join(all, "; "))
	}
}

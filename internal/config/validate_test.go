package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// mustParse parses in, failing the test on a parse problem.
func mustParse(t testing.TB, in string) *Config {
	t.Helper()
	c, err := Parse(strings.NewReader(in), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, in)
	}
	return c
}

// mustLoad parses and validates in, failing the test on any problem.
func mustLoad(t testing.TB, in string) *Config {
	t.Helper()
	c := mustParse(t, in)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v\n%s", err, in)
	}
	return c
}

// repo wraps the YAML of one repository's fields (indented by four
// spaces) into a configuration for acme/widget.
func repo(fields string) string {
	return "repos:\n  acme/widget:\n" + fields
}

func TestValidate(t *testing.T) {
	t.Parallel()
	const w = `repos["acme/widget"]`
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "valid, every field",
			in: `repos:
  acme/widget:
    clone_url: https://git.example.com/acme/widget.git
    presubmits:
      - name: unit
        run: go test ./...
        timeout: 30m
        max_concurrency: 2
        always_run: true
        branches: ["^main$", "^release-.*$"]
        context: ci/unit
        optional: true
        run_on_drafts: true
        env: {GOFLAGS: -mod=mod, _X1: "1"}
      - name: docs
        run: make docs
        run_if_changed: ^docs/
        skip_branches: [^gh-pages$]
      - name: e2e
        run: make e2e
        skip_if_only_changed: \.md$
      - name: manual.check
        run: make check
        skip_report: true
    postsubmits:
      - name: build
        run: make build
        branches: [^main$]
        run_if_changed: ^(cmd|internal)/
    periodics:
      - name: nightly
        run: make e2e
        cron: "0 3 * * *"
        time_zone: Europe/Paris
        concurrency_policy: replace
      - name: hourly
        run: make soak
        interval: 1h
        concurrency_policy: allow
      - name: daily
        run: make daily
        cron: "@daily"
        concurrency_policy: forbid
  Acme-2/widget.go_x:
    presubmits:
      - name: unit
        run: make
`,
		},
		{
			name: "local executor and job secrets",
			in: `local:
  sandbox: required
  secrets_dir: /etc/lockstep/secrets
  work_dir: /var/lib/lockstep-work
  hidden_paths: [/srv/keys]
repos:
  acme/widget:
    postsubmits:
      - name: publish
        run: make publish
        secrets: [RELEASE_TOKEN, _X]
        sandbox: {network: false}
`,
		},
		{
			name: "local executor mistakes",
			in: `local:
  sandbox: maybe
  hidden_paths: [""]
repos:
  acme/widget:
    periodics:
      - name: nightly
        run: make
        interval: 1h
        env: {TOKEN: x}
        secrets: [TOKEN, 9bad, TOKEN]
`,
			want: []string{
				w + `.periodics[0].secrets[0]: secret TOKEN is also set in env`,
				w + `.periodics[0].secrets[1]: invalid secret name "9bad": use letters, digits and '_', not starting with a digit`,
				w + `.periodics[0].secrets[2]: secret TOKEN is named twice`,
				w + `.periodics[0].secrets[2]: secret TOKEN is also set in env`,
				`local.sandbox: "maybe" is not one of auto, required, off`,
				`local.hidden_paths[0]: empty path`,
				`local.secrets_dir: required: job nightly of acme/widget names secrets`,
			},
		},
		{
			name: "repository key without a slash",
			in:   "repos:\n  widget: {}\n",
			want: []string{`repos["widget"]: repository "widget" must be written "owner/name", with one slash`},
		},
		{
			name: "repository key with two slashes",
			in:   "repos:\n  acme/widget/x: {}\n",
			want: []string{`repos["acme/widget/x"]: repository "acme/widget/x" must be written "owner/name", with one slash`},
		},
		{
			name: "invalid owner",
			in:   "repos:\n  -acme/widget: {}\n",
			want: []string{`repos["-acme/widget"]: invalid owner "-acme": a GitHub owner has 1 to 39 letters, digits or hyphens and does not start with a hyphen`},
		},
		{
			name: "invalid repository name",
			in:   "repos:\n  acme/wid get: {}\n",
			want: []string{`repos["acme/wid get"]: invalid repository name "wid get": use 1 to 100 letters, digits, '.', '-' or '_'`},
		},
		{
			name: "job name required",
			in:   repo("    presubmits:\n      - run: make\n"),
			want: []string{w + `.presubmits[0].name: required`},
		},
		{
			name: "invalid job name",
			in:   repo("    presubmits:\n      - name: unit test\n        run: make\n"),
			want: []string{w + `.presubmits[0].name: invalid job name "unit test": use letters, digits, '_', '.' and '-', starting with a letter or digit`},
		},
		{
			name: "job name starting with a dash",
			in:   repo("    postsubmits:\n      - name: -x\n        run: make\n"),
			want: []string{w + `.postsubmits[0].name: invalid job name "-x": use letters, digits, '_', '.' and '-', starting with a letter or digit`},
		},
		{
			name: "duplicate job name across job types",
			in: repo(`    presubmits:
      - name: unit
        run: make
    periodics:
      - name: unit
        run: make
        interval: 1h
`),
			want: []string{w + `.periodics[0].name: duplicate job name "unit", also used by ` + w + `.presubmits[0]`},
		},
		{
			name: "same job name in two repositories is fine",
			in: `repos:
  acme/widget:
    presubmits: [{name: unit, run: make}]
  acme/gadget:
    presubmits: [{name: unit, run: make}]
`,
		},
		{
			name: "run required",
			in:   repo("    presubmits:\n      - name: unit\n        run: '  '\n"),
			want: []string{w + `.presubmits[0].run: required`},
		},
		{
			name: "invalid timeout",
			in: repo(`    presubmits:
      - {name: a, run: make}
      - {name: b, run: make}
      - {name: c, run: make, timeout: 3x}
`),
			want: []string{w + `.presubmits[2].timeout: invalid duration "3x"`},
		},
		{
			name: "timeout without a unit",
			in:   repo("    presubmits:\n      - {name: a, run: make, timeout: 30}\n"),
			want: []string{w + `.presubmits[0].timeout: invalid duration "30" (a number needs a unit: "30s" or "30m")`},
		},
		{
			name: "negative timeout",
			in:   repo("    postsubmits:\n      - {name: a, run: make, timeout: -5m}\n"),
			want: []string{w + `.postsubmits[0].timeout: must not be negative, got -5m0s`},
		},
		{
			name: "zero timeout is the default",
			in:   repo("    presubmits:\n      - {name: a, run: make, timeout: 0s}\n"),
		},
		{
			name: "negative max_concurrency",
			in:   repo("    presubmits:\n      - {name: a, run: make, max_concurrency: -1}\n"),
			want: []string{w + `.presubmits[0].max_concurrency: must not be negative, got -1`},
		},
		{
			name: "invalid run_if_changed",
			in:   repo("    presubmits:\n      - {name: a, run: make, run_if_changed: '^(docs/'}\n"),
			want: []string{w + `.presubmits[0].run_if_changed: invalid regular expression "^(docs/": missing closing )`},
		},
		{
			name: "invalid skip_if_only_changed",
			in:   repo("    presubmits:\n      - {name: a, run: make, skip_if_only_changed: 'a**'}\n"),
			want: []string{w + `.presubmits[0].skip_if_only_changed: invalid regular expression "a**": invalid nested repetition operator in "**"`},
		},
		{
			name: "invalid postsubmit run_if_changed",
			in:   repo("    postsubmits:\n      - {name: a, run: make, run_if_changed: '['}\n"),
			want: []string{w + `.postsubmits[0].run_if_changed: invalid regular expression "[": missing closing ]`},
		},
		{
			name: "invalid branches",
			in:   repo("    presubmits:\n      - {name: a, run: make, branches: [main, 'rel(']}\n"),
			want: []string{w + `.presubmits[0].branches[1]: invalid regular expression "rel(": missing closing )`},
		},
		{
			name: "a branch expression valid only inside the alternation",
			in:   repo("    presubmits:\n      - {name: a, run: make, branches: ['x)|(y']}\n"),
			want: []string{w + `.presubmits[0].branches[0]: invalid regular expression "x)|(y": unexpected )`},
		},
		{
			name: "invalid skip_branches",
			in:   repo("    postsubmits:\n      - {name: a, run: make, skip_branches: ['*']}\n"),
			want: []string{w + `.postsubmits[0].skip_branches[0]: invalid regular expression "*": missing argument to repetition operator`},
		},
		{
			name: "always_run with run_if_changed",
			in:   repo("    presubmits:\n      - {name: a, run: make, always_run: true, run_if_changed: x}\n"),
			want: []string{w + `.presubmits[0]: always_run, run_if_changed and skip_if_only_changed are mutually exclusive; set at most one, not always_run and run_if_changed`},
		},
		{
			name: "always_run with skip_if_only_changed",
			in:   repo("    presubmits:\n      - {name: a, run: make, always_run: true, skip_if_only_changed: x}\n"),
			want: []string{w + `.presubmits[0]: always_run, run_if_changed and skip_if_only_changed are mutually exclusive; set at most one, not always_run and skip_if_only_changed`},
		},
		{
			name: "run_if_changed with skip_if_only_changed",
			in:   repo("    presubmits:\n      - {name: a, run: make, run_if_changed: x, skip_if_only_changed: y}\n"),
			want: []string{w + `.presubmits[0]: always_run, run_if_changed and skip_if_only_changed are mutually exclusive; set at most one, not run_if_changed and skip_if_only_changed`},
		},
		{
			name: "always_run false with run_if_changed is fine",
			in:   repo("    presubmits:\n      - {name: a, run: make, always_run: false, run_if_changed: x}\n"),
		},
		{
			name: "branches with skip_branches",
			in:   repo("    postsubmits:\n      - {name: a, run: make, branches: [main], skip_branches: [dev]}\n"),
			want: []string{w + `.postsubmits[0]: branches and skip_branches are mutually exclusive; set at most one`},
		},
		{
			name: "context used twice",
			in: repo(`    presubmits:
      - {name: a, run: make, context: ci}
      - {name: b, run: make, context: ci}
`),
			want: []string{w + `.presubmits[1].context: status context "ci" is already used by ` + w + `.presubmits[0]`},
		},
		{
			name: "default context clashes with a set one",
			in: repo(`    presubmits:
      - {name: a, run: make, context: build}
    postsubmits:
      - {name: build, run: make}
`),
			want: []string{w + `.postsubmits[0].context: status context "build" (the default: the job's name) is already used by ` + w + `.presubmits[0]`},
		},
		{
			name: "periodic without a schedule",
			in:   repo("    periodics:\n      - {name: p, run: make}\n"),
			want: []string{w + `.periodics[0]: a periodic needs a schedule: set interval or cron`},
		},
		{
			name: "periodic with interval and cron",
			in:   repo("    periodics:\n      - {name: p, run: make, interval: 1h, cron: '@daily'}\n"),
			want: []string{w + `.periodics[0]: interval and cron are mutually exclusive; set exactly one`},
		},
		{
			name: "negative interval",
			in:   repo("    periodics:\n      - {name: p, run: make, interval: -1h}\n"),
			want: []string{w + `.periodics[0].interval: must be positive, got -1h0m0s`},
		},
		{
			name: "invalid interval",
			in:   repo("    periodics:\n      - {name: p, run: make, interval: 1d}\n"),
			want: []string{w + `.periodics[0].interval: invalid duration "1d"`},
		},
		{
			name: "invalid cron",
			in:   repo("    periodics:\n      - {name: p, run: make, cron: '61 * * * *'}\n"),
			want: []string{w + `.periodics[0].cron: invalid cron expression "61 * * * *": end of range (61) above maximum (59): 61`},
		},
		{
			name: "cron with six fields",
			in:   repo("    periodics:\n      - {name: p, run: make, cron: '0 0 3 * * *'}\n"),
			want: []string{w + `.periodics[0].cron: invalid cron expression "0 0 3 * * *": expected exactly 5 fields, found 6: [0 0 3 * * *]`},
		},
		{
			name: "cron with CRON_TZ",
			in:   repo("    periodics:\n      - {name: p, run: make, cron: 'CRON_TZ=Asia/Tokyo 0 3 * * *'}\n"),
			want: []string{w + `.periodics[0].cron: invalid cron expression "CRON_TZ=Asia/Tokyo 0 3 * * *": set the time zone with time_zone, not CRON_TZ=`},
		},
		{
			name: "cron with @every",
			in:   repo("    periodics:\n      - {name: p, run: make, cron: '@every 1h'}\n"),
			want: []string{w + `.periodics[0].cron: invalid cron expression "@every 1h": use interval for a fixed period`},
		},
		{
			name: "unknown time zone",
			in:   repo("    periodics:\n      - {name: p, run: make, cron: '0 3 * * *', time_zone: Mars/Olympus}\n"),
			want: []string{w + `.periodics[0].time_zone: unknown time zone "Mars/Olympus"`},
		},
		{
			name: "time zone with an interval",
			in:   repo("    periodics:\n      - {name: p, run: make, interval: 1h, time_zone: UTC}\n"),
			want: []string{w + `.periodics[0].time_zone: only used with cron`},
		},
		{
			name: "invalid concurrency_policy",
			in:   repo("    periodics:\n      - {name: p, run: make, interval: 1h, concurrency_policy: Forbid}\n"),
			want: []string{w + `.periodics[0].concurrency_policy: must be forbid, allow or replace, got "Forbid"`},
		},
		{
			name: "invalid env names",
			in:   repo("    presubmits:\n      - {name: a, run: make, env: {GOOD: x, 1BAD: x, A-B: x, '': x}}\n"),
			want: []string{
				w + `.presubmits[0].env[""]: invalid environment variable name: use letters, digits and '_', not starting with a digit`,
				w + `.presubmits[0].env["1BAD"]: invalid environment variable name: use letters, digits and '_', not starting with a digit`,
				w + `.presubmits[0].env["A-B"]: invalid environment variable name: use letters, digits and '_', not starting with a digit`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, tt.in)
			err := c.Validate()
			if diff := cmp.Diff(tt.want, problemStrings(err)); diff != "" {
				t.Errorf("Validate problems mismatch (-want +got):\n%s", diff)
			}
			for _, p := range Problems(err) {
				var e *Error
				if !errors.As(p, &e) || e.Path == "" {
					t.Errorf("problem %q is not an *Error with a path", p)
				}
			}
		})
	}
}

func TestValidateThreeMistakes(t *testing.T) {
	t.Parallel()
	in := `repos:
  acme/widget:
    presubmits:
      - name: unit
        run: go test ./...
        timeout: 3x
      - name: lint
        run: make lint
        always_run: true
        run_if_changed: '\.go$'
    periodics:
      - name: nightly
        run: make e2e
        cron: "0 25 * * *"
`
	err := mustParse(t, in).Validate()
	problems := Problems(err)
	if len(problems) != 3 {
		t.Fatalf("got %d problems, want 3:\n%v", len(problems), err)
	}
	var paths []string
	for _, p := range problems {
		var e *Error
		if !errors.As(p, &e) {
			t.Fatalf("problem %v is a %T, want *Error", p, p)
		}
		paths = append(paths, e.Path)
	}
	want := []string{
		`repos["acme/widget"].presubmits[0].timeout`,
		`repos["acme/widget"].presubmits[1]`,
		`repos["acme/widget"].periodics[0].cron`,
	}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("problem paths mismatch (-want +got):\n%s", diff)
	}
	if got, want := problems[0].Error(), `repos["acme/widget"].presubmits[0].timeout: invalid duration "3x"`; got != want {
		t.Errorf("first problem = %q, want %q", got, want)
	}
}

func TestValidateRepoOrderIsStable(t *testing.T) {
	t.Parallel()
	in := `repos:
  zz/top: {presubmits: [{name: a}]}
  aa/top: {presubmits: [{name: a}]}
  mm/top: {presubmits: [{name: a}]}
`
	want := []string{
		`repos["aa/top"].presubmits[0].run: required`,
		`repos["mm/top"].presubmits[0].run: required`,
		`repos["zz/top"].presubmits[0].run: required`,
	}
	for range 5 {
		got := problemStrings(mustParse(t, in).Validate())
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("problems mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestValidateBuiltInGo(t *testing.T) {
	t.Parallel()
	c := &Config{Repos: map[string]*Repo{
		"acme/empty": nil,
		"acme/widget": {Presubmits: []Presubmit{{
			JobBase:  JobBase{Name: "unit", Run: "make", Timeout: Duration{Duration: time.Minute}},
			Brancher: Brancher{Branches: []string{"^main$"}},
		}}},
	}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p, _ := c.Repos["acme/widget"].Presubmit("unit")
	if !p.RunsAgainstBranch("main") || p.RunsAgainstBranch("dev") {
		t.Errorf("RunsAgainstBranch after Validate: got main=%v dev=%v, want true false",
			p.RunsAgainstBranch("main"), p.RunsAgainstBranch("dev"))
	}
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// ignoreCaches makes go-cmp skip the unexported fields Parse and Validate
// fill in.
var ignoreCaches = cmpopts.IgnoreUnexported(Config{}, Brancher{}, Presubmit{}, Postsubmit{}, Periodic{}, Duration{})

const exampleYAML = `repos:
  acme/widget:
    clone_url: /path/or/url
    presubmits:
      - name: unit
        always_run: true
        run: go test ./...
        timeout: 30m
        max_concurrency: 2
    periodics:
      - name: nightly
        interval: 24h
        run: make e2e
`

func TestParseExample(t *testing.T) {
	t.Parallel()
	c, err := Parse(strings.NewReader(exampleYAML), "lockstep.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := &Config{Repos: map[string]*Repo{
		"acme/widget": {
			CloneURL: "/path/or/url",
			Presubmits: []Presubmit{{
				JobBase: JobBase{
					Name:           "unit",
					Run:            "go test ./...",
					Timeout:        Duration{Duration: 30 * time.Minute},
					MaxConcurrency: 2,
				},
				AlwaysRun: true,
			}},
			Periodics: []Periodic{{
				JobBase:  JobBase{Name: "nightly", Run: "make e2e"},
				Interval: Duration{Duration: 24 * time.Hour},
			}},
		},
	}}
	if diff := cmp.Diff(want, c, ignoreCaches); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "\n\n", "# nothing yet\n", "repos:\n", "repos: {}\n", "---\n"} {
		c, err := Parse(strings.NewReader(in), "f.yaml")
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if c.Repos == nil || len(c.Repos) != 0 {
			t.Errorf("Parse(%q).Repos = %#v, want an empty map", in, c.Repos)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Parse(%q).Validate(): %v", in, err)
		}
	}
}

func TestParseNullRepo(t *testing.T) {
	t.Parallel()
	c, err := Parse(strings.NewReader("repos:\n  acme/widget:\n"), "f.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	r, ok := c.Repos["acme/widget"]
	if !ok || r == nil {
		t.Fatalf("Repos[acme/widget] = %v, %v; want an empty *Repo", r, ok)
	}
}

// problemStrings returns the text of each problem in err.
func problemStrings(err error) []string {
	var out []string
	for _, p := range Problems(err) {
		out = append(out, p.Error())
	}
	return out
}

func TestParseProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "unknown top-level field",
			in:   "repo:\n  acme/widget: {}\n",
			want: []string{`f.yaml:1:1: repo: unknown field "repo"; did you mean "repos"?`},
		},
		{
			name: "misspelled inline field",
			in: `repos:
  acme/widget:
    presubmits:
      - name: unit
        alwys_run: true
        run: make
`,
			want: []string{`f.yaml:5:9: repos["acme/widget"].presubmits[0].alwys_run: unknown field "alwys_run"; did you mean "always_run"?`},
		},
		{
			name: "every unknown field, with and without suggestions",
			in: `repos:
  acme/widget:
    clone-url: x
    presubmits:
      - name: unit
        run: make
        tmeout: 1h
        Skip_Branches: [main]
        colour: blue
    periodics:
      - name: p
        run: make
        crn: "@daily"
        interval: 1h
`,
			want: []string{
				`f.yaml:3:5: repos["acme/widget"].clone-url: unknown field "clone-url"; did you mean "clone_url"?`,
				`f.yaml:7:9: repos["acme/widget"].presubmits[0].tmeout: unknown field "tmeout"; did you mean "timeout"?`,
				`f.yaml:8:9: repos["acme/widget"].presubmits[0].Skip_Branches: unknown field "Skip_Branches"; did you mean "skip_branches"?`,
				`f.yaml:9:9: repos["acme/widget"].presubmits[0].colour: unknown field "colour"`,
				`f.yaml:13:9: repos["acme/widget"].periodics[0].crn: unknown field "crn"; did you mean "cron"?`,
			},
		},
		{
			name: "a field of another job type",
			in: `repos:
  acme/widget:
    postsubmits:
      - name: build
        run: make
        always_run: true
`,
			want: []string{`f.yaml:6:9: repos["acme/widget"].postsubmits[0].always_run: unknown field "always_run"`},
		},
		{
			name: "unknown field brought by a merge key is reported once",
			in: `defaults: &defaults
  run: make
  timeout: 1h
  retries: 3
repos:
  acme/widget:
    presubmits:
      - <<: *defaults
        name: a
      - <<: *defaults
        name: b
`,
			want: []string{
				`f.yaml:1:1: defaults: unknown field "defaults"`,
				`f.yaml:4:3: repos["acme/widget"].presubmits[0].retries: unknown field "retries"; did you mean "resources"?`,
			},
		},
		{
			name: "wrong scalar type",
			in: `repos:
  acme/widget:
    presubmits:
      - name: unit
        run: make
        max_concurrency: two
        always_run: maybe
`,
			want: []string{
				`f.yaml:6: repos["acme/widget"].presubmits[0].max_concurrency: expected an integer, got "two"`,
				`f.yaml:7: repos["acme/widget"].presubmits[0].always_run: expected true or false, got "maybe"`,
			},
		},
		{
			name: "mapping where a list belongs",
			in: `repos:
  acme/widget:
    presubmits: {name: unit}
`,
			want: []string{`f.yaml:3: repos["acme/widget"].presubmits: expected a list, got a mapping`},
		},
		{
			name: "list where a duration belongs",
			in: `repos:
  acme/widget:
    presubmits:
      - name: unit
        run: make
        timeout: [1h]
`,
			want: []string{`f.yaml:6: repos["acme/widget"].presubmits[0].timeout: expected a duration such as "30m", got a list`},
		},
		{
			name: "duplicate key",
			in: `repos:
  acme/widget:
    presubmits:
      - name: unit
        name: unit2
        run: make
`,
			want: []string{`f.yaml:5: repos["acme/widget"].presubmits[0].name: mapping key "name" already defined at line 4`},
		},
		{
			name: "not a mapping",
			in:   "- a\n- b\n",
			want: []string{`f.yaml:1:1: the configuration must be a mapping with a repos key, not a list`},
		},
		{
			name: "two documents",
			in:   "repos: {}\n---\nrepos: {}\n",
			want: []string{`f.yaml:2:1: a second YAML document; lockstep reads one document per file (remove the '---' separator)`},
		},
		{
			name: "syntax error",
			in: `repos:
  acme/widget:
    presubmits:
      - name: unit
        run: "make
`,
			want: []string{`f.yaml:5: invalid YAML: found unexpected end of stream`},
		},
		{
			name: "syntax error: bad indentation",
			in:   "repos:\n  a/b:\n    presubmits: []\n   postsubmits: []\n",
			want: []string{`f.yaml:4: invalid YAML: did not find expected key`},
		},
		{
			name: "syntax error: unclosed flow sequence",
			in:   "repos:\n  a/b:\n    presubmits:\n      - name: x\n        run: y\n    periodics: [a, b\n    postsubmits: []\n",
			want: []string{`f.yaml:6: invalid YAML: did not find expected ',' or ']'`},
		},
		{
			name: "syntax error: list item indented too little",
			in:   "repos:\n  a/b:\n    presubmits:\n      - name: x\n        run: y\n     - name: z\n",
			want: []string{`f.yaml:6: invalid YAML: did not find expected key`},
		},
		{
			name: "syntax error: missing colon",
			in:   "repos:\n  a/b:\n    presubmits: []\n  c/d\n",
			want: []string{`f.yaml:4: invalid YAML: could not find expected ':'`},
		},
		{
			name: "unknown anchor",
			in:   "repos:\n  a/b:\n    presubmits:\n      - name: x\n        run: *nope\n",
			want: []string{`f.yaml:5: invalid YAML: unknown anchor 'nope' referenced`},
		},
		{
			name: "tab indentation",
			in:   "repos:\n\ta/b: {}\n",
			want: []string{`f.yaml:2: invalid YAML: found character that cannot start any token`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse(strings.NewReader(tt.in), "f.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want problems", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			if diff := cmp.Diff(tt.want, problemStrings(err)); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
			for _, p := range Problems(err) {
				var e *Error
				if !errors.As(p, &e) {
					t.Errorf("problem %v is a %T, want *Error", p, p)
				}
			}
		})
	}
}

func TestParseMergeKeys(t *testing.T) {
	t.Parallel()
	in := `repos:
  acme/widget:
    presubmits:
      - &unit
        name: unit
        run: make test
        timeout: 1h
        always_run: true
      - <<: *unit
        name: lint
`
	c, err := Parse(strings.NewReader(in), "f.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	lint, ok := c.Repos["acme/widget"].Presubmit("lint")
	if !ok {
		t.Fatalf("no presubmit lint")
	}
	want := JobBase{Name: "lint", Run: "make test", Timeout: Duration{Duration: time.Hour}}
	if diff := cmp.Diff(want, lint.JobBase, ignoreCaches); diff != "" {
		t.Errorf("lint mismatch (-want +got):\n%s", diff)
	}
	if !lint.AlwaysRun {
		t.Errorf("lint.AlwaysRun = false, want true (merged)")
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(exampleYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, ok := c.Job("acme/widget", "unit"); !ok {
		t.Errorf("Load: job unit missing")
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	in := `repos:
  acme/widget:
    presubmits:
      - name: unit
        run: make
        timeout: 3x
      - name: lint
        colour: blue
  acme:
    presubmits: []
`
	if err := os.WriteFile(bad, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	// Unknown fields and validation problems come together, in line order.
	want := []string{
		bad + `:6:9: repos["acme/widget"].presubmits[0].timeout: invalid duration "3x"`,
		bad + `:7:9: repos["acme/widget"].presubmits[1].run: required`,
		bad + `:8:9: repos["acme/widget"].presubmits[1].colour: unknown field "colour"`,
		bad + `:9:3: repos["acme"]: repository "acme" must be written "owner/name", with one slash`,
	}
	if diff := cmp.Diff(want, problemStrings(err)); diff != "" {
		t.Errorf("Load problems mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadResolvesRelativeCloneURL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "conf", "lockstep.yaml")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	in := `repos:
  a/relative: {clone_url: ..}
  a/nested: {clone_url: repos/widget}
  a/absolute: {clone_url: /srv/git/widget}
  a/https: {clone_url: "https://github.com/a/b.git"}
  a/file: {clone_url: "file:///srv/git/b"}
  a/scp: {clone_url: "git@github.com:a/b.git"}
  a/default: {}
`
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := map[string]string{
		"a/relative": dir,
		"a/nested":   filepath.Join(dir, "conf", "repos", "widget"),
		"a/absolute": "/srv/git/widget",
		"a/https":    "https://github.com/a/b.git",
		"a/file":     "file:///srv/git/b",
		"a/scp":      "git@github.com:a/b.git",
		"a/default":  "https://github.com/a/default.git",
	}
	for name, w := range want {
		if got := c.Repos[name].EffectiveCloneURL(name); got != w {
			t.Errorf("EffectiveCloneURL(%q) = %q, want %q", name, got, w)
		}
	}
}

func TestParentPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`repos`, ``},
		{`repos["acme/widget"]`, `repos`},
		{`repos["acme/widget"].presubmits`, `repos["acme/widget"]`},
		{`repos["acme/widget"].presubmits[2]`, `repos["acme/widget"].presubmits`},
		{`repos["acme/widget"].presubmits[2].timeout`, `repos["acme/widget"].presubmits[2]`},
		{`repos["a.b/c[d]"].env["X.Y"]`, `repos["a.b/c[d]"].env`},
		{`repos["a\"./b"].env`, `repos["a\"./b"]`},
	}
	for _, tt := range tests {
		if got := parentPath(tt.in); got != tt.want {
			t.Errorf("parentPath(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	names := []string{"name", "run", "timeout", "always_run", "run_if_changed", "skip_if_only_changed", "branches", "cron", "env"}
	tests := []struct{ in, want string }{
		{"nme", "name"},
		{"rn", "run"},
		{"tmeout", "timeout"},
		{"time_out", "timeout"},
		{"alwaysrun", "always_run"},
		{"always-run", "always_run"},
		{"ALWAYS_RUN", "always_run"},
		{"run-if-changed", "run_if_changed"},
		{"skip_if_changed", "skip_if_only_changed"},
		{"branch", "branches"},
		{"envs", "env"},
		{"cron", "cron"},
		{"command", ""},
		{"interval", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, names); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		wantValid bool
		want      time.Duration
		wantText  string
	}{
		{"30m", true, 30 * time.Minute, "30m0s"},
		{"1h30m", true, 90 * time.Minute, "1h30m0s"},
		{"0", true, 0, "0s"},
		{"3x", false, 0, "3x"},
		{"30", false, 0, "30"},
	}
	for _, tt := range tests {
		var d Duration
		if err := d.UnmarshalText([]byte(tt.in)); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", tt.in, err)
		}
		if d.Valid() != tt.wantValid || d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v valid=%v, want %v valid=%v", tt.in, d.Duration, d.Valid(), tt.want, tt.wantValid)
		}
		text, _ := d.MarshalText()
		if string(text) != tt.wantText {
			t.Errorf("MarshalText after %q = %q, want %q", tt.in, text, tt.wantText)
		}
	}
}

package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// kopsConfig is a build job, a gate and a consumer of the gate's marker.
const kopsConfig = `repos:
  acme/kops:
    postsubmits:
      - name: push-build
        run: make push
        produces_build: true
    periodics:
      - name: build
        cron: "0 1 * * *"
        run: make build
        branch: main
        produces_build: true
      - name: updown
        cron: "0 2 * * *"
        run: make updown
        build: {branch: main}
      - name: e2e
        cron: "0 3 * * *"
        run: make e2e
        build: {marker: latest-green, max_age: 48h, on_stale: skip}
markers:
  - name: latest-green
    repo: acme/kops
    branch: main
    gate: updown
    max_age: 72h
    max_gate_failures: 5
    publish_path: /srv/www/latest-green.txt
`

func TestBuildsConfig(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, kopsConfig)
	m, ok := c.Marker("latest-green")
	if !ok {
		t.Fatal("no marker latest-green")
	}
	want := Marker{Name: "latest-green", Repo: "acme/kops", Branch: "main", Gate: "updown",
		MaxAge: Duration{Duration: 72 * time.Hour}, PublishPath: "/srv/www/latest-green.txt"}
	five := 5
	want.MaxGateFailures = &five
	if diff := cmp.Diff(want, m, cmp.AllowUnexported(Duration{})); diff != "" {
		t.Errorf("marker (-want +got):\n%s", diff)
	}
	if got := m.EffectiveMaxGateFailures(); got != 5 {
		t.Errorf("EffectiveMaxGateFailures = %d, want 5", got)
	}
	if got := (Marker{}).EffectiveMaxGateFailures(); got != DefaultMaxGateFailures {
		t.Errorf("default EffectiveMaxGateFailures = %d, want %d", got, DefaultMaxGateFailures)
	}
	if _, ok := c.Marker("nope"); ok {
		t.Error("Marker(nope) found a marker")
	}
	if got := c.MarkersGatedBy("acme/kops", "updown"); len(got) != 1 || got[0].Name != "latest-green" {
		t.Errorf("MarkersGatedBy(updown) = %v, want latest-green", got)
	}
	if got := c.MarkersGatedBy("acme/kops", "e2e"); len(got) != 0 {
		t.Errorf("MarkersGatedBy(e2e) = %v, want none", got)
	}
	for _, tt := range []struct {
		job  string
		want bool
	}{{"push-build", true}, {"build", true}, {"updown", false}, {"e2e", false}, {"nope", false}} {
		if got := c.ProducesBuild("acme/kops", tt.job); got != tt.want {
			t.Errorf("ProducesBuild(%s) = %v, want %v", tt.job, got, tt.want)
		}
	}
	e2e, _ := c.Repos["acme/kops"].Periodic("e2e")
	if e2e.Build == nil || e2e.Build.Marker != "latest-green" || e2e.Build.MaxAge.Duration != 48*time.Hour || e2e.Build.EffectiveOnStale() != OnStaleSkip {
		t.Errorf("e2e.Build = %+v", e2e.Build)
	}
	if got := (BuildSource{}).EffectiveOnStale(); got != OnStaleRun {
		t.Errorf("default on_stale = %q, want %q", got, OnStaleRun)
	}
}

func TestValidateBuilds(t *testing.T) {
	t.Parallel()
	const k = `repos["acme/kops"]`
	// periodics holds a gate and a consumer; each case adds markers and
	// edits.
	const periodics = `repos:
  acme/kops:
    periodics:
      - name: updown
        interval: 1h
        run: make updown
        build: {branch: main}
      - name: plain
        interval: 1h
        run: make plain
`
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "produces_build without branch",
			in: `repos:
  acme/kops:
    periodics:
      - name: build
        interval: 1h
        run: make
        produces_build: true
`,
			want: []string{k + `.periodics[0].branch: required with produces_build: builds are recorded under the branch they were built from`},
		},
		{
			name: "interval under a second",
			in: `repos:
  acme/kops:
    periodics:
      - name: fast
        interval: 200ms
        run: make
`,
			want: []string{k + `.periodics[0].interval: must be at least 1s, got 200ms: a periodic fires at most once a second`},
		},
		{
			name: "build with marker and branch",
			in: periodics + `      - name: e2e
        interval: 1h
        run: make
        build: {marker: latest-green, branch: main}
markers:
  - {name: latest-green, repo: acme/kops, branch: main, gate: updown}
`,
			want: []string{k + `.periodics[2].build: marker and branch are mutually exclusive; set exactly one`},
		},
		{
			name: "empty build",
			in: periodics + `      - name: e2e
        interval: 1h
        run: make
        build: {on_stale: skip}
`,
			want: []string{k + `.periodics[2].build: set marker (test the build a marker names) or branch (test the newest build of a branch)`},
		},
		{
			name: "unknown marker, bad max_age and on_stale",
			in: periodics + `      - name: e2e
        interval: 1h
        run: make
        build: {marker: latest-gren, max_age: 3d, on_stale: ignore}
markers:
  - {name: latest-green, repo: acme/kops, branch: main, gate: updown}
`,
			want: []string{
				k + `.periodics[2].build.marker: no marker "latest-gren" is defined under markers; did you mean "latest-green"?`,
				k + `.periodics[2].build.max_age: invalid duration "3d"`,
				k + `.periodics[2].build.on_stale: must be run, skip or fail, got "ignore"`,
			},
		},
		{
			name: "staleness settings on a branch build",
			in: `repos:
  acme/kops:
    periodics:
      - name: e2e
        interval: 1h
        run: make
        build: {branch: main, max_age: 1h, on_stale: fail}
`,
			want: []string{
				k + `.periodics[0].build.max_age: only used with marker: the newest build of a branch is never stale`,
				k + `.periodics[0].build.on_stale: only used with marker: the newest build of a branch is never stale`,
			},
		},
		{
			name: "marker fields",
			in: periodics + `markers:
  - {name: "bad name", repo: acme/kops, branch: main, gate: updown, max_age: -1h, max_gate_failures: -2, publish_path: rel/path.txt}
  - {repo: acme/nope, gate: updown}
  - {name: x, repo: acme/kops, branch: main}
`,
			want: []string{
				`markers[0].name: invalid marker name "bad name": use letters, digits, '_', '.' and '-', starting with a letter or digit`,
				`markers[0].max_age: must not be negative, got -1h0m0s`,
				`markers[0].max_gate_failures: must not be negative, got -2`,
				`markers[0].publish_path: must be an absolute path, got "rel/path.txt"`,
				`markers[1].name: required`,
				`markers[1].branch: required`,
				`markers[1].repo: repository "acme/nope" is not under repos`,
				`markers[2].gate: required: the periodic whose success on a newer build moves the marker`,
			},
		},
		{
			name: "duplicate marker",
			in: periodics + `markers:
  - {name: green, repo: acme/kops, branch: main, gate: updown}
  - {name: green, repo: acme/kops, branch: main, gate: updown}
`,
			want: []string{`markers[1].name: duplicate marker name "green", also used by markers[0]`},
		},
		{
			name: "gate problems",
			in: periodics + `      - name: self
        interval: 1h
        run: make
        build: {marker: a}
      - name: dev
        interval: 1h
        run: make
        build: {branch: dev}
markers:
  - {name: a, repo: acme/kops, branch: main, gate: self}
  - {name: b, repo: acme/kops, branch: main, gate: plain}
  - {name: c, repo: acme/kops, branch: main, gate: updwn}
  - {name: d, repo: acme/kops, branch: main, gate: dev}
  - {name: e, repo: acme/kops, branch: dev, gate: chained}
`,
			want: []string{
				`markers[0].gate: periodic "self" tests the build of marker "a" itself, so it can never move it; give it build: {branch: main}`,
				`markers[1].gate: periodic "plain" has no build: a gate must name the build it tests (build: {branch: main})`,
				`markers[2].gate: no periodic "updwn" in acme/kops; did you mean "updown"?`,
				`markers[3].gate: periodic "dev" tests builds of branch "dev", but the marker follows branch "main"`,
				`markers[4].gate: no periodic "chained" in acme/kops`,
			},
		},
		{
			name: "chained gate on another branch's marker",
			in: periodics + `      - name: chained
        interval: 1h
        run: make
        build: {marker: green}
markers:
  - {name: green, repo: acme/kops, branch: main, gate: updown}
  - {name: dev-green, repo: acme/kops, branch: dev, gate: chained}
`,
			want: []string{`markers[1].gate: periodic "chained" tests builds of marker "green" (acme/kops@main), but the marker follows acme/kops@dev`},
		},
		{
			name: "chained gate on the same branch is valid",
			in: periodics + `      - name: chained
        interval: 1h
        run: make
        build: {marker: green}
markers:
  - {name: green, repo: acme/kops, branch: main, gate: updown}
  - {name: soaked, repo: acme/kops, branch: main, gate: chained}
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := mustParse(t, tt.in)
			got := problemStrings(c.Validate())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildsReferenceExample keeps the example of the markers section of
// docs/configuration.md valid.
func TestBuildsReferenceExample(t *testing.T) {
	t.Parallel()
	doc := readReference(t)
	_, rest, ok := strings.Cut(doc, "### `markers`")
	if !ok {
		t.Fatalf("%s has no markers section", referencePath)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatalf("the markers section has no yaml block")
	}
	example, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("the markers section's yaml block is not closed")
	}
	c := mustLoad(t, example)
	if m, ok := c.Marker("latest-green"); !ok || m.Gate != "updown" {
		t.Errorf("the example has no marker latest-green gated by updown")
	}
}

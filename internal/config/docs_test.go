package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const referencePath = "../../docs/configuration.md"

func readReference(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("read the configuration reference: %v", err)
	}
	return string(data)
}

// TestReferenceExample keeps the full example of docs/configuration.md
// valid and meaning what the page says.
func TestReferenceExample(t *testing.T) {
	t.Parallel()
	doc := readReference(t)
	_, rest, ok := strings.Cut(doc, "## Full example")
	if !ok {
		t.Fatalf("%s has no Full example section", referencePath)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatalf("the Full example section has no yaml block")
	}
	example, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("the Full example's yaml block is not closed")
	}
	c := mustLoad(t, example)

	widget := c.Repos["acme/widget"]
	race, ok := widget.Presubmit("race")
	if !ok {
		t.Fatalf("the example has no presubmit race")
	}
	wantEnv := map[string]string{"GOFLAGS": "-mod=readonly", "CGO_ENABLED": "1"}
	if diff := cmp.Diff(wantEnv, race.Env); diff != "" {
		t.Errorf("race.Env, merged from unit (-want +got):\n%s", diff)
	}
	if race.AlwaysRun || race.Timeout.Duration != time.Hour || race.MaxConcurrency != 2 {
		t.Errorf("race = %+v, want always_run false, timeout 1h, max_concurrency 2 (merged)", race)
	}
	if ok, _ := race.ShouldRun("main", func() ([]string, error) { return []string{"go.sum"}, nil }); !ok {
		t.Errorf("race does not run when go.sum changes")
	}
	e2e, _ := widget.Presubmit("e2e")
	if !e2e.ManualOnly() || !e2e.RunsAgainstBranch("release-1.2") || e2e.RunsAgainstBranch("dev") {
		t.Errorf("e2e is not a manual-only job for main and release branches")
	}
	nightly, _ := widget.Periodic("nightly")
	s, err := nightly.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	// 03:00 in Paris in January is 02:00 UTC.
	if got, want := s.Next(time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)), time.Date(2026, 1, 10, 2, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("nightly fires at %v, want %v", got, want)
	}
}

// TestReferenceMentionsEveryField fails when a configuration field is
// missing from docs/configuration.md.
func TestReferenceMentionsEveryField(t *testing.T) {
	t.Parallel()
	doc := readReference(t)
	w := walker{fields: map[reflect.Type]*structInfo{}}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[Config](), reflect.TypeFor[Repo](), reflect.TypeFor[Presubmit](),
		reflect.TypeFor[Postsubmit](), reflect.TypeFor[Periodic](),
		reflect.TypeFor[Local](), reflect.TypeFor[JobSandbox](),
	} {
		for _, name := range w.structInfo(typ).names {
			if !strings.Contains(doc, "`"+name+"`") {
				t.Errorf("%s does not document the field %s of %s", referencePath, name, typ.Name())
			}
		}
	}
}

// TestExampleConfigLoads keeps the example shipped with lockstep valid.
func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	c, err := Load("../../examples/lockstep.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Jobs()) == 0 {
		t.Errorf("the example has no jobs")
	}
}

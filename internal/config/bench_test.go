package config

import (
	"fmt"
	"strings"
	"testing"
)

// largeConfig returns a configuration of repos repositories with jobs
// presubmits each, plus a postsubmit and a periodic.
func largeConfig(repos, jobs int) string {
	var b strings.Builder
	b.WriteString("repos:\n")
	for r := range repos {
		fmt.Fprintf(&b, "  acme/repo-%d:\n    presubmits:\n", r)
		for j := range jobs {
			fmt.Fprintf(&b, "      - name: job-%d\n        run: make test-%d\n        timeout: 30m\n", j, j)
			switch j % 3 {
			case 0:
				b.WriteString("        always_run: true\n")
			case 1:
				b.WriteString("        run_if_changed: '^pkg/\\w+/.*\\.go$'\n        branches: ['^main$', '^release-.*']\n")
			case 2:
				b.WriteString("        skip_if_only_changed: '^docs/|\\.md$'\n")
			}
		}
		b.WriteString("    postsubmits:\n      - {name: build, run: make, branches: ['^main$']}\n")
		b.WriteString("    periodics:\n      - {name: nightly, run: make, cron: '0 3 * * *', time_zone: Europe/Paris}\n")
	}
	return b.String()
}

func BenchmarkParseValidate(b *testing.B) {
	in := largeConfig(50, 20) // 1,100 jobs
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		c, err := Parse(strings.NewReader(in), "bench.yaml")
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPresubmitShouldRun(b *testing.B) {
	files := []string{"README.md", "docs/a.md", "cmd/x/main.go", "pkg/store/sqlite.go"}
	changes := func() ([]string, error) { return files, nil }
	for _, validated := range []bool{true, false} {
		c := mustParse(b, largeConfig(1, 20))
		if validated {
			if err := c.Validate(); err != nil {
				b.Fatal(err)
			}
		}
		ps := c.Repos["acme/repo-0"].Presubmits
		b.Run(fmt.Sprintf("validated=%v", validated), func(b *testing.B) {
			for b.Loop() {
				for _, p := range ps {
					if _, err := p.ShouldRun("main", changes); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

func BenchmarkGetterGet(b *testing.B) {
	g := NewGetter(Default())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if g.Get() == nil {
				b.Fatal("nil config")
			}
		}
	})
}

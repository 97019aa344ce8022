package main

import (
	"fmt"
	"io"

	"github.com/lockstep-ci/lockstep/internal/config"
)

// validateCmd loads the configuration and prints every problem with its
// path, one per line; it exits 1 if there is any.
func validateCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	configPath := fs.String("config", defaultConfig, "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("validate takes no arguments, got %q", fs.Args())
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		problems := config.Problems(err)
		for _, p := range problems {
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintf(stderr, "%s: %s\n", *configPath, plural(len(problems), "problem", "problems"))
		return exitError(1)
	}
	jobs := 0
	for _, r := range cfg.Repos {
		jobs += len(r.Presubmits) + len(r.Postsubmits) + len(r.Periodics)
	}
	fmt.Fprintf(stdout, "%s: valid (%s, %s)\n", *configPath,
		plural(len(cfg.Repos), "repository", "repositories"), plural(jobs, "job", "jobs"))
	return nil
}

// plural returns n and the noun in the form n takes: "1 job", "0 jobs".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

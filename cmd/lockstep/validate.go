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
		fmt.Fprintf(stderr, "%s: %d problem(s)\n", *configPath, len(problems))
		return exitError(1)
	}
	jobs := 0
	for _, r := range cfg.Repos {
		jobs += len(r.Presubmits) + len(r.Postsubmits) + len(r.Periodics)
	}
	fmt.Fprintf(stdout, "%s: valid (%d repositories, %d jobs)\n", *configPath, len(cfg.Repos), jobs)
	return nil
}

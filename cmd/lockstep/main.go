// Command lockstep is a CI orchestrator for projects hosted on GitHub. See
// the README for what it does and docs/ for how to run it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit exitError
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "lockstep:", err)
		os.Exit(1)
	}
}

// exitError ends the process with its value as exit status, without a
// message: whatever needed saying was said.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

const usage = `lockstep is a CI orchestrator: forge events in, one run per trigger, one status per job out.

Usage:
  lockstep serve    [--config lockstep.yaml] [--data-dir ./lockstep-data] [--listen 127.0.0.1:8080] [--store postgres://…]
  lockstep run JOB  [--config lockstep.yaml] [--repo OWNER/NAME] [--ref REF]
  lockstep validate [--config lockstep.yaml]
  lockstep hook send [--url URL] --secret-file FILE --event EVENT (PAYLOAD.json | --pr N --repo OWNER/NAME [--git DIR] [--comment TEXT])
  lockstep version

Run "lockstep COMMAND -h" for a command's flags.
`

// run is lockstep's whole command line; main only adds the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCmd(ctx, rest, stdout, stderr)
	case "run":
		return runCmd(ctx, rest, stdout, stderr)
	case "validate":
		return validateCmd(rest, stdout, stderr)
	case "hook":
		return hookCmd(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "lockstep", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "lockstep: unknown command %q\n\n%s", cmd, usage)
	return exitError(2)
}

// version returns the module version and VCS revision lockstep was built
// from, as far as the build recorded them.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += " " + rev + modified
	}
	return v
}

// newFlags returns a flag set for one command that reports errors through
// the command's stderr instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lockstep "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("lockstep run unit --config x" as well as
// "lockstep run --config x unit").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

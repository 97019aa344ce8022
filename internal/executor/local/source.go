package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// Checkout clones refs into dir, an empty directory, and merges a pull
// request's head onto its base, exactly as an execution's preparation
// does, with the same fixed merge identity and date, so that another
// executor tests the same commit the local one would. git's messages go
// to out. A failure is an *executor.InfraError: CloneFailed or
// MergeConflict. git is the git command ("git" when empty).
func Checkout(ctx context.Context, git string, refs run.Refs, dir string, out io.Writer) error {
	if git == "" {
		git = "git"
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		return &executor.InfraError{Reason: executor.ReasonStart, Err: fmt.Errorf("find sh: %w", err)}
	}
	if git, err = exec.LookPath(git); err != nil {
		return &executor.InfraError{Reason: executor.ReasonClone, Err: fmt.Errorf("find git: %w", err)}
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return &executor.InfraError{Reason: executor.ReasonStart, Err: fmt.Errorf("create report pipe: %w", err)}
	}
	defer reportR.Close()
	// The job script is empty: the preparation ends right after the
	// checkout.
	args := prepareArgs(sh, git, refs, workspace(""), "")
	args[len(args)-2] = os.DevNull // the job script; the last is the git cache, none here
	cmd := exec.CommandContext(ctx, sh, args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{reportW}
	err = cmd.Start()
	reportW.Close()
	if err != nil {
		return &executor.InfraError{Reason: executor.ReasonStart, Err: fmt.Errorf("start checkout: %w", err)}
	}
	report, _ := io.ReadAll(io.LimitReader(reportR, 4096))
	waitErr := cmd.Wait()
	prep := parsePreparation(string(report))
	switch {
	case prep.infra != nil:
		return prep.infra
	case !prep.execed || waitErr != nil:
		return &executor.InfraError{Reason: executor.ReasonClone, Err: fmt.Errorf("checkout of %s ended early: %v (%s)", refs.CloneURL, waitErr, strings.TrimSpace(string(report)))}
	}
	return nil
}

// ProwEnv returns the variables Prow's pod utilities give a job, for r
// (JOB_NAME, JOB_TYPE, BUILD_ID, PULL_NUMBER, PULL_PULL_SHA, JOB_SPEC…),
// plus LOCKSTEP_RUN_ID: what the local executor sets beside the job's
// own environment, for executors that pass them on another way.
func ProwEnv(r *run.Run) map[string]string {
	env := prowEnv(r)
	env[envRunID] = r.ID.String()
	return env
}

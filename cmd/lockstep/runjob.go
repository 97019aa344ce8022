package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/redact"
	lsrun "github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// errRunDone ends the watch that waits for a run to finish.
var errRunDone = errors.New("run finished")

// runCmd runs one job once on this machine, through the same runner and
// executor as lockstep serve, streaming its log to stdout.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	configPath := fs.String("config", defaultConfig, "configuration file")
	repoName := fs.String("repo", "", "repository of the job, OWNER/NAME (needed when several repositories have a job of that name)")
	ref := fs.String("ref", "HEAD", "branch, tag or commit to test")
	dataDir := fs.String("data-dir", "", "keep the run's database and log here (default: a temporary directory, removed afterwards)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("run takes one job name, got %d arguments; usage: lockstep run JOB [--config F] [--repo OWNER/NAME] [--ref REF]", len(pos))
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	job, err := pickJob(cfg, pos[0], *repoName)
	if err != nil {
		return err
	}
	if job.ExecutorName() != config.ExecutorLocal {
		return fmt.Errorf("job %s runs with executor %s; lockstep run runs local jobs only: start its runs through lockstep serve", job.Name, job.ExecutorName())
	}
	cloneURL := cfg.Repos[job.Repo].EffectiveCloneURL(job.Repo)
	baseRef, sha, err := resolveRef(ctx, cloneURL, *ref)
	if err != nil {
		return err
	}

	dir, cacheDir := *dataDir, ""
	if dir != "" {
		// A data directory outlives the run: its git cache saves the next
		// run the clone.
		cacheDir = filepath.Join(dir, "cache", "git")
	} else {
		if dir, err = os.MkdirTemp("", "lockstep-run-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	log := slog.New(slog.NewTextHandler(redact.NewWriter(stderr, secretValues(cfg)), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := sqlite.Open(ctx, filepath.Join(dir, "lockstep.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	execOpts, err := localOptions(cfg, *configPath, dir)
	if err != nil {
		return err
	}
	execOpts.Logger, execOpts.Stdout, execOpts.CacheDir = log, stdout, cacheDir
	execOpts.Secrets = func() []string { return secretValues(cfg) }
	exec := local.New(execOpts)
	requester := "cli"
	if u, err := user.Current(); err == nil {
		requester = u.Username
	}
	rn, err := st.CreateRun(ctx, &lsrun.Run{Spec: lsrun.Spec{
		Job:   job.Name,
		Type:  job.Type,
		Refs:  lsrun.Refs{Repo: job.Repo, CloneURL: cloneURL, BaseRef: baseRef, BaseSHA: sha},
		Cause: lsrun.CauseCLI, Requester: requester,
		Script: job.Run, Env: job.Env, Timeout: job.EffectiveTimeout(),
		Secrets: job.Secrets, NoNetwork: job.Sandbox.NoNetwork(),
		TriggerKey: "cli/" + randomID(),
	}})
	if err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	fmt.Fprintf(stderr, "lockstep: running %s of %s at %s (%s)\n", job.Name, job.Repo, baseRef, shortSHA(sha))

	rnr := runner.New(runner.Options{
		Store: st, Executor: exec, Logger: log, Workers: 1,
		Config: func() *config.Config { return cfg },
	})
	var final *lsrun.Run
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopRunner := context.WithCancel(gctx)
	g.Go(func() error { return rnr.Run(runCtx) })
	g.Go(func() error {
		defer stopRunner()
		err := st.WatchRuns(gctx, 0, func(ev store.RunEvent) error {
			if ev.Run.ID == rn.ID && ev.Run.Status.State.Terminal() {
				final = ev.Run
				return errRunDone
			}
			return nil
		})
		if errors.Is(err, errRunDone) {
			return nil
		}
		return err
	})
	werr := g.Wait()
	if serr := exec.Shutdown(context.WithoutCancel(ctx)); serr != nil {
		log.Error("executor shutdown", "err", serr)
	}
	if final == nil {
		if werr == nil || errors.Is(werr, context.Canceled) {
			werr = errors.New("interrupted; the job was stopped")
		}
		return werr
	}
	line := fmt.Sprintf("lockstep: %s %s", job.Name, final.Status.State)
	if final.Status.Reason != "" {
		line += " (" + final.Status.Reason + ")"
	}
	if final.Status.Message != "" {
		line += ": " + final.Status.Message
	}
	fmt.Fprintln(stderr, line)
	if final.Status.State != lsrun.Success {
		return exitError(1)
	}
	return nil
}

// pickJob finds the job named name, in repo if given.
func pickJob(cfg *config.Config, name, repo string) (config.Job, error) {
	if repo != "" {
		if _, ok := cfg.Repos[repo]; !ok {
			return config.Job{}, fmt.Errorf("repository %q is not in the configuration", repo)
		}
		job, ok := cfg.Job(repo, name)
		if !ok {
			return config.Job{}, fmt.Errorf("repository %s has no job %q", repo, name)
		}
		return job, nil
	}
	jobs, err := cfg.FindJob(name)
	if err != nil {
		return config.Job{}, err
	}
	if len(jobs) > 1 {
		var repos []string
		for _, j := range jobs {
			repos = append(repos, j.Repo)
		}
		return config.Job{}, fmt.Errorf("job %q exists in %s: choose one with --repo", name, strings.Join(repos, ", "))
	}
	return jobs[0], nil
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// resolveRef asks the repository at url which commit ref names, and which
// branch HEAD is when ref is HEAD.
func resolveRef(ctx context.Context, url, ref string) (branch, sha string, err error) {
	if shaRE.MatchString(ref) {
		return ref, ref, nil
	}
	cmd := exec.CommandContext(ctx, "git", "ls-remote", "--symref", url, ref)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("resolve %s in %s: %v: %s", ref, url, err, strings.TrimSpace(errb.String()))
	}
	branch = ref
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 3 && fields[0] == "ref:" && fields[2] == ref:
			branch = strings.TrimPrefix(fields[1], "refs/heads/")
		case len(fields) == 2 && sha == "" && shaRE.MatchString(fields[0]):
			sha = fields[0]
		}
	}
	if sha == "" {
		return "", "", fmt.Errorf("ref %q not found in %s", ref, url)
	}
	return branch, sha, nil
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Package local runs jobs as processes on the machine lockstep runs on.
//
// Each execution is one process group. Its leader is a `sh` that lockstep
// starts with Setpgid and Pdeathsig=SIGKILL; the leader clones and merges
// the run's refs with the git CLI, then replaces itself (exec) with
// `sh -e` running the job's script. Doing the git steps inside the group,
// rather than from lockstep before the group exists, gives one handle for
// the whole execution, known as soon as Start returns: killing the group
// stops a slow clone as surely as a job and every process it started,
// grandchildren included, before and after a lockstep restart. The leader
// tells lockstep on a private pipe whether the preparation failed, and
// why, so an infrastructure failure (CloneFailed, MergeConflict) is never
// mistaken for the job's own exit status.
//
// Pdeathsig kills the leader if lockstep dies (strictly: if the thread
// that started it ends, which the Go runtime does not do to threads it
// did not lock); what the job started lives on in the group, and the next
// lockstep finds it through the run's handle and kills it. A process that
// leaves the group on purpose (setsid, or a shell with job control)
// escapes Kill; isolating those needs cgroups or the kube executor.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/redact"
	"github.com/lockstep-ci/lockstep/internal/run"
)

var _ executor.Executor = (*Executor)(nil)

// Options configures an Executor.
type Options struct {
	// WorkDir is where workspaces are made, one per execution.
	WorkDir string
	// LogDir is where each run's combined output is written, as
	// LogDir/<run id>.log.
	LogDir string
	// LogSink, if set, gets a copy of each run's output as it is written
	// (the store, so that every replica can show it).
	LogSink executor.LogSink
	// Logger receives lockstep's own messages about executions; nil
	// discards them.
	Logger *slog.Logger
	// Stdout, if set, receives a copy of every execution's combined
	// output (lockstep run streams the log this way).
	Stdout io.Writer
	// GitPath is the git command; "git" (found in PATH) when empty.
	GitPath string
	// CacheDir, if set, holds a bare mirror of each repository that runs
	// clone from (see gitCache); jobs only read it. Empty: every run
	// clones from the repository itself.
	CacheDir string
	// Clock tells when a mirror was fetched; the real clock when nil.
	Clock clock.PassiveClock

	// Sandbox says whether executions run in a bubblewrap sandbox
	// (sandbox.go); default SandboxAuto. BwrapPath is the bwrap command;
	// "bwrap" (found in PATH) when empty.
	Sandbox   SandboxMode
	BwrapPath string
	// Hidden are files and directories a sandboxed job does not see:
	// lockstep's data directory, configuration and secret files.
	// ReadOnly are paths it sees read-only even when they are inside a
	// hidden directory (a git object cache the clone reads).
	Hidden   []string
	ReadOnly []string
	// SecretsDir holds the values of the secrets jobs name (run.Spec's
	// Secrets), one file per secret.
	SecretsDir string
	// Secrets, if set, returns the values of lockstep's own secrets
	// (tokens, keys): they are masked in every run's log, as are the
	// run's own secrets.
	Secrets func() []string
}

// outputWaitDelay bounds how long lockstep waits, after an execution's
// process group was killed, for a process that escaped the group to close
// the pipe that copies output to Options.Stdout.
const outputWaitDelay = 5 * time.Second

// Executor runs each job as a process group on this machine. Create it
// with New and stop it with Shutdown. It is safe for concurrent use.
//
// It remembers the executions it started, by run ID, for Status and Kill
// until Cleanup forgets one. Starting a run it already has an
// execution of returns that execution's Started again and runs nothing.
type Executor struct {
	opts   Options
	log    *slog.Logger
	base   map[string]string // the environment jobs inherit
	bootID string
	cache  *gitCache // nil without Options.CacheDir
	probe  sandboxProbe

	// mu guards execs, starting, active and closed.
	mu       sync.Mutex
	execs    map[run.ID]*execution
	starting map[run.ID]bool
	// active counts the goroutines Start launched, and Starts under way,
	// that have not finished; idle is closed once closed is set and active
	// is zero.
	active int
	closed bool
	idle   chan struct{}
}

// execution is one run's process group.
type execution struct {
	started executor.Started
	pgid    int
	// done is closed when outcome is final.
	done chan struct{}

	// mu guards exited and killed, and makes a kill and the leader's
	// reaping exclusive, so that a PID that is no longer the group's is
	// never signalled.
	mu     sync.Mutex
	exited bool // the leader has exited; its zombie may be reaped any time
	killed bool // Kill signalled the group before the leader exited

	outcome executor.Outcome
}

// New returns an Executor with opts.
func New(opts Options) *Executor {
	if opts.GitPath == "" {
		opts.GitPath = "git"
	}
	if opts.Sandbox == "" {
		opts.Sandbox = SandboxAuto
	}
	if opts.BwrapPath == "" {
		opts.BwrapPath = "bwrap"
	}
	// The job runs in its workspace, so paths given relative to lockstep's
	// own working directory must not stay relative.
	for _, dir := range []*string{&opts.WorkDir, &opts.LogDir, &opts.CacheDir} {
		if abs, err := filepath.Abs(*dir); err == nil && *dir != "" {
			*dir = abs
		}
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cache *gitCache
	if opts.CacheDir != "" {
		cache = newGitCache(opts.CacheDir, opts.GitPath, opts.Clock, log)
		// Sandboxed clones borrow the mirrors' objects: jobs read them,
		// never write them.
		opts.ReadOnly = append(slices.Clone(opts.ReadOnly), opts.CacheDir)
	}
	return &Executor{
		cache:    cache,
		opts:     opts,
		log:      log,
		base:     baseEnv(),
		bootID:   bootID(),
		execs:    make(map[run.ID]*execution),
		starting: make(map[run.ID]bool),
		idle:     make(chan struct{}),
	}
}

// Start prepares a workspace and a log for r and starts its process group,
// whose leader clones r's refs and then runs r's script. It returns once
// the group exists; notify is called once, from a goroutine the Executor
// owns, after the execution ended and Status reports it. notify should
// return promptly: Shutdown waits for it.
//
// Start fails with an *executor.InfraError: WorkspaceFailed when the
// workspace or the log cannot be made, CloneFailed when git cannot be
// found, StartFailed when the process cannot be started or the Executor
// was shut down. Clone and merge failures come later, in the Outcome.
func (e *Executor) Start(ctx context.Context, r *run.Run, notify func()) (executor.Started, error) {
	if err := ctx.Err(); err != nil {
		return executor.Started{}, &executor.InfraError{Reason: executor.ReasonStart, Err: err}
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return executor.Started{}, &executor.InfraError{Reason: executor.ReasonStart, Err: errors.New("local executor is shut down")}
	}
	if x, ok := e.execs[r.ID]; ok {
		e.mu.Unlock()
		return x.started, nil
	}
	if e.starting[r.ID] {
		e.mu.Unlock()
		return executor.Started{}, &executor.InfraError{Reason: executor.ReasonStart, Err: fmt.Errorf("run %s is already being started", r.ID)}
	}
	e.starting[r.ID] = true
	e.active++
	e.mu.Unlock()

	x, w, err := e.start(ctx, r)

	e.mu.Lock()
	delete(e.starting, r.ID)
	if err != nil {
		e.finishedLocked()
		e.mu.Unlock()
		return executor.Started{}, err
	}
	e.execs[r.ID] = x
	closed := e.closed
	go e.wait(r, x, w, notify)
	e.mu.Unlock()

	if closed {
		// Shutdown began while the group was being started, and did not
		// see it to kill it.
		_ = x.kill()
	}
	e.log.Info("execution started", "run", r.ID, "job", r.Spec.Job, "handle", x.started.Handle, "log", x.started.LogPath)
	return x.started, nil
}

// waiter holds what the goroutine watching an execution needs and owns.
type waiter struct {
	cmd    *exec.Cmd
	logf   *os.File
	sink   io.WriteCloser // the LogSink's writer, or nil
	report *os.File       // read end of the leader's descriptor 3
	ws     workspace
	out    *redact.Writer // masks secrets on their way to logf
}

// start does the synchronous part of Start.
func (e *Executor) start(ctx context.Context, r *run.Run) (*execution, waiter, error) {
	sandbox, err := e.decideSandbox(r)
	if err != nil {
		return nil, waiter{}, err
	}
	secrets, err := readSecrets(e.opts.SecretsDir, r.Spec.Secrets)
	if err != nil {
		return nil, waiter{}, err
	}
	ws, err := e.makeWorkspace(r)
	if err != nil {
		return nil, waiter{}, &executor.InfraError{Reason: executor.ReasonWorkspace, Err: err}
	}
	fail := func(reason string, err error) (*execution, waiter, error) {
		if rerr := ws.remove(); rerr != nil {
			e.log.Warn("cannot remove workspace", "run", r.ID, "err", rerr)
		}
		return nil, waiter{}, &executor.InfraError{Reason: reason, Err: err}
	}

	logPath := filepath.Join(e.opts.LogDir, r.ID.String()+".log")
	if err := os.MkdirAll(e.opts.LogDir, 0o755); err != nil {
		return fail(executor.ReasonWorkspace, fmt.Errorf("create log directory: %w", err))
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fail(executor.ReasonWorkspace, fmt.Errorf("open log: %w", err))
	}

	sh, err := exec.LookPath("sh")
	if err != nil {
		logf.Close()
		return fail(executor.ReasonStart, fmt.Errorf("find sh: %w", err))
	}
	git := e.opts.GitPath
	if r.Spec.Refs.CloneURL != "" {
		if git, err = exec.LookPath(git); err != nil {
			logf.Close()
			return fail(executor.ReasonClone, fmt.Errorf("find git: %w", err))
		}
	}

	reportR, reportW, err := os.Pipe()
	if err != nil {
		logf.Close()
		return fail(executor.ReasonStart, fmt.Errorf("create report pipe: %w", err))
	}
	args := prepareArgs(sh, git, r.Spec.Refs, ws, e.cache.prepare(ctx, r, ws.src()))
	env := withSecrets(jobEnv(e.base, r, ws), secrets)
	path := sh
	if sandbox.bwrap != "" {
		if err := os.Mkdir(ws.cache(), 0o755); err != nil {
			logf.Close()
			return fail(executor.ReasonWorkspace, fmt.Errorf("create cache directory: %w", err))
		}
		path, args, env = sandbox.bwrap, e.sandboxArgs(sandbox.bwrap, r, ws, args), sandboxEnv(env, ws)
	}
	// Everything the job writes goes through out, which masks secrets, to
	// each of the log's destinations.
	var dest io.Writer = logf
	var sink io.WriteCloser
	if e.opts.LogSink != nil {
		sink = e.opts.LogSink.Open(r.ID, executor.LogNew)
		dest = io.MultiWriter(dest, sink)
	}
	if e.opts.Stdout != nil {
		dest = io.MultiWriter(dest, e.opts.Stdout)
	}
	out := redact.NewWriter(dest, e.maskedValues(secrets))
	if c := sandbox.warning; c != nil {
		fmt.Fprintf(out, "lockstep: warning: %s\n", c.Message)
	}
	cmd := &exec.Cmd{
		Path:       path,
		Args:       args,
		Dir:        ws.src(),
		Env:        env,
		Stdout:     out,
		Stderr:     out,
		ExtraFiles: []*os.File{reportW},
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
		WaitDelay: outputWaitDelay,
	}
	err = cmd.Start()
	reportW.Close()
	if err != nil {
		if sink != nil {
			sink.Close()
		}
		logf.Close()
		reportR.Close()
		return fail(executor.ReasonStart, fmt.Errorf("start process: %w", err))
	}
	pid := cmd.Process.Pid
	if err := lowerPriority(pid); err != nil {
		e.log.Warn("execution keeps lockstep's CPU priority", "run", r.ID, "err", err)
	}
	st, err := readStat(pid)
	if err != nil {
		_ = killGroup(pid)
		_ = cmd.Wait()
		if sink != nil {
			sink.Close()
		}
		logf.Close()
		reportR.Close()
		return fail(executor.ReasonStart, fmt.Errorf("read start time of process %d: %w", pid, err))
	}
	h := handle{pgid: pid, start: st.start, boot: e.bootID}
	x := &execution{
		started: executor.Started{Handle: h.String(), LogPath: logPath},
		pgid:    pid,
		done:    make(chan struct{}),
	}
	x.started.Condition = sandbox.warning
	return x, waiter{cmd: cmd, logf: logf, sink: sink, report: reportR, ws: ws, out: out}, nil
}

// makeWorkspace creates r's workspace and writes its script.
func (e *Executor) makeWorkspace(r *run.Run) (workspace, error) {
	if err := os.MkdirAll(e.opts.WorkDir, 0o755); err != nil {
		return "", fmt.Errorf("create work directory: %w", err)
	}
	dir, err := os.MkdirTemp(e.opts.WorkDir, r.ID.String()+"-")
	if err != nil {
		return "", fmt.Errorf("create workspace: %w", err)
	}
	ws := workspace(dir)
	if err := e.fillWorkspace(r, ws); err != nil {
		if rerr := ws.remove(); rerr != nil {
			e.log.Warn("cannot remove workspace", "run", r.ID, "err", rerr)
		}
		return "", err
	}
	return ws, nil
}

func (e *Executor) fillWorkspace(r *run.Run, ws workspace) error {
	for _, d := range []string{ws.src(), ws.artifacts()} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create workspace: %w", err)
		}
	}
	if err := os.WriteFile(ws.script(), []byte(r.Spec.Script), 0o644); err != nil {
		return fmt.Errorf("write job script: %w", err)
	}
	return nil
}

// wait watches x until it ends, then records its outcome, removes its
// workspace and calls notify.
func (e *Executor) wait(r *run.Run, x *execution, w waiter, notify func()) {
	defer e.finished()

	if err := waitExited(x.pgid); err != nil {
		e.log.Error("cannot wait for execution", "run", r.ID, "err", err)
	}
	// The leader is a zombie now, so the group's ID is still this
	// group's: kill what the job left running, then let the leader go.
	x.mu.Lock()
	if err := killGroup(x.pgid); err != nil {
		e.log.Warn("cannot kill what the job left running", "run", r.ID, "err", err)
	}
	x.exited = true
	killed := x.killed
	x.mu.Unlock()

	waitErr := w.cmd.Wait()
	if err := w.out.Close(); err != nil {
		e.log.Warn("cannot write the end of the log", "run", r.ID, "err", err)
	}
	w.logf.Close()
	if w.sink != nil {
		w.sink.Close()
	}
	prep := parsePreparation(readReport(w.report))
	w.report.Close()

	out := outcome(w.cmd.ProcessState, waitErr, prep, killed)
	out.BuildOutput, out.HaveBuild = w.ws.readBuild()
	if err := w.ws.remove(); err != nil {
		e.log.Warn("cannot remove workspace", "run", r.ID, "err", err)
	}

	x.mu.Lock()
	x.outcome = out
	x.mu.Unlock()
	close(x.done)
	e.log.Info("execution ended", "run", r.ID, "job", r.Spec.Job, "exit", out.ExitCode, "infra", out.Infra)
	if notify != nil {
		notify()
	}
}

// readReport reads what the leader wrote on descriptor 3. Every holder of
// the write end has exited when it is called, so it normally sees the end
// of the pipe at once; the deadline only guards against a leak.
func readReport(f *os.File) string {
	_ = f.SetReadDeadline(time.Now().Add(time.Second))
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	return string(b)
}

// outcome says how an execution ended, from the leader's state and report.
func outcome(ps *os.ProcessState, waitErr error, prep preparation, killed bool) executor.Outcome {
	code := exitCode(ps)
	switch {
	case prep.execed:
		return executor.Outcome{Done: true, ExitCode: code}
	case prep.infra != nil:
		return executor.Outcome{Done: true, ExitCode: code, Infra: prep.infra}
	case killed:
		return executor.Outcome{Done: true, ExitCode: code}
	}
	err := fmt.Errorf("workspace preparation ended before the job script started: %v", waitErr)
	if waitErr == nil {
		err = errors.New("workspace preparation ended before the job script started")
	}
	return executor.Outcome{Done: true, ExitCode: code, Infra: &executor.InfraError{Reason: executor.ReasonStart, Err: err}}
}

// exitCode returns the exit status of a process, or 128 plus the signal
// number when a signal ended it, as shells report it; -1 when unknown.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// finished records the end of a goroutine or a Start.
func (e *Executor) finished() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.finishedLocked()
}

func (e *Executor) finishedLocked() {
	e.active--
	e.closeIdleLocked()
}

func (e *Executor) closeIdleLocked() {
	if e.closed && e.active == 0 {
		select {
		case <-e.idle:
		default:
			close(e.idle)
		}
	}
}

// Status returns the outcome of r's execution, or executor.ErrUnknown when
// this Executor did not start one (lockstep restarted since) or forgot it.
func (e *Executor) Status(ctx context.Context, r *run.Run) (executor.Outcome, error) {
	x, ok := e.lookup(r.ID)
	if !ok {
		return executor.Outcome{}, executor.ErrUnknown
	}
	select {
	case <-x.done:
		return x.outcome, nil
	default:
		return executor.Outcome{}, nil
	}
}

// Kill stops r's execution: it sends SIGKILL to its whole process group.
// For an execution this Executor started, Kill returns once the execution
// has ended and Status reports it (Done, with a non-zero exit unless the
// job had already ended by itself). For any other, it finds the group from
// r.Status.Handle and kills it only if it is provably r's (see
// killByHandle); it does not wait. Killing an execution that is gone, or
// a run with no handle, is not an error.
func (e *Executor) Kill(ctx context.Context, r *run.Run) error {
	if x, ok := e.lookup(r.ID); ok {
		if err := x.kill(); err != nil {
			return fmt.Errorf("kill run %s: %w", r.ID, err)
		}
		select {
		case <-x.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("kill run %s: wait for the end: %w", r.ID, ctx.Err())
		}
	}
	if r.Status.Handle == "" {
		return nil
	}
	h, err := parseHandle(r.Status.Handle)
	if err != nil {
		return fmt.Errorf("kill run %s: %w", r.ID, err)
	}
	if err := killByHandle(h, r.ID.String(), e.bootID); err != nil {
		return fmt.Errorf("kill run %s: %w", r.ID, err)
	}
	return nil
}

// kill signals x's group unless its leader has exited.
func (x *execution) kill() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.exited {
		return nil
	}
	x.killed = true
	return killGroup(x.pgid)
}

// Cleanup kills r's execution if it goes on and forgets it, so that its
// record no longer takes memory; Status then returns ErrUnknown for r.
func (e *Executor) Cleanup(ctx context.Context, r *run.Run) error {
	if err := e.Kill(ctx, r); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.execs[r.ID]; ok {
		select {
		case <-x.done:
			delete(e.execs, r.ID)
		default:
		}
	}
	return nil
}

func (e *Executor) lookup(id run.ID) (*execution, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.execs[id]
	return x, ok
}

// Shutdown kills every execution still going and waits until every
// goroutine the Executor started has returned (each execution's notify
// called), or ctx is done. Start fails after Shutdown.
func (e *Executor) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	var running []*execution
	for _, x := range e.execs {
		running = append(running, x)
	}
	e.closeIdleLocked()
	e.mu.Unlock()

	var errs []error
	for _, x := range running {
		if err := x.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	select {
	case <-e.idle:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("wait for executions to end: %w", ctx.Err()))
	}
	if len(errs) > 0 {
		return fmt.Errorf("shut down local executor: %w", errors.Join(errs...))
	}
	return nil
}

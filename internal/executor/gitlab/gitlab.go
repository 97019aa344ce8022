// Package gitlab runs jobs as GitLab CI pipelines, the way kubespray's
// failfast-ci bridges GitHub pull requests to GitLab, without its races.
//
// Starting a run pushes the commit under test (a pull request's head
// merged onto its base, as executor/local builds it, or the head alone)
// to the job's GitLab project, under a ref that names the run,
// lockstep/<repo>/pr-<n>/<run id>, with the ci.skip push option so that
// the push itself starts nothing. It then creates one pipeline for that
// ref with lockstep's Prow-compatible variables and LOCKSTEP_RUN_ID.
// Creating a pipeline is a side effect outside lockstep's store: before
// creating one, Start looks for a pipeline of the ref carrying the run's
// LOCKSTEP_RUN_ID and adopts it, so a crash (or a lost leader) between
// the creation and the runner recording the handle never makes a second.
//
// A pipeline is followed through GitLab's pipeline webhooks (Observe,
// fed by the POST /hook/gitlab intake and its deliveries processor), and
// by polling when no webhook came for PollInterval: the safety net for
// lost webhooks. While it runs, the traces of its running jobs are read
// incrementally into the run's log, each job's part headed by its name
// and stage; once it ends, every job's trace is read to its end before
// the outcome is reported. A log is only ever appended to, in its file
// and in the LogSink alike: a process following a pipeline again after
// a restart says so in the log and appends the traces again from their
// start below what the earlier process wrote.
//
// Pipeline statuses map to run states: created, waiting_for_resource,
// preparing, pending and scheduled keep the run scheduled (Waiting);
// running and manual (a manual job blocks the pipeline: the run waits for
// a person, bounded by its timeout) are running; success is success;
// canceled is aborted; failed is failure only when a failed job (one not
// allowed to fail) has failure_reason script_failure, and otherwise an
// infrastructure failure: error with the failure reason
// (runner_system_failure → RunnerSystemFailure…). skipped, a pipeline
// whose every job was skipped, tested nothing: error/PipelineSkipped.
package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	gl "gitlab.com/gitlab-org/api/client-go/v2"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/run"
)

var _ executor.Executor = (*Executor)(nil)

// Reasons of the infrastructure failures this executor reports, beside
// the failure reasons of GitLab's jobs in CamelCase.
const (
	ReasonPush            = "PushFailed"
	ReasonPipelineCreate  = "PipelineCreateFailed"
	ReasonPipelineFailed  = "PipelineFailed"
	ReasonPipelineSkipped = "PipelineSkipped"
	ReasonBadConfig       = "BadExecutorConfig"
)

// VariableRunID is the pipeline variable naming the run; Start adopts a
// pipeline of the run's ref that carries it.
const VariableRunID = "LOCKSTEP_RUN_ID"

// Options configures an Executor. URL and Token are required.
type Options struct {
	// URL is the GitLab instance (https://gitlab.com); the API is
	// URL/api/v4.
	URL   string
	Token string
	// HTTPClient makes the API calls; nil means a default pooled client.
	HTTPClient *http.Client
	// WorkDir holds the temporary clones the commit under test is built
	// in before it is pushed.
	WorkDir string
	// Logs receives the runs' logs; nil means files LogDir/<run id>.log.
	Logs   LogWriter
	LogDir string
	// LogSink, if set, gets a copy of everything written to the runs'
	// logs (the store, so that every replica can show them).
	LogSink executor.LogSink
	// GitPath is the git command; "git" when empty.
	GitPath string
	// PollInterval is how long a pipeline may go without a webhook before
	// lockstep asks GitLab; default 1m. TraceInterval is how often the
	// traces of running jobs are read; default 10s.
	PollInterval  time.Duration
	TraceInterval time.Duration
	// MaxRetryWait bounds how long one API call waits on a Retry-After;
	// default 1m.
	MaxRetryWait time.Duration
	Clock        clock.WithTicker
	Logger       *slog.Logger
	// Notify, if set, asks the runner to look at a run again (the
	// runner's Enqueue). It is how a pipeline followed again after a
	// restart, which no Start gave a notify function, wakes its run, and
	// how a webhook about a pipeline not followed yet gets its run looked
	// at at once rather than at the next poll.
	Notify func(run.ID)

	// afterCreate, in tests, runs right after a pipeline was created and
	// before Start returns; an error from it is returned by Start, as if
	// the process had died at that point.
	afterCreate func(r *run.Run, pipeline int64) error
}

// Executor runs jobs as GitLab pipelines. Create it with New and stop it
// with Shutdown. It is safe for concurrent use.
//
// It follows, by run ID, the pipelines of runs it started or was asked
// about (Status after a restart finds a run's pipeline from its handle),
// until Cleanup forgets one.
type Executor struct {
	opts Options
	api  *gl.Client
	log  *slog.Logger
	logs LogWriter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards follows, starting, early and runLogs.
	mu       sync.Mutex
	follows  map[run.ID]*follow
	starting map[run.ID]*sync.Mutex
	// early keeps webhooks about runs not followed yet: a pipeline's
	// first webhooks can come before the API's answer to its creation.
	early   map[run.ID][]*gl.PipelineEvent
	runLogs map[run.ID]*runLog
}

// New returns an Executor.
func New(opts Options) (*Executor, error) {
	if opts.URL == "" || opts.Token == "" {
		return nil, errors.New("gitlab executor: URL and Token are required")
	}
	if opts.GitPath == "" {
		opts.GitPath = "git"
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = config.DefaultGitLabPollInterval
	}
	if opts.TraceInterval <= 0 {
		opts.TraceInterval = config.DefaultGitLabTraceInterval
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clientOpts := []gl.ClientOptionFunc{
		gl.WithBaseURL(strings.TrimRight(opts.URL, "/") + "/api/v4"),
		// A POST that failed with a 5xx may have been carried out: Start
		// retries pipeline creation itself, after looking for the
		// pipeline it may have made.
		gl.WithOnlyIdempotentRetries(),
		gl.WithCustomBackoff(retryAfterBackoff(opts.MaxRetryWait)),
		gl.WithCustomRetryWaitMinMax(100*time.Millisecond, 2*time.Second),
		gl.WithCustomRetryMax(4),
	}
	if opts.HTTPClient != nil {
		clientOpts = append(clientOpts, gl.WithHTTPClient(opts.HTTPClient))
	}
	api, err := gl.NewClient(opts.Token, clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("gitlab executor: %w", err)
	}
	logs := opts.Logs
	if logs == nil {
		logs = FileLogs(opts.LogDir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Executor{
		opts: opts, api: api, log: log, logs: logs, ctx: ctx, cancel: cancel,
		follows: map[run.ID]*follow{}, starting: map[run.ID]*sync.Mutex{}, early: map[run.ID][]*gl.PipelineEvent{},
		runLogs: map[run.ID]*runLog{},
	}, nil
}

// retryAfterBackoff waits what a 429's Retry-After asks (at most max),
// and otherwise backs off exponentially between min and max.
func retryAfterBackoff(limit time.Duration) retryablehttp.Backoff {
	return func(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				return clampDuration(time.Duration(s)*time.Second, 0, limit)
			}
		}
		return retryablehttp.DefaultBackoff(min, max, attempt, resp)
	}
}

func clampDuration(d, lo, hi time.Duration) time.Duration { return max(lo, min(d, hi)) }

// Shutdown stops following pipelines (they go on on GitLab; a new process
// follows them again) and waits for the followers to return and the
// logs to be flushed to the LogSink, or ctx.
func (e *Executor) Shutdown(ctx context.Context) error {
	e.cancel()
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		e.closeLogs()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shut down gitlab executor: %w", ctx.Err())
	}
}

// Ref returns the ref a run's commit is pushed under:
// lockstep/<repo>/pr-<n>/<run id> for a pull request,
// lockstep/<repo>/<type>/<run id> otherwise.
func Ref(r *run.Run) string {
	if r.Spec.Refs.Pull != 0 {
		return fmt.Sprintf("lockstep/%s/pr-%d/%s", r.Spec.Refs.Repo, r.Spec.Refs.Pull, r.ID)
	}
	return fmt.Sprintf("lockstep/%s/%s/%s", r.Spec.Refs.Repo, r.Spec.Type, r.ID)
}

// runConfig reads what the run recorded of its job's gitlab section.
func runConfig(r *run.Run) (config.GitLabRun, error) {
	var c config.GitLabRun
	if len(r.Spec.ExecutorConfig) == 0 {
		return c, &executor.InfraError{Reason: ReasonBadConfig, Err: errors.New("the run records no gitlab section")}
	}
	if err := json.Unmarshal(r.Spec.ExecutorConfig, &c); err != nil || c.Project == "" {
		return c, &executor.InfraError{Reason: ReasonBadConfig, Err: fmt.Errorf("the run's gitlab section %s is not readable: %v", r.Spec.ExecutorConfig, err)}
	}
	return c, nil
}

// startLock serializes Starts of one run.
func (e *Executor) startLock(id run.ID) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	mu, ok := e.starting[id]
	if !ok {
		mu = new(sync.Mutex)
		e.starting[id] = mu
	}
	return mu
}

// Start pushes r's commit and creates (or adopts) its pipeline. It
// returns the handle "project#pipeline id", the log path and the
// pipeline's web URL. Failures are *executor.InfraError: CloneFailed and
// MergeConflict from building the commit, PushFailed, and
// PipelineCreateFailed when GitLab refuses the pipeline.
func (e *Executor) Start(ctx context.Context, r *run.Run, notify func()) (executor.Started, error) {
	mu := e.startLock(r.ID)
	mu.Lock()
	defer mu.Unlock()
	if f, ok := e.lookup(r.ID); ok {
		f.setNotify(notify)
		return f.started(e.logs.Path(r.ID)), nil
	}
	cfg, err := runConfig(r)
	if err != nil {
		return executor.Started{}, err
	}
	// The log of an earlier attempt (a process that died before the
	// runner recorded the start) stays: this one's lines follow it.
	ref := Ref(r)
	created, err := e.push(ctx, r, cfg, ref)
	if err != nil {
		return executor.Started{}, err
	}
	var p *gl.Pipeline
	if !created {
		// The ref existed: an earlier attempt pushed it and may have made
		// the pipeline.
		if p, err = e.findPipeline(ctx, cfg.Project, ref, r.ID); err != nil {
			return executor.Started{}, &executor.InfraError{Reason: ReasonPipelineCreate, Err: err}
		}
	}
	if p == nil {
		if p, err = e.createPipeline(ctx, r, cfg, ref); err != nil {
			return executor.Started{}, err
		}
		if e.opts.afterCreate != nil {
			if err := e.opts.afterCreate(r, p.ID); err != nil {
				return executor.Started{}, err
			}
		}
	} else {
		e.appendf(r.ID, "lockstep: adopted pipeline %d of %s, created by an earlier attempt\n", p.ID, ref)
	}
	f := e.track(r, cfg, p.ID, p.WebURL, p.Status, nil, notify)
	e.log.Info("pipeline started", "run", r.ID, "job", r.Spec.Job, "project", cfg.Project, "pipeline", p.ID, "ref", ref)
	return f.started(e.logs.Path(r.ID)), nil
}

// push builds r's commit in a temporary clone and pushes it to ref,
// reporting whether the ref is new on the remote.
func (e *Executor) push(ctx context.Context, r *run.Run, cfg config.GitLabRun, ref string) (created bool, err error) {
	if err := os.MkdirAll(e.opts.WorkDir, 0o755); err != nil {
		return false, &executor.InfraError{Reason: executor.ReasonWorkspace, Err: fmt.Errorf("create work directory: %w", err)}
	}
	dir, err := os.MkdirTemp(e.opts.WorkDir, r.ID.String()+"-")
	if err != nil {
		return false, &executor.InfraError{Reason: executor.ReasonWorkspace, Err: fmt.Errorf("create workspace: %w", err)}
	}
	defer os.RemoveAll(dir)
	refs := r.Spec.Refs
	if !cfg.Merge && refs.Pull != 0 {
		// The head alone, checked out by SHA.
		refs = run.Refs{Repo: refs.Repo, CloneURL: refs.CloneURL, BaseSHA: refs.HeadSHA}
	}
	out := &logOutput{e: e, id: r.ID}
	if err := local.Checkout(ctx, e.opts.GitPath, refs, dir, out); err != nil {
		return false, err
	}
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, e.opts.GitPath, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	head, err := git("rev-parse", "HEAD")
	if err != nil {
		return false, &executor.InfraError{Reason: executor.ReasonClone, Err: err}
	}
	// What the remote has under ref: nothing (a first attempt), or the
	// commit an earlier attempt pushed (the merge is reproducible).
	remote, err := git("ls-remote", "--", cfg.Remote, "refs/heads/"+ref)
	if err != nil {
		return false, &executor.InfraError{Reason: ReasonPush, Err: fmt.Errorf("read %s of %s: %w", ref, cfg.Project, err)}
	}
	have, _, _ := strings.Cut(remote, "\t")
	if have == head {
		e.appendf(r.ID, "lockstep: %s already has %s as %s\n", cfg.Project, head, ref)
		return false, nil
	}
	e.appendf(r.ID, "lockstep: pushing %s to %s as %s\n", head, cfg.Project, ref)
	// ci.skip: the push itself must not start a pipeline.
	if _, err := git("push", "--force", "-o", "ci.skip", "--", cfg.Remote, "HEAD:refs/heads/"+ref); err != nil {
		return false, &executor.InfraError{Reason: ReasonPush, Err: fmt.Errorf("push to %s: %w", cfg.Project, err)}
	}
	return have == "", nil
}

// findPipeline returns the newest pipeline of ref in project that
// carries LOCKSTEP_RUN_ID id, or nil.
func (e *Executor) findPipeline(ctx context.Context, project, ref string, id run.ID) (*gl.Pipeline, error) {
	list, _, err := e.api.Pipelines.ListProjectPipelines(project, &gl.ListProjectPipelinesOptions{Ref: gl.Ptr(ref)}, gl.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list pipelines of %s in %s: %w", ref, project, err)
	}
	for _, p := range list {
		vars, _, err := e.api.Pipelines.GetPipelineVariables(project, p.ID, gl.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read variables of pipeline %d: %w", p.ID, err)
		}
		for _, v := range vars {
			if v.Key == VariableRunID && v.Value == id.String() {
				return &gl.Pipeline{ID: p.ID, Status: p.Status, WebURL: p.WebURL, Ref: p.Ref, SHA: p.SHA}, nil
			}
		}
	}
	return nil, nil
}

// Variables returns the variables of r's pipeline: the job's env, then
// its gitlab variables, then lockstep's (Prow's, LOCKSTEP_RUN_ID), the
// later winning, so a job cannot make lockstep lose track of its run.
func Variables(r *run.Run, cfg config.GitLabRun) map[string]string {
	vars := maps.Clone(r.Spec.Env)
	if vars == nil {
		vars = map[string]string{}
	}
	maps.Copy(vars, cfg.Variables)
	maps.Copy(vars, local.ProwEnv(r))
	return vars
}

// createPipeline creates r's pipeline. A creation that failed with a
// server error may have happened: it is looked for before trying again.
func (e *Executor) createPipeline(ctx context.Context, r *run.Run, cfg config.GitLabRun, ref string) (*gl.Pipeline, error) {
	vars := Variables(r, cfg)
	opts := &gl.CreatePipelineOptions{Ref: gl.Ptr(ref)}
	list := make([]*gl.PipelineVariableOptions, 0, len(vars))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		list = append(list, &gl.PipelineVariableOptions{Key: gl.Ptr(k), Value: gl.Ptr(vars[k]), VariableType: gl.Ptr(gl.EnvVariableType)})
	}
	opts.Variables = &list
	const attempts = 3
	for attempt := 1; ; attempt++ {
		p, resp, err := e.api.Pipelines.CreatePipeline(cfg.Project, opts, gl.WithContext(ctx))
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil || attempt == attempts || (resp != nil && resp.StatusCode < 500) {
			return nil, &executor.InfraError{Reason: ReasonPipelineCreate, Err: fmt.Errorf("create pipeline for %s in %s: %w", ref, cfg.Project, err)}
		}
		e.log.Warn("pipeline creation failed; looking for it before trying again", "run", r.ID, "project", cfg.Project, "err", err)
		if err := sleep(ctx, e.opts.Clock, time.Duration(attempt)*time.Second); err != nil {
			return nil, &executor.InfraError{Reason: ReasonPipelineCreate, Err: err}
		}
		if p, err := e.findPipeline(ctx, cfg.Project, ref, r.ID); err == nil && p != nil {
			return p, nil
		}
	}
}

func sleep(ctx context.Context, clk clock.Clock, d time.Duration) error {
	t := clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// parseHandle splits "project#pipeline id".
func parseHandle(h string) (project string, id int64, ok bool) {
	i := strings.LastIndexByte(h, '#')
	if i <= 0 {
		return "", 0, false
	}
	id, err := strconv.ParseInt(h[i+1:], 10, 64)
	return h[:i], id, err == nil && id > 0
}

// Status returns the outcome of r's pipeline. A run without a handle is
// unknown (Start adopts its pipeline, if one was made); a run with one
// that this Executor does not follow (lockstep restarted) is looked up on
// GitLab and followed from then on.
func (e *Executor) Status(ctx context.Context, r *run.Run) (executor.Outcome, error) {
	if r.Status.Handle == "" {
		return executor.Outcome{}, executor.ErrUnknown
	}
	if f, ok := e.lookup(r.ID); ok {
		return f.outcome(), nil
	}
	project, id, ok := parseHandle(r.Status.Handle)
	if !ok {
		return executor.Outcome{}, executor.ErrUnknown
	}
	cfg, err := runConfig(r)
	if err != nil {
		return executor.Outcome{}, executor.ErrUnknown
	}
	cfg.Project = project
	mu := e.startLock(r.ID)
	mu.Lock()
	defer mu.Unlock()
	if f, ok := e.lookup(r.ID); ok {
		return f.outcome(), nil
	}
	p, _, err := e.api.Pipelines.GetPipeline(project, id, gl.WithContext(ctx))
	if err != nil {
		return executor.Outcome{}, fmt.Errorf("get pipeline %d of %s: %w", id, project, err)
	}
	// What the earlier process wrote stays; the traces are read again
	// from their start, below it.
	e.appendf(r.ID, "lockstep: following pipeline %d again after a restart; the jobs' traces below are read again from their start\n", id)
	probe := &follow{project: project, id: id}
	jobs, err := e.listJobs(ctx, probe)
	if err != nil {
		return executor.Outcome{}, err
	}
	f := e.track(r, cfg, p.ID, p.WebURL, p.Status, jobs, nil)
	e.log.Info("following pipeline again", "run", r.ID, "project", project, "pipeline", id, "status", p.Status)
	return f.outcome(), nil
}

// Kill cancels r's pipeline if it is not finished: the one this Executor
// follows, the one r's handle names, or, for a run whose start was never
// recorded, the one Start would adopt.
func (e *Executor) Kill(ctx context.Context, r *run.Run) error {
	project, id, ok := "", int64(0), false
	if f, found := e.lookup(r.ID); found {
		if f.terminal() {
			return nil
		}
		project, id, ok = f.project, f.id, true
	} else if project, id, ok = parseHandle(r.Status.Handle); !ok {
		cfg, err := runConfig(r)
		if err != nil {
			return nil // nothing can have been started
		}
		p, err := e.findPipeline(ctx, cfg.Project, Ref(r), r.ID)
		if err != nil {
			return fmt.Errorf("kill run %s: %w", r.ID, err)
		}
		if p == nil {
			return nil
		}
		project, id = cfg.Project, p.ID
	}
	p, _, err := e.api.Pipelines.CancelPipelineBuild(project, id, gl.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("cancel pipeline %d of %s: %w", id, project, err)
	}
	e.appendf(r.ID, "lockstep: canceled pipeline %d\n", id)
	if f, found := e.lookup(r.ID); found {
		f.observe(p.Status, nil, e.opts.Clock.Now())
		f.wake()
	}
	return nil
}

// Cleanup cancels what is left of r's pipeline, reads the rest of its
// traces, deletes the ref Start pushed and forgets the pipeline.
func (e *Executor) Cleanup(ctx context.Context, r *run.Run) error {
	if err := e.Kill(ctx, r); err != nil {
		return err
	}
	f, ok := e.lookup(r.ID)
	if ok {
		f.stop()
		<-f.exited
		if !f.isDone() {
			e.readTraces(ctx, f, true)
		}
	}
	cfg, err := runConfig(r)
	if err == nil {
		e.deleteRef(ctx, r, cfg)
	}
	e.mu.Lock()
	delete(e.follows, r.ID)
	delete(e.starting, r.ID)
	delete(e.early, r.ID)
	l := e.runLogs[r.ID]
	delete(e.runLogs, r.ID)
	e.mu.Unlock()
	l.closeSink()
	return nil
}

// deleteRef deletes the run's ref on the remote; a ref that is not there
// is fine.
func (e *Executor) deleteRef(ctx context.Context, r *run.Run, cfg config.GitLabRun) {
	// git push needs a repository to run in, even to delete.
	dir := filepath.Join(e.opts.WorkDir, "push")
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if out, err := exec.CommandContext(ctx, e.opts.GitPath, "init", "-q", "--bare", dir).CombinedOutput(); err != nil {
			e.log.Warn("cannot delete the run's ref", "run", r.ID, "err", err, "output", strings.TrimSpace(string(out)))
			return
		}
	}
	cmd := exec.CommandContext(ctx, e.opts.GitPath, "push", "--porcelain", "--", cfg.Remote, ":refs/heads/"+Ref(r))
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "remote ref does not exist") {
		e.log.Warn("cannot delete the run's ref", "run", r.ID, "ref", Ref(r), "err", err, "output", strings.TrimSpace(string(out)))
	}
}

func (e *Executor) lookup(id run.ID) (*follow, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.follows[id]
	return f, ok
}

// appendf writes one of lockstep's own lines to run id's log.
func (e *Executor) appendf(id run.ID, format string, args ...any) {
	if err := e.appendLog(id, fmt.Appendf(nil, format, args...)); err != nil {
		e.log.Warn("cannot write run log", "run", id, "err", err)
	}
}

// logOutput writes git's messages to a run's log.
type logOutput struct {
	e  *Executor
	id run.ID
}

func (o *logOutput) Write(p []byte) (int, error) {
	if err := o.e.appendLog(o.id, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

var _ io.Writer = (*logOutput)(nil)

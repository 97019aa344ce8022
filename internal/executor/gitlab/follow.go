package gitlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// follow is one pipeline being followed for one run.
type follow struct {
	runID   run.ID
	project string
	id      int64
	url     string
	kick    chan struct{} // wakes the follower; capacity 1
	quit    chan struct{} // closed by stop
	exited  chan struct{} // closed when the follower returns
	once    sync.Once

	// mu guards everything below.
	mu      sync.Mutex
	notify  func()
	status  string
	jobs    []*jobState // by ID
	heard   time.Time   // last webhook or poll
	done    bool        // outcome is final and the traces are read
	out     executor.Outcome
	lastJob int64 // the job whose trace was written last, for headings
}

// jobState is what is known of one job of the pipeline.
type jobState struct {
	id           int64
	name, stage  string
	status       string
	reason       string
	allowFailure bool
	// offset is how much of the trace is in the log; complete says the
	// trace was read after the job ended.
	offset   int64
	complete bool
}

// track starts following pipeline id for r.
func (e *Executor) track(r *run.Run, cfg config.GitLabRun, id int64, url, status string, jobs []*jobState, notify func()) *follow {
	f := &follow{
		runID: r.ID, project: cfg.Project, id: id, url: url,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), exited: make(chan struct{}),
		notify: notify, status: status, jobs: jobs, heard: e.opts.Clock.Now(),
	}
	e.mu.Lock()
	e.follows[r.ID] = f
	early := e.early[r.ID]
	delete(e.early, r.ID)
	e.mu.Unlock()
	for _, ev := range early {
		if ev.ObjectAttributes.ID == id {
			f.observe(ev.ObjectAttributes.Status, eventJobs(ev), e.opts.Clock.Now())
		}
	}
	// What the runner knows now, not when the goroutine gets to run: a
	// webhook observed in between must still make it tell the runner.
	notified := waiting(f.statusNow())
	e.wg.Add(1)
	go e.run(f, notified)
	return f
}

func (f *follow) setNotify(n func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n != nil {
		f.notify = n
	}
}

func (f *follow) started(logPath string) executor.Started {
	f.mu.Lock()
	defer f.mu.Unlock()
	return executor.Started{
		Handle: fmt.Sprintf("%s#%d", f.project, f.id), LogPath: logPath, URL: f.url,
		Waiting: waiting(f.status),
	}
}

func (f *follow) outcome() executor.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return f.out
	}
	return executor.Outcome{Waiting: waiting(f.status)}
}

func (f *follow) terminal() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return terminal(f.status)
}

func (f *follow) isDone() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

func (f *follow) stop() { f.once.Do(func() { close(f.quit) }) }

func (f *follow) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// rank orders statuses so that a late webhook never moves a pipeline
// back: waiting, then running, then finished.
func rank(status string) int {
	switch {
	case terminal(status):
		return 2
	case status == "running" || status == "manual":
		return 1
	}
	return 0
}

// observe records a status and jobs heard from a webhook, a poll or an
// API answer. It reports whether anything the runner sees changed.
func (f *follow) observe(status string, jobs []*jobState, now time.Time) (changed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heard = now
	if status != "" && rank(status) >= rank(f.status) && status != f.status && !terminal(f.status) {
		changed = waiting(status) != waiting(f.status) || terminal(status)
		f.status = status
	}
	for _, j := range jobs {
		i := slices.IndexFunc(f.jobs, func(o *jobState) bool { return o.id == j.id })
		if i < 0 {
			f.jobs = append(f.jobs, j)
			continue
		}
		o := f.jobs[i]
		if rank(j.status) >= rank(o.status) && !terminal(o.status) {
			o.status, o.reason = j.status, j.reason
		}
		// A job's name, stage and allow_failure never change.
	}
	slices.SortFunc(f.jobs, func(a, b *jobState) int { return int(a.id - b.id) })
	return changed
}

// waiting reports whether a pipeline in status has not started running.
func waiting(status string) bool {
	switch status {
	case "created", "waiting_for_resource", "preparing", "pending", "scheduled", "":
		return true
	}
	return false
}

// terminal reports whether a pipeline or job status is final.
func terminal(status string) bool {
	switch status {
	case "success", "failed", "canceled", "canceling", "skipped":
		return true
	}
	return false
}

// run is f's follower: it polls when webhooks stay away, reads the
// traces of running jobs, and finishes the run's outcome once the
// pipeline has ended. notified says whether the runner last heard the
// pipeline was waiting.
func (e *Executor) run(f *follow, notified bool) {
	defer e.wg.Done()
	defer close(f.exited)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go func() {
		select {
		case <-f.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		if f.terminal() {
			e.finish(ctx, f)
			return
		}
		if notified != waiting(f.statusNow()) {
			notified = !notified
			e.callNotify(f) // the run leaves scheduled
		}
		f.mu.Lock()
		untilPoll := e.opts.PollInterval - e.opts.Clock.Since(f.heard)
		running := f.status == "running"
		f.mu.Unlock()
		wait := untilPoll
		if running {
			wait = min(wait, e.opts.TraceInterval)
		}
		t := e.opts.Clock.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-f.kick:
			t.Stop()
			continue
		case <-t.C():
		}
		f.mu.Lock()
		due := e.opts.Clock.Since(f.heard) >= e.opts.PollInterval
		f.mu.Unlock()
		if due {
			if err := e.poll(ctx, f); err != nil && ctx.Err() == nil {
				e.log.Warn("poll pipeline", "run", f.runID, "pipeline", f.id, "err", err)
				f.mu.Lock()
				f.heard = e.opts.Clock.Now() // try again after another interval
				f.mu.Unlock()
			}
		}
		if f.statusNow() == "running" {
			e.readTraces(ctx, f, false)
		}
	}
}

func (f *follow) statusNow() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (e *Executor) callNotify(f *follow) {
	f.mu.Lock()
	n := f.notify
	f.mu.Unlock()
	switch {
	case n != nil:
		n()
	case e.opts.Notify != nil:
		e.opts.Notify(f.runID)
	}
}

// poll asks GitLab for the pipeline and its jobs.
func (e *Executor) poll(ctx context.Context, f *follow) error {
	p, _, err := e.api.Pipelines.GetPipeline(f.project, f.id, gl.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("get pipeline %d: %w", f.id, err)
	}
	jobs, err := e.listJobs(ctx, f)
	if err != nil {
		return err
	}
	f.observe(p.Status, jobs, e.opts.Clock.Now())
	return nil
}

func (e *Executor) listJobs(ctx context.Context, f *follow) ([]*jobState, error) {
	var out []*jobState
	opts := &gl.ListJobsOptions{ListOptions: gl.ListOptions{PerPage: 100}}
	for {
		jobs, resp, err := e.api.Jobs.ListPipelineJobs(f.project, f.id, opts, gl.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("list jobs of pipeline %d: %w", f.id, err)
		}
		for _, j := range jobs {
			out = append(out, &jobState{id: j.ID, name: j.Name, stage: j.Stage, status: j.Status, reason: j.FailureReason, allowFailure: j.AllowFailure})
		}
		if resp == nil || resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// finish reads what is left of the traces, then fixes the outcome and
// tells the runner.
func (e *Executor) finish(ctx context.Context, f *follow) {
	f.mu.Lock()
	needJobs := len(f.jobs) == 0 // for the traces, and a failure's reasons
	f.mu.Unlock()
	if needJobs {
		if jobs, err := e.listJobs(ctx, f); err == nil {
			f.observe("", jobs, e.opts.Clock.Now())
		}
	}
	e.readTraces(ctx, f, true)
	if ctx.Err() != nil {
		return // stopped: a later Status or a new process finishes it
	}
	// The log is complete: its copy in the LogSink is too before the
	// runner hears of the outcome.
	e.runLogOf(f.runID).closeSink()
	f.mu.Lock()
	f.out = outcomeOf(f.status, f.jobs)
	f.done = true
	f.mu.Unlock()
	e.log.Info("pipeline ended", "run", f.runID, "pipeline", f.id, "status", f.statusNow())
	e.callNotify(f)
}

// readTraces appends to the log what is new in the traces of the
// running jobs, and, with final, of every job not read to its end.
func (e *Executor) readTraces(ctx context.Context, f *follow, final bool) {
	f.mu.Lock()
	var todo []*jobState
	for _, j := range f.jobs {
		if j.complete || (!final && j.status != "running") {
			continue
		}
		if j.status == "created" || j.status == "pending" || j.status == "skipped" || j.status == "manual" {
			continue // no trace yet, nor ever for skipped ones
		}
		todo = append(todo, j)
	}
	f.mu.Unlock()
	for _, j := range todo {
		f.mu.Lock()
		ended := terminal(j.status)
		f.mu.Unlock()
		if err := e.readTrace(ctx, f, j); err != nil {
			if ctx.Err() != nil {
				return
			}
			e.appendf(f.runID, "lockstep: cannot read the trace of job %s (%d): %v\n", j.name, j.id, err)
			continue
		}
		if ended {
			f.mu.Lock()
			j.complete = true
			f.mu.Unlock()
		}
	}
}

// readTrace appends what is new in job j's trace, asking for the bytes
// after those already read (Range); a server that sends the whole trace
// anyway is handled too.
func (e *Executor) readTrace(ctx context.Context, f *follow, j *jobState) error {
	f.mu.Lock()
	offset := j.offset
	f.mu.Unlock()
	opts := []gl.RequestOptionFunc{gl.WithContext(ctx)}
	if offset > 0 {
		opts = append(opts, gl.WithHeader("Range", fmt.Sprintf("bytes=%d-", offset)))
	}
	rd, resp, err := e.api.Jobs.GetTraceFile(f.project, j.id, opts...)
	if resp != nil && resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		return nil // nothing new
	}
	var b []byte
	var partial *gl.ErrorResponse
	switch {
	case errors.As(err, &partial) && partial.StatusCode == http.StatusPartialContent:
		// The client library counts 206 among the errors; its body is
		// the part asked for.
		b = partial.Body
	case err != nil:
		return err
	default:
		if b, err = io.ReadAll(rd); err != nil {
			return err
		}
	}
	if resp.StatusCode == http.StatusOK && offset > 0 {
		if int64(len(b)) <= offset {
			return nil
		}
		b = b[offset:]
	}
	if len(b) == 0 {
		return nil
	}
	f.mu.Lock()
	heading := f.lastJob != j.id
	f.lastJob = j.id
	j.offset += int64(len(b))
	f.mu.Unlock()
	if heading {
		e.appendf(f.runID, "\n━━━ job %s (stage %s) ━━━\n", j.name, j.stage)
	}
	return e.appendLog(f.runID, b)
}

// outcomeOf maps a finished pipeline to the run's outcome.
func outcomeOf(status string, jobs []*jobState) executor.Outcome {
	switch status {
	case "success":
		return executor.Outcome{Done: true}
	case "canceled", "canceling":
		return executor.Outcome{Done: true, Canceled: true, ExitCode: -1, Message: "the pipeline was canceled on GitLab"}
	case "skipped":
		return executor.Outcome{Done: true, Infra: &executor.InfraError{Reason: ReasonPipelineSkipped,
			Err: errors.New("every job of the pipeline was skipped: nothing was tested")}}
	}
	// failed
	var scripts, infra []string
	infraReason := ""
	for _, j := range jobs {
		if j.status != "failed" || j.allowFailure {
			continue
		}
		what := fmt.Sprintf("job %s (stage %s) failed: %s", j.name, j.stage, orUnknown(j.reason))
		if j.reason == "script_failure" {
			scripts = append(scripts, what)
			continue
		}
		infra = append(infra, what)
		if infraReason == "" {
			infraReason = camel(j.reason)
		}
	}
	if len(scripts) > 0 {
		return executor.Outcome{Done: true, ExitCode: 1, Message: strings.Join(append(scripts, infra...), "; ")}
	}
	if infraReason == "" {
		infraReason = ReasonPipelineFailed
	}
	msg := strings.Join(infra, "; ")
	if msg == "" {
		msg = "the pipeline failed without a failed job (a .gitlab-ci.yml error?)"
	}
	return executor.Outcome{Done: true, ExitCode: 1, Infra: &executor.InfraError{Reason: infraReason, Err: errors.New(msg)}}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown_failure"
	}
	return s
}

// camel turns runner_system_failure into RunnerSystemFailure.
func camel(s string) string {
	if s == "" {
		return ReasonPipelineFailed
	}
	var b strings.Builder
	for part := range strings.SplitSeq(s, "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// Observe takes in a pipeline webhook: the run it names (its
// LOCKSTEP_RUN_ID variable) is brought up to date if this Executor
// follows that pipeline. It returns what it did, for the deliveries
// page.
func (e *Executor) Observe(ev *gl.PipelineEvent) string {
	id := ""
	for _, v := range ev.ObjectAttributes.Variables {
		if v.Key == VariableRunID {
			id = v.Value
		}
	}
	if id == "" {
		// Webhooks may leave variables out: the ref names the run too.
		ref := ev.ObjectAttributes.Ref
		if strings.HasPrefix(ref, "lockstep/") {
			id = ref[strings.LastIndexByte(ref, '/')+1:]
		}
	}
	var rid run.ID
	if _, err := fmt.Sscan(id, &rid); err != nil || id == "" {
		return fmt.Sprintf("pipeline %d of %s is not lockstep's", ev.ObjectAttributes.ID, ev.Project.PathWithNamespace)
	}
	e.mu.Lock()
	f, ok := e.follows[rid]
	if !ok {
		// Not followed yet: its Start has not returned, or lockstep
		// restarted and the runner has not looked at the run. The event
		// is kept for the first case; in the second, the run's next look
		// finds the pipeline from its handle, as it is now.
		if len(e.early[rid]) < maxEarly {
			e.early[rid] = append(e.early[rid], ev)
		}
		e.mu.Unlock()
		if e.opts.Notify != nil {
			e.opts.Notify(rid)
		}
		return fmt.Sprintf("pipeline %d (run %d) is not followed here yet; run %d looked at again", ev.ObjectAttributes.ID, rid, rid)
	}
	e.mu.Unlock()
	if f.id != ev.ObjectAttributes.ID {
		return fmt.Sprintf("pipeline %d is not run %d's (%d)", ev.ObjectAttributes.ID, rid, f.id)
	}
	f.observe(ev.ObjectAttributes.Status, eventJobs(ev), e.opts.Clock.Now())
	f.wake()
	return fmt.Sprintf("run %d: pipeline %d %s", rid, f.id, ev.ObjectAttributes.Status)
}

// maxEarly bounds the webhooks kept for one run not followed yet.
const maxEarly = 32

// eventJobs returns the jobs a pipeline webhook describes.
func eventJobs(ev *gl.PipelineEvent) []*jobState {
	var jobs []*jobState
	for _, b := range ev.Builds {
		jobs = append(jobs, &jobState{id: b.ID, name: b.Name, stage: b.Stage, status: b.Status, reason: b.FailureReason, allowFailure: b.AllowFailure})
	}
	return jobs
}

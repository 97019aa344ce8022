// Package executor defines how the runner starts, watches and stops the
// execution of a run. Implementations live in subpackages named after the
// technology they use (executor/local, executor/gitlab; executor/kube
// next). The runner holds one per name a job can give in `executor:`.
package executor

import (
	"context"
	"errors"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// ErrUnknown is returned by Status for a run the executor has no execution
// of: never started here, or started by a process that is gone (lockstep
// was restarted). The runner ends such a run as error/Interrupted after
// calling Kill to make sure nothing of it survives.
var ErrUnknown = errors.New("executor has no execution of this run")

// Executor runs jobs. Start returns once the execution is under way; the
// execution then goes on without the caller, and notify is called (from a
// goroutine the executor owns) when it ends. Status, Kill and Cleanup
// identify the execution by the run's ID and Status.Handle, so they work
// for executions started before a restart where the technology allows.
// Implementations are safe for concurrent use.
type Executor interface {
	// Start begins executing r and returns the handle to record in
	// r.Status.Handle and the path of the log the execution writes. An
	// error from Start is an infrastructure failure (see InfraError).
	Start(ctx context.Context, r *run.Run, notify func()) (Started, error)
	// Status returns the outcome of r's execution: Done is false while it
	// goes on. It returns ErrUnknown when the executor has no execution of r.
	Status(ctx context.Context, r *run.Run) (Outcome, error)
	// Kill stops r's execution and everything it started, if any is left;
	// killing an execution that is gone is not an error.
	Kill(ctx context.Context, r *run.Run) error
	// Cleanup kills what is left of r's execution and forgets it; Status
	// then returns ErrUnknown. The runner calls it once r's outcome is
	// recorded.
	Cleanup(ctx context.Context, r *run.Run) error
}

// Runnable is implemented by executors that have work of their own to do
// while lockstep runs (an informer over the executions they own).
// lockstep serve calls Run once, before the runner starts, and cancels its
// context when it stops; Run returns after everything it started has
// ended. An executor's other methods may wait for Run to be under way.
type Runnable interface {
	Run(ctx context.Context) error
}

// RetryError, returned by Start, says that the execution could not be
// started for a reason that may pass (a quota, an API server that is
// overloaded or briefly away): the runner records Reason on the run as a
// condition and calls Start again after After. The executor decides when
// waiting has lasted too long and returns an InfraError instead.
type RetryError struct {
	Reason string
	Err    error
	After  time.Duration
}

func (e *RetryError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }

// Started describes an execution that has begun.
type Started struct {
	Handle  string
	LogPath string
	// URL, if set, is where the execution can be seen outside lockstep
	// (a GitLab pipeline's page); the run records it.
	URL string
	// Waiting says that the execution exists but waits for resources
	// outside lockstep (a GitLab pipeline not picked up by a runner yet):
	// the run stays scheduled until Status stops reporting Waiting.
	Waiting bool
	// Condition, if set, is recorded on the run as it starts (the local
	// executor's warning that a run is not sandboxed).
	Condition *run.Condition
}

// Outcome is how an execution ended.
type Outcome struct {
	Done bool
	// ExitCode is the job script's exit status, when it ran to the end.
	ExitCode int
	// Infra, when set, says that the execution failed before or outside the
	// job's script (clone, merge, workspace): the run ends as error, never
	// as failure.
	Infra *InfraError
	// BuildOutput is what the job wrote to the file named by
	// $LOCKSTEP_BUILD_FILE (trimmed), and HaveBuild whether it wrote it.
	BuildOutput string
	HaveBuild   bool
	// Waiting, while Done is false, says that the execution still waits
	// for resources outside lockstep (see Started.Waiting).
	Waiting bool
	// Canceled says that the execution was stopped from outside lockstep
	// (a pipeline canceled on GitLab): the run ends as aborted.
	Canceled bool
	// Message, when set, explains a failure or a cancellation better than
	// the exit status does ("job rspec (stage test) failed: script_failure").
	Message string
}

// InfraError is a failure of lockstep's infrastructure rather than of the
// job under test.
type InfraError struct {
	// Reason is a CamelCase word recorded as the run's Status.Reason:
	// WorkspaceFailed, CloneFailed, MergeConflict, StartFailed…
	Reason string
	Err    error
}

func (e *InfraError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *InfraError) Unwrap() error { return e.Err }

// The reasons of infrastructure failures.
const (
	ReasonWorkspace     = "WorkspaceFailed"
	ReasonClone         = "CloneFailed"
	ReasonMergeConflict = "MergeConflict"
	ReasonStart         = "StartFailed"
	// ReasonUnknownExecutor: the run names an executor lockstep does not
	// have (its configuration was changed, or the executor is not set up).
	ReasonUnknownExecutor = "UnknownExecutor"
)

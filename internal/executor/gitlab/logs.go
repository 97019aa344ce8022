package gitlab

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// LogWriter is where the executor writes runs' logs: lockstep's own lines
// and the pipelines' job traces, as they are read. A log is only ever
// appended to: after a restart, the traces are appended again from their
// start, below a line that says so. Keeping it apart from reading the
// traces lets the logs live elsewhere than in files. Implementations are
// safe for concurrent use; writes of one run come from one goroutine at a
// time.
type LogWriter interface {
	// Path returns the location recorded as the run's Status.LogPath.
	Path(id run.ID) string
	// Append adds p to the end of run id's log.
	Append(id run.ID, p []byte) error
}

// FileLogs writes each run's log to dir/<run id>.log, where the web UI
// and the API read it.
func FileLogs(dir string) LogWriter { return fileLogs(dir) }

type fileLogs string

func (d fileLogs) Path(id run.ID) string {
	p := filepath.Join(string(d), id.String()+".log")
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func (d fileLogs) Append(id run.ID, p []byte) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(d.Path(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(p); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runLog orders the writes to one run's log, so that its file and its
// copy in the LogSink get the same bytes in the same order, and holds
// the LogSink's writer: opened by the first write of a Start or of
// following a pipeline again (after what the stored log holds), closed
// once the pipeline's outcome is known, the run is forgotten or the
// Executor shut down.
type runLog struct {
	// mu guards sink, and is held while writing the log.
	mu   sync.Mutex
	sink io.WriteCloser
}

// runLogOf returns run id's runLog.
func (e *Executor) runLogOf(id run.ID) *runLog {
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.runLogs[id]
	if !ok {
		l = &runLog{}
		e.runLogs[id] = l
	}
	return l
}

// appendLog adds p to the end of run id's log and of its copy in the
// LogSink. Once the Executor is shut down, the copy gets no more.
func (e *Executor) appendLog(id run.ID, p []byte) error {
	l := e.runLogOf(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sink == nil && e.opts.LogSink != nil && e.ctx.Err() == nil {
		l.sink = e.opts.LogSink.Open(id, executor.LogAppend)
	}
	if l.sink != nil {
		l.sink.Write(p) // never fails; the sink says what it could not keep
	}
	return e.logs.Append(id, p)
}

// closeSink closes the LogSink's writer, if open, which flushes it; a
// later write opens another. l may be nil.
func (l *runLog) closeSink() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sink != nil {
		l.sink.Close()
		l.sink = nil
	}
}

// closeLogs closes the LogSink's writers of every run.
func (e *Executor) closeLogs() {
	e.mu.Lock()
	logs := slices.Collect(maps.Values(e.runLogs))
	e.mu.Unlock()
	for _, l := range logs {
		l.closeSink()
	}
}

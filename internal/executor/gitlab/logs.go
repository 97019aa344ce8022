package gitlab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// LogWriter is where the executor writes runs' logs: lockstep's own lines
// and the pipelines' job traces, as they are read. Keeping it apart from
// reading the traces lets the logs live elsewhere than in files.
// Implementations are safe for concurrent use; writes of one run come
// from one goroutine at a time.
type LogWriter interface {
	// Path returns the location recorded as the run's Status.LogPath.
	Path(id run.ID) string
	// Append adds p to the end of run id's log.
	Append(id run.ID, p []byte) error
	// Reset empties run id's log, before its traces are read again from
	// their start (after a restart).
	Reset(id run.ID) error
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

func (d fileLogs) Reset(id run.ID) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	return os.WriteFile(d.Path(id), nil, 0o644)
}

// teeLogs is a LogWriter that also copies every run's log to a
// executor.LogSink (the store, where the web of any replica reads it).
// A reset empties the file only: the sink's copy is append-only, so after
// a restart it holds what was copied before, then the traces read again
// from their start.
type teeLogs struct {
	LogWriter
	sink executor.LogSink
	// mu guards open.
	mu sync.Mutex
	// open holds the sink's writer of each run whose log is being written.
	open map[run.ID]io.WriteCloser
}

func (t *teeLogs) Append(id run.ID, p []byte) error {
	err := t.LogWriter.Append(id, p)
	t.mu.Lock()
	w := t.open[id]
	if w == nil {
		w = t.sink.Open(id)
		t.open[id] = w
	}
	t.mu.Unlock()
	// The sink's Write never fails.
	_, _ = w.Write(p)
	return err
}

// close flushes and closes the sink's writer of run id's log.
func (t *teeLogs) close(id run.ID) {
	t.mu.Lock()
	w := t.open[id]
	delete(t.open, id)
	t.mu.Unlock()
	if w != nil {
		w.Close()
	}
}

// closeAll flushes and closes every sink writer.
func (t *teeLogs) closeAll() {
	t.mu.Lock()
	open := t.open
	t.open = map[run.ID]io.WriteCloser{}
	t.mu.Unlock()
	for _, w := range open {
		w.Close()
	}
}

package gitlab

import (
	"fmt"
	"os"
	"path/filepath"

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

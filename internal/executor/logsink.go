package executor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// LogSink receives the log of each execution as it is written, so that
// the web of any replica reads it through the store rather than from the
// disk of the replica that ran it. Executors write every byte of a run's
// log to the writer Open returns, and close it when the execution ends.
// Implementations are safe for concurrent use.
type LogSink interface {
	// Open returns the writer of the log of run id. Its Write never fails
	// the execution: a sink that cannot keep the log says so in its own
	// log. Close flushes what is buffered.
	Open(id run.ID) io.WriteCloser
}

// StoreLogs is a LogSink that appends logs to a store, in chunks of at
// most FlushBytes, at least every FlushInterval while output comes.
type StoreLogs struct {
	Logs   store.Logs
	Logger *slog.Logger
	// FlushInterval and FlushBytes default to 250 ms and 64 KiB.
	FlushInterval time.Duration
	FlushBytes    int
}

var _ LogSink = (*StoreLogs)(nil)

// Open returns the writer of run id's log in the store.
func (s *StoreLogs) Open(id run.ID) io.WriteCloser {
	w := &storeLogWriter{sink: s, id: id, log: s.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	if w.log == nil {
		w.log = slog.Default()
	}
	interval := s.FlushInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	go w.flushLoop(interval)
	return w
}

// storeLogWriter buffers a run's log and appends it to the store.
type storeLogWriter struct {
	sink *StoreLogs
	id   run.ID
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}

	// mu guards buf, off, failed and closed.
	mu     sync.Mutex
	buf    []byte
	off    int64
	failed bool
	closed bool
}

func (w *storeLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= w.flushBytes()
	w.mu.Unlock()
	if full {
		w.flush()
	}
	return len(p), nil
}

func (w *storeLogWriter) flushBytes() int {
	if w.sink.FlushBytes > 0 {
		return w.sink.FlushBytes
	}
	return 64 << 10
}

// flush appends what is buffered. A failed append is retried at the next
// flush; a conflict (the stored log does not end where this one does)
// stops the copy, which the log says.
func (w *storeLogWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 || w.failed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.sink.Logs.AppendLog(ctx, w.id, w.off, w.buf); errors.Is(err, store.ErrConflict) {
		w.failed = true
		w.log.Error("run log in the store does not end where this copy does; no longer copying it", "run", w.id, "err", err)
		return
	} else if err != nil {
		w.log.Warn("cannot copy run log to the store; will retry", "run", w.id, "err", err)
		return
	}
	w.off += int64(len(w.buf))
	w.buf = w.buf[:0]
}

func (w *storeLogWriter) flushLoop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.flush()
		}
	}
}

// Close stops the periodic flushes and flushes the rest.
func (w *storeLogWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	w.flush()
	return nil
}

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
// disk of the replica that ran it. Executors write the bytes of a run's
// log to a writer Open returns, in order, and close it when they stop
// writing: the execution ended, or this process stops following it.
// Implementations are safe for concurrent use.
type LogSink interface {
	// Open returns a writer of the log of run id; from says where its
	// first byte goes. Its Write never fails the execution: a sink that
	// cannot keep the log says so in its own log. Close flushes what is
	// buffered.
	Open(id run.ID, from LogFrom) io.WriteCloser
}

// LogFrom says where the first byte given to a LogSink's writer goes in
// the run's log.
type LogFrom int

const (
	// LogNew is for a log nobody wrote yet (a local run's): the writer
	// gives it from its first byte.
	LogNew LogFrom = iota
	// LogFromStart is for a log read again from its start, as an earlier
	// writer may have given it (a Pod's log, followed again after a
	// restart or by a new leader): the bytes the store holds already are
	// taken to be the same bytes and skipped, the rest is appended.
	LogFromStart
	// LogAppend is for a log continued where it ends (lockstep's account
	// of a GitLab pipeline, followed again after a restart): the writer's
	// bytes follow whatever the store holds already.
	LogAppend
)

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

// Open returns a writer of run id's log in the store. Opening reads
// nothing from the store (a local run's start waits for no query): a
// LogFromStart or LogAppend writer learns where the stored log ends at
// its first flush.
func (s *StoreLogs) Open(id run.ID, from LogFrom) io.WriteCloser {
	w := &storeLogWriter{sink: s, id: id, from: from, log: s.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	w.known = from == LogNew
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
	from LogFrom
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}

	// mu guards buf, pos, end, known, failed and closed.
	mu  sync.Mutex
	buf []byte
	// pos is how many bytes were given to the writer before buf.
	pos int64
	// end is where the stored log ends, as far as the writer knows, and
	// known whether it knows.
	end    int64
	known  bool
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
// flush. A conflict (the stored log does not end where this writer
// thought) stops the copy, which the log says; but a LogFromStart
// writer learns where the stored log ends again and skips what it holds:
// another copy of the same log appended it (the previous leader's
// follower, still running), or this writer did in an append reported
// failed.
func (w *storeLogWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 || w.failed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if !w.known {
			n, err := w.sink.Logs.LogLength(ctx, w.id)
			if err != nil {
				w.log.Warn("cannot read the length of the run log in the store; will retry", "run", w.id, "err", err)
				return
			}
			w.end, w.known = n, true
		}
		if w.from == LogFromStart {
			if w.end < w.pos {
				w.failed = true
				w.log.Error("run log in the store is shorter than what this copy put there; no longer copying it", "run", w.id, "stored", w.end, "copied", w.pos)
				return
			}
			skip := min(w.end-w.pos, int64(len(w.buf)))
			w.buf, w.pos = w.buf[skip:], w.pos+skip
			if len(w.buf) == 0 {
				return
			}
		}
		err := w.sink.Logs.AppendLog(ctx, w.id, w.end, w.buf)
		switch {
		case err == nil:
			w.end += int64(len(w.buf))
			w.pos += int64(len(w.buf))
			w.buf = w.buf[:0]
			return
		case errors.Is(err, store.ErrConflict) && w.from == LogFromStart:
			w.known = false
		case errors.Is(err, store.ErrConflict):
			w.failed = true
			w.log.Error("run log in the store does not end where this copy does; no longer copying it", "run", w.id, "err", err)
			return
		default:
			w.log.Warn("cannot copy run log to the store; will retry", "run", w.id, "err", err)
			return
		}
	}
	w.log.Warn("run log in the store keeps growing under this copy; will retry", "run", w.id)
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

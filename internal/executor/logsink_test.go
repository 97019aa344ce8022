package executor_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestStoreLogs checks that what is written to a store log sink, from
// several goroutines at once, is in the store, complete and in order,
// once the writer is closed, and that it shows up before then.
func TestStoreLogs(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sink := &executor.StoreLogs{Logs: st, FlushInterval: 10 * time.Millisecond, FlushBytes: 100}
	w := sink.Open(7, executor.LogNew)
	var mu sync.Mutex
	var want bytes.Buffer
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				line := fmt.Sprintf("writer %d line %d\n", g, i)
				mu.Lock()
				want.WriteString(line)
				if _, err := w.Write([]byte(line)); err != nil {
					t.Error(err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// Before Close, the periodic flush brings it to the store.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := st.LogLength(t.Context(), 7)
		if err != nil {
			t.Fatal(err)
		}
		if n == int64(want.Len()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log in the store has %d bytes, want %d before Close", n, want.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := w.Write([]byte("last\n")); err != nil {
		t.Fatal(err)
	}
	want.WriteString("last\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := st.ReadLog(t.Context(), 7, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("log in the store: got %q, want %q", got, want.Bytes())
	}
}

// testLog is a log of n numbered lines.
func testLog(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "line %d of the container's log\n", i)
	}
	return b.Bytes()
}

// write gives w data in pieces of size bytes, then closes it.
func write(t *testing.T, w interface {
	Write([]byte) (int, error)
	Close() error
}, data []byte, size int) {
	t.Helper()
	for len(data) > 0 {
		n := min(size, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, st store.Logs, id run.ID) []byte {
	t.Helper()
	got, err := st.ReadLog(t.Context(), id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestStoreLogsFromStart gives a log again from its start to a writer
// after an earlier writer copied part of it, all of it, or nothing: the
// stored log ends up the complete log, nothing doubled.
func TestStoreLogsFromStart(t *testing.T) {
	t.Parallel()
	full := testLog(100)
	for _, tc := range []struct {
		name string
		// stored is how much of the log an earlier writer copied, with
		// from.
		stored int
		from   executor.LogFrom
		// size is how the second writer is given the log.
		size int
	}{
		{name: "nothing stored", stored: 0, size: 70},
		{name: "part stored", stored: 1234, from: executor.LogNew, size: 70},
		{name: "part stored from start", stored: 1234, from: executor.LogFromStart, size: 70},
		{name: "part stored, given at once", stored: 1234, from: executor.LogNew, size: len(full)},
		{name: "stored on a line boundary", stored: bytes.Index(full, []byte("line 40 ")), from: executor.LogNew, size: 33},
		{name: "all stored", stored: len(full), from: executor.LogNew, size: 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			// Small chunks: the stored part spans many flushes of the
			// second writer, which skips it across them.
			sink := &executor.StoreLogs{Logs: st, FlushInterval: time.Hour, FlushBytes: 100}
			if tc.stored > 0 {
				write(t, sink.Open(1, tc.from), full[:tc.stored], 50)
				if got := readAll(t, st, 1); !bytes.Equal(got, full[:tc.stored]) {
					t.Fatalf("after the partial copy: got %d bytes, want %d", len(got), tc.stored)
				}
			}
			write(t, sink.Open(1, executor.LogFromStart), full, tc.size)
			if got := readAll(t, st, 1); !bytes.Equal(got, full) {
				t.Errorf("stored log: got %d bytes %q, want the %d of the log", len(got), got, len(full))
			}
			// Once more, as a second restart would: nothing changes.
			write(t, sink.Open(1, executor.LogFromStart), full, tc.size)
			if got := readAll(t, st, 1); !bytes.Equal(got, full) {
				t.Errorf("after a second copy from the start: got %d bytes, want %d", len(got), len(full))
			}
		})
	}
}

// TestStoreLogsFromStartConcurrently gives the same log to several
// writers from its start at once (a new leader's follower while the old
// one's still copies): their appends conflict, and each learns what the
// others stored and skips it.
func TestStoreLogsFromStartConcurrently(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	full := testLog(2000)
	sink := &executor.StoreLogs{Logs: st, FlushInterval: time.Millisecond, FlushBytes: 512}
	var wg sync.WaitGroup
	for g := range 4 {
		w := sink.Open(3, executor.LogFromStart)
		wg.Go(func() {
			size := 100 + 300*g
			for data := full; len(data) > 0; {
				n := min(size, len(data))
				if _, err := w.Write(data[:n]); err != nil {
					t.Error(err)
				}
				data = data[n:]
			}
			if err := w.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := readAll(t, st, 3); !bytes.Equal(got, full) {
		t.Errorf("stored log: got %d bytes, want the %d of the log", len(got), len(full))
	}
}

// TestStoreLogsAppend continues a stored log where it ends, and a new
// log's writer leaves a log someone else wrote alone.
func TestStoreLogsAppend(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sink := &executor.StoreLogs{Logs: st, Logger: slog.New(slog.DiscardHandler), FlushInterval: time.Hour, FlushBytes: 10}
	write(t, sink.Open(5, executor.LogNew), []byte("lockstep: pushing\nfirst trace\n"), 7)
	write(t, sink.Open(5, executor.LogAppend), []byte("lockstep: following again\nfirst trace\n"), 7)
	write(t, sink.Open(5, executor.LogAppend), []byte("lockstep: canceled\n"), 100)
	want := "lockstep: pushing\nfirst trace\nlockstep: following again\nfirst trace\nlockstep: canceled\n"
	if got := readAll(t, st, 5); string(got) != want {
		t.Errorf("stored log: got %q, want %q", got, want)
	}
	// A new log's writer conflicts with what is there, and stops.
	write(t, sink.Open(5, executor.LogNew), []byte("another run's output\n"), 100)
	if got := readAll(t, st, 5); string(got) != want {
		t.Errorf("after a new log's writer: got %q, want %q unchanged", got, want)
	}
}

// countingLogs counts the store reads of the length of a log.
type countingLogs struct {
	store.Logs
	lengths atomic.Int64
}

func (c *countingLogs) LogLength(ctx context.Context, id run.ID) (int64, error) {
	c.lengths.Add(1)
	return c.Logs.LogLength(ctx, id)
}

// TestStoreLogsOpenReadsNothing: opening a writer reads nothing from the
// store, and a new log's writer never does; the others read the length
// once, at their first flush.
func TestStoreLogsOpenReadsNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		from  executor.LogFrom
		reads int64
	}{
		{"new", executor.LogNew, 0},
		{"from start", executor.LogFromStart, 1},
		{"append", executor.LogAppend, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &countingLogs{Logs: newStore(t)}
			sink := &executor.StoreLogs{Logs: logs, FlushInterval: time.Hour, FlushBytes: 10}
			w := sink.Open(9, tc.from)
			if n := logs.lengths.Load(); n != 0 {
				t.Errorf("Open read the log's length %d times, want 0", n)
			}
			data := []byte(strings.Repeat("some output\n", 20))
			write(t, w, data, 15)
			if n := logs.lengths.Load(); n != tc.reads {
				t.Errorf("the writer read the log's length %d times, want %d", n, tc.reads)
			}
			if got := readAll(t, logs, 9); !bytes.Equal(got, data) {
				t.Errorf("stored log: got %q, want %q", got, data)
			}
		})
	}
}

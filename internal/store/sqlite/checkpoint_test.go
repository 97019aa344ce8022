package sqlite

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

// withWALLimits sets the log lengths, in frames, from which the
// checkpointer makes the log restart, and waits for readers to.
func withWALLimits(restart, max int64) Option {
	return func(o *options) { o.walRestart, o.walMax = restart, max }
}

// openCheckpointTest opens a store whose checkpointer runs when the test
// steps its clock.
func openCheckpointTest(t *testing.T, opts ...Option) (*Store, *clocktesting.FakeClock, string) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "lockstep.db")
	s := openTest(t, path, append([]Option{WithClock(clk), WithPollInterval(time.Hour)}, opts...)...)
	return s, clk, path
}

// runCheckpointer lets the checkpointer run once and waits until it is
// done: it waits for its timer, fires it, and waits for the next one.
func runCheckpointer(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	waitFor(t, "the checkpointer to wait", clk.HasWaiters)
	clk.Step(checkpointInterval)
	waitFor(t, "the checkpointer to checkpoint", clk.HasWaiters)
}

// waitFor polls cond until it holds, failing the test after 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// acceptDeliveries stores n deliveries with a real pull_request payload,
// named from prefix.
func acceptDeliveries(t *testing.T, s *Store, prefix string, n int) {
	t.Helper()
	body := testfixtures.GitHubPayload(t, "pull_request", "labeled.payload.json").Body
	for i := range n {
		if _, err := s.AcceptDelivery(t.Context(), &store.Delivery{ID: fmt.Sprintf("%s-%d", prefix, i), Event: "pull_request", Body: body}); err != nil {
			t.Fatalf("AcceptDelivery: %v", err)
		}
	}
}

// TestWritesLeaveCheckpointsToCheckpointer checks that commits only add
// to the log, and that the checkpointer copies the log into the database
// file.
func TestWritesLeaveCheckpointsToCheckpointer(t *testing.T) {
	s, clk, path := openCheckpointTest(t)
	runCheckpointer(t, clk) // copies the schema
	before := fileSize(t, path)

	acceptDeliveries(t, s, "d", 100)
	if got := fileSize(t, path); got != before {
		t.Errorf("database file after writes: got %d bytes, want the %d from before them", got, before)
	}
	if got := fileSize(t, path+"-wal"); got < 100*4096 {
		t.Errorf("log after 100 writes: got %d bytes, want at least a page each", got)
	}

	runCheckpointer(t, clk)
	if got := fileSize(t, path); got < before+100*4096 {
		t.Errorf("database file after a checkpoint: got %d bytes, want at least %d", got, before+100*4096)
	}
	d, err := s.GetDelivery(t.Context(), "d-99")
	if err != nil || d.Event != "pull_request" {
		t.Errorf("GetDelivery after a checkpoint: got %+v, %v; want the delivery", d, err)
	}
}

// TestCheckpointerKeepsLogShort checks that the log starts again at its
// beginning after the checkpointer copied it, so that the log file stops
// growing, while writes go on between checkpoints.
func TestCheckpointerKeepsLogShort(t *testing.T) {
	s, clk, path := openCheckpointTest(t, withWALLimits(64, 1<<20))
	var sizes []int64
	for round := range 6 {
		acceptDeliveries(t, s, fmt.Sprintf("r%d", round), 50)
		sizes = append(sizes, fileSize(t, path+"-wal"))
		runCheckpointer(t, clk)
	}
	// A round writes more than 64 frames: without restarts the log would
	// hold all six rounds.
	if last := sizes[len(sizes)-1]; last > 2*sizes[0] {
		t.Errorf("log file sizes after each round of writes: got %v, want the last at most twice the first", sizes)
	}
	for round := range 6 {
		id := fmt.Sprintf("r%d-49", round)
		if _, err := s.GetDelivery(t.Context(), id); err != nil {
			t.Errorf("GetDelivery(%s): %v", id, err)
		}
	}
}

// TestCheckpointRestartsLogUnderWrites checks that a long log restarts
// even while a writer never pauses: left to itself, the log would restart
// only when a checkpoint happened to end between two commits.
func TestCheckpointRestartsLogUnderWrites(t *testing.T) {
	// The checkpointer never runs by itself: the test checkpoints.
	s, _, path := openCheckpointTest(t, withWALLimits(64, 1<<20))
	ctx := t.Context()
	body := testfixtures.GitHubPayload(t, "pull_request", "labeled.payload.json").Body
	var (
		written atomic.Int64
		failed  atomic.Bool
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.AcceptDelivery(ctx, &store.Delivery{ID: fmt.Sprint(i), Event: "pull_request", Body: body}); err != nil {
				t.Errorf("AcceptDelivery: %v", err)
				failed.Store(true)
				return
			}
			written.Add(1)
		}
	})
	wrote := func(n int64) func() bool {
		return func() bool { return failed.Load() || written.Load() >= n }
	}
	waitFor(t, "the first writes", wrote(50))
	first := walRestarts(t, path)
	const rounds = 10
	for range rounds {
		if err := s.checkpoint(ctx); err != nil {
			t.Errorf("checkpoint: %v", err)
		}
		// Each round writes 50 deliveries, seven pages each: the log is
		// long when the next checkpoint starts.
		waitFor(t, "more writes", wrote(written.Load()+50))
	}
	close(stop)
	wg.Wait()
	if got := walRestarts(t, path) - first; got < rounds {
		t.Errorf("log restarts during %d checkpoints under writes: got %d, want %d or more", rounds, got, rounds)
	}
}

// walRestarts returns how many times the log of the database at path
// restarted: the checkpoint sequence number of its header.
func walRestarts(t *testing.T, path string) uint32 {
	t.Helper()
	f, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr [32]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		t.Fatalf("read log header: %v", err)
	}
	return binary.BigEndian.Uint32(hdr[12:16])
}

// TestCheckpointerWaitsOutPinnedLog checks that a reader holding the log
// keeps it from restarting without stopping the writers for long, and
// that the log restarts once the reader is done.
func TestCheckpointerWaitsOutPinnedLog(t *testing.T) {
	s, clk, path := openCheckpointTest(t, withWALLimits(64, 128))
	ctx := t.Context()
	acceptDeliveries(t, s, "a", 10)

	// An open read transaction keeps the frames it reads in the log.
	conn, err := s.read.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM deliveries`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("deliveries seen by the reader: got %d, want 10", n)
	}
	acceptDeliveries(t, s, "b", 100)
	pinned := walRestarts(t, path)
	runCheckpointer(t, clk) // gives up waiting for the reader
	acceptDeliveries(t, s, "c", 100)
	if got := walRestarts(t, path); got != pinned {
		t.Errorf("log restarts while a reader held the log: got %d, want none", got-pinned)
	}
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}

	runCheckpointer(t, clk)
	acceptDeliveries(t, s, "d", 1)
	if got := walRestarts(t, path); got != pinned+1 {
		t.Errorf("log restarts once the reader was done: got %d, want 1", got-pinned)
	}
}

// TestCloseStopsCheckpointer checks that a closed Store leaves no
// goroutine of its own running.
func TestCloseStopsCheckpointer(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	acceptDeliveries(t, s, "d", 10)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, "the store's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

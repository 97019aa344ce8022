package executor_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// TestStoreLogs checks that what is written to a store log sink, from
// several goroutines at once, is in the store, complete and in order,
// once the writer is closed, and that it shows up before then.
func TestStoreLogs(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sink := &executor.StoreLogs{Logs: st, FlushInterval: 10 * time.Millisecond, FlushBytes: 100}
	w := sink.Open(7)
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

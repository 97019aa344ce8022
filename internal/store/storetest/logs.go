package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// RunLogs runs the conformance tests of run logs against the stores
// newStore makes.
func RunLogs(t *testing.T, newStore func(t *testing.T) store.Logs) {
	t.Run("AppendRead", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		if got, err := s.ReadLog(ctx, 1, 0, 0); err != nil || len(got) != 0 {
			t.Fatalf("ReadLog of no log: got %q, %v; want nothing", got, err)
		}
		var want []byte
		for i := range 50 {
			chunk := []byte(fmt.Sprintf("line %d\n", i))
			if err := s.AppendLog(ctx, 1, int64(len(want)), chunk); err != nil {
				t.Fatal(err)
			}
			want = append(want, chunk...)
		}
		if err := s.AppendLog(ctx, 2, 0, []byte("other run\n")); err != nil {
			t.Fatal(err)
		}
		if n, err := s.LogLength(ctx, 1); err != nil || n != int64(len(want)) {
			t.Errorf("LogLength: got %d, %v; want %d", n, err, len(want))
		}
		if n, err := s.LogLength(ctx, 3); err != nil || n != 0 {
			t.Errorf("LogLength of no log: got %d, %v; want 0", n, err)
		}
		got, err := s.ReadLog(ctx, 1, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("ReadLog: got %q, want %q", got, want)
		}
		// Reads from any offset, of any size, inside chunks or across them.
		for _, off := range []int64{0, 1, 7, 8, 100, int64(len(want)) - 1, int64(len(want)), int64(len(want)) + 5} {
			for _, limit := range []int{1, 3, 8, 64, 10000} {
				got, err := s.ReadLog(ctx, 1, off, limit)
				if err != nil {
					t.Fatal(err)
				}
				end := min(int(off)+limit, len(want))
				exp := []byte{}
				if int(off) < len(want) {
					exp = want[off:end]
				}
				if !bytes.Equal(got, exp) {
					t.Errorf("ReadLog(off %d, limit %d): got %q, want %q", off, limit, got, exp)
				}
			}
		}
	})
	t.Run("AppendAtWrongOffsetConflicts", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		id := run.ID(7)
		if err := s.AppendLog(ctx, id, 0, []byte("hello ")); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, 3, 10} {
			if err := s.AppendLog(ctx, id, off, []byte("again")); !errors.Is(err, store.ErrConflict) {
				t.Errorf("AppendLog at %d of a 6-byte log: got %v, want %v", off, err, store.ErrConflict)
			}
		}
		if err := s.AppendLog(ctx, id, 6, []byte("world")); err != nil {
			t.Fatal(err)
		}
		if got, err := s.ReadLog(ctx, id, 0, 0); err != nil || string(got) != "hello world" {
			t.Errorf("ReadLog: got %q, %v; want %q", got, err, "hello world")
		}
	})
}

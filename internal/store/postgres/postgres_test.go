package postgres

import (
	"context"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
	"github.com/lockstep-ci/lockstep/internal/store/storetest"
)

// openTest opens a store in a new schema of its own, closed when t ends.
func openTest(t testing.TB, opts ...Option) *Store {
	t.Helper()
	return openURL(t, pgtest.URL(t), opts...)
}

func openURL(t testing.TB, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, append([]Option{WithMaxConns(4)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestConformance runs every suite with a poll interval longer than the
// suite, so that its watchers depend on being woken.
func TestConformance(t *testing.T) {
	storetest.RunAll(t, func(t *testing.T, clk clock.Clock) store.Store {
		return openTest(t, WithPollInterval(time.Hour), WithClock(clk))
	})
}

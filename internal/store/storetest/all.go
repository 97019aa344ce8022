package storetest

import (
	"testing"

	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// NewStore makes a new, empty store whose times come from clk, and closes
// it with t.Cleanup. It is called concurrently, once per subtest.
type NewStore func(t *testing.T, clk clock.Clock) store.Store

// RunAll runs every conformance suite of this package against the stores
// newStore makes: the one entry point each backend calls, so that a suite
// added here runs against every backend.
func RunAll(t *testing.T, newStore NewStore) {
	real := func(t *testing.T) store.Store { return newStore(t, clock.RealClock{}) }
	t.Run("Runs", func(t *testing.T) { Run(t, func(t *testing.T) Store { return real(t) }) })
	t.Run("Intake", func(t *testing.T) { RunIntake(t, func(t *testing.T) IntakeStore { return real(t) }) })
	t.Run("Builds", func(t *testing.T) { RunBuilds(t, func(t *testing.T) BuildsStore { return real(t) }) })
	t.Run("Leases", func(t *testing.T) { RunLeases(t, newStore) })
	t.Run("Logs", func(t *testing.T) { RunLogs(t, func(t *testing.T) store.Logs { return real(t) }) })
}

package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/store/storetest"
)

func TestBuildsConformance(t *testing.T) {
	storetest.RunBuilds(t, func(t *testing.T) storetest.BuildsStore {
		return openTest(t, filepath.Join(t.TempDir(), "lockstep.db"), WithPollInterval(time.Hour))
	})
}

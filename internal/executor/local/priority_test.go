package local

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// Executions run at a lower CPU priority than lockstep, and so does
// everything they start.
func TestExecutionsRunAtLowerPriority(t *testing.T) {
	t.Parallel()
	e := newExecutor(t, Options{})
	got, log := runToEnd(t, e, newRun(1, `echo "nice=$(nice) child=$(sh -c nice)"`, run.Refs{Repo: "acme/widget"}))
	if got != (executor.Outcome{Done: true}) || !strings.HasSuffix(log, fmt.Sprintf("nice=%d child=%d\n", executionNice, executionNice)) {
		t.Errorf("outcome %+v, log %q; want the job and its children at nice %d", got, log, executionNice)
	}
}

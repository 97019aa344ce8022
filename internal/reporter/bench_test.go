package reporter

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// BenchmarkReport1000 reports 1,000 finished runs (100 pull requests × 10
// jobs) to a GitHub double that adds 50 ms to every call, from a
// reporter started after the runs finished, and measures the wall time
// until every context shows its run's state. Run it with
//
//	go test -run '^$' -bench Report1000 -benchtime 1x ./internal/reporter/
func BenchmarkReport1000(b *testing.B) {
	for _, workers := range []int{8, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				e, ids := finishedRuns(b, 100, 10)
				e.gh.SetLatency(50 * time.Millisecond)
				// Keep one connection per worker alive between calls.
				base := http.DefaultTransport.(*http.Transport).Clone()
				base.MaxIdleConnsPerHost = workers
				e.gc = e.client(base)
				b.StartTimer()

				start := time.Now()
				in := e.start(func(o *Options) { o.Workers = workers })
				e.waitFor("every run to be reported", func() bool { return e.postCount() >= len(ids) })
				elapsed := time.Since(start)

				b.StopTimer()
				e.settle(in)
				checkReported(b, e, ids)
				b.ReportMetric(elapsed.Seconds(), "wall-s")
				b.ReportMetric(float64(len(e.gh.Calls())), "calls")
				b.ReportMetric(float64(e.postCount())/float64(len(ids)), "writes/run")
				in.stop()
			}
		})
	}
}

// finishedRuns returns an env holding pulls × jobs runs that have
// finished, each on its own context.
func finishedRuns(b *testing.B, pulls, jobs int) (*env, []run.ID) {
	b.Helper()
	var cfgJobs []config.Presubmit
	for j := range jobs {
		cfgJobs = append(cfgJobs, presubmit(fmt.Sprintf("job-%d", j), ""))
	}
	e := newEnv(b, false, cfgJobs...)
	var ids []run.ID
	for p := range pulls {
		for j := range jobs {
			ids = append(ids, e.create(fmt.Sprintf("job-%d", j), p+1, sha(p)).ID)
		}
	}
	g, ctx := errgroup.WithContext(b.Context())
	g.SetLimit(16)
	for i, id := range ids {
		state := run.Success
		if i%4 == 0 {
			state = run.Failure
		}
		g.Go(func() error { return advance(ctx, e.st, id, state, "", "") })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return e, ids
}

// checkReported fails b unless every run records, and the double shows,
// the run's final state.
func checkReported(b *testing.B, e *env, ids []run.ID) {
	b.Helper()
	for _, id := range ids {
		r := e.get(id)
		want := string(r.Status.State)
		if got := r.Status.Reported[DefaultName]; got != want {
			b.Fatalf("run %d records %q, want %s", id, got, want)
		}
		if got := e.shows(r.Spec.Refs.HeadSHA, r.Spec.StatusContext()); got.State != want || got.TargetURL != TargetURL(testBase, id) {
			b.Fatalf("run %d: context shows %s %s, want %s %s", id, got.State, got.TargetURL, want, TargetURL(testBase, id))
		}
	}
}

package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

func benchRun(key string) *run.Run {
	r := testRun(key)
	r.Spec.Env = map[string]string{"GOFLAGS": "-mod=mod"}
	r.Labels = map[string]string{"team": "infra"}
	return r
}

// BenchmarkCreateRun creates runs one after the other, from one goroutine.
func BenchmarkCreateRun(b *testing.B) {
	ctx := context.Background()
	s := openTest(b, filepath.Join(b.TempDir(), "lockstep.db"))
	for i := 0; b.Loop(); i++ {
		if _, err := s.CreateRun(ctx, benchRun(fmt.Sprintf("bench/%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkCreateRunParallel creates runs from several goroutines at once,
// as webhook deliveries and controllers do: GOMAXPROCS times parallelism
// writers.
func BenchmarkCreateRunParallel(b *testing.B) {
	for _, parallelism := range []int{1, 8} {
		b.Run(fmt.Sprintf("parallelism=%d", parallelism), func(b *testing.B) {
			ctx := context.Background()
			s := openTest(b, filepath.Join(b.TempDir(), "lockstep.db"))
			var n atomic.Int64
			b.SetParallelism(parallelism)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.CreateRun(ctx, benchRun(fmt.Sprintf("bench/%d", n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}

// BenchmarkListRuns100k lists the newest page of 50 runs matching a filter
// from a store holding 100,000 runs.
func BenchmarkListRuns100k(b *testing.B) {
	const total = 100_000
	ctx := context.Background()
	s := openTest(b, filepath.Join(b.TempDir(), "lockstep.db"))
	populate(b, s, total)

	page, err := s.ListRuns(ctx, store.ListOptions{Job: "job-3", Limit: 50})
	if err != nil {
		b.Fatal(err)
	}
	benchmarks := []struct {
		name string
		opts store.ListOptions
	}{
		{"none", store.ListOptions{}},
		{"job", store.ListOptions{Job: "job-3"}},
		{"job page 2", store.ListOptions{Job: "job-3", Continue: page.Continue}},
		{"repo", store.ListOptions{Repo: "acme/repo-3"}},
		{"repo and pull", store.ListOptions{Repo: "acme/repo-3", Pull: 13}},
		{"sha", store.ListOptions{SHA: "sha-13"}},
		{"type", store.ListOptions{Type: run.Periodic}},
		{"pending", store.ListOptions{State: []run.State{run.Pending}}},
		{"active", store.ListOptions{State: []run.State{run.Scheduled, run.Running}}},
		{"finished", store.ListOptions{State: []run.State{run.Success, run.Failure, run.Error, run.Aborted}}},
		{"repo, job and failed", store.ListOptions{Repo: "acme/repo-3", Job: "job-3", State: []run.State{run.Failure, run.Error}}},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			opts := bm.opts
			opts.Limit = 50
			for b.Loop() {
				if _, err := s.ListRuns(ctx, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// populate adds n runs to s in one transaction: 10 repos, 20 jobs, a pull
// request per 50 runs, a tenth of the runs periodic, almost all finished.
func populate(b *testing.B, s *Store, n int) {
	b.Helper()
	ctx := context.Background()
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		for i := range n {
			r := benchRun(fmt.Sprintf("populate/%d", i))
			r.Spec.Refs.Repo = fmt.Sprintf("acme/repo-%d", i%10)
			r.Spec.Refs.Pull = i / 50
			r.Spec.Refs.HeadSHA = fmt.Sprintf("sha-%d", i/50)
			r.Spec.Job = fmt.Sprintf("job-%d", i%20)
			if i%10 == 9 {
				r.Spec.Type = run.Periodic
			}
			switch {
			case i%1000 == 0:
				r.Status.State = run.Pending
			case i%1000 == 1:
				r.Status.State = run.Running
			case i%7 == 0:
				r.Status.State = run.Failure
			default:
				r.Status.State = run.Success
			}
			spec, err := json.Marshal(r.Spec)
			if err != nil {
				return false, err
			}
			status, err := json.Marshal(r.Status)
			if err != nil {
				return false, err
			}
			labels, err := encodeLabels(r.Labels)
			if err != nil {
				return false, err
			}
			rev, err := nextRevision(tx)
			if err != nil {
				return false, err
			}
			if _, err := insertRun(tx, rev, s.clock.Now().UnixNano(), r, r.Status.State, spec, status, labels); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		b.Fatalf("populate %d runs: %v", n, err)
	}
}

// BenchmarkAcceptDelivery stores webhook deliveries with a real 31 KB
// pull_request payload from parallel callers, as the webhook intake does.
func BenchmarkAcceptDelivery(b *testing.B) {
	ctx := context.Background()
	body := testfixtures.GitHubPayload(b, "pull_request", "labeled.payload.json").Body
	s := openTest(b, filepath.Join(b.TempDir(), "lockstep.db"))
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := &store.Delivery{ID: fmt.Sprintf("bench-%d", n.Add(1)), Event: "pull_request", Body: body}
			if _, err := s.AcceptDelivery(ctx, d); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}

package kube_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// timedExecutor records when Start returned for each run.
type timedExecutor struct {
	*kube.Executor
	mu      sync.Mutex
	started map[run.ID]time.Time
}

func (t *timedExecutor) Start(ctx context.Context, r *run.Run, notify func()) (executor.Started, error) {
	s, err := t.Executor.Start(ctx, r, notify)
	if err == nil {
		t.mu.Lock()
		if _, ok := t.started[r.ID]; !ok {
			t.started[r.ID] = time.Now()
		}
		t.mu.Unlock()
	}
	return s, err
}

// BenchmarkThousandRuns runs 1,000 runs as Pods through kwok and reports
// the wall time from the first run created to the last one finished, the
// p99 of run created → Pod created, the API requests per run and the
// peak RSS of the process (lockstep and the test together).
//
//	eval "$(scripts/kube-testbed env)"
//	go test -run '^$' -bench ThousandRuns -benchtime 1x ./internal/executor/kube/
func BenchmarkThousandRuns(b *testing.B) {
	for range b.N {
		var timed *timedExecutor
		e := newEnvWrapped(b, nil, func(k *kube.Executor) executor.Executor {
			timed = &timedExecutor{Executor: k, started: map[run.ID]time.Time{}}
			return timed
		})
		const n = 1000
		ids := make([]run.ID, 0, n)
		for range n {
			ids = append(ids, e.create(job(outcome("succeed"), nil), time.Hour).ID)
		}
		var first, last time.Time
		var delays []time.Duration
		for _, id := range ids {
			r := e.wait(id, "finished", func(r *run.Run) bool { return r.Status.State.Terminal() })
			if r.Status.State != run.Success {
				b.Fatalf("run %d ended %s/%s %q", id, r.Status.State, r.Status.Reason, r.Status.Message)
			}
			if first.IsZero() || r.CreatedAt.Before(first) {
				first = r.CreatedAt
			}
			if r.Status.FinishedAt.After(last) {
				last = *r.Status.FinishedAt
			}
			timed.mu.Lock()
			delays = append(delays, timed.started[id].Sub(r.CreatedAt))
			timed.mu.Unlock()
		}
		slices.Sort(delays)
		writes, all := kube.CountRequests(e.mets)
		b.ReportMetric(last.Sub(first).Seconds(), "wall-s")
		b.ReportMetric(delays[len(delays)*99/100].Seconds()*1000, "p99-create-ms")
		b.ReportMetric(writes/n, "writes/run")
		b.ReportMetric(all/n, "requests/run")
		b.ReportMetric(peakRSS()/1e6, "peak-rss-MB")
	}
}

// peakRSS returns the process's peak resident set size, in bytes.
func peakRSS() float64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return kb * 1024
		}
	}
	return 0
}

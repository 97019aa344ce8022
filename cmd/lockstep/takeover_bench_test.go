package main

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/leader"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
)

// BenchmarkLeaderTakeover measures how long three replicas on one
// PostgreSQL database, with the default lease (15 s, renewed every 3 s),
// go without a leader after the leader is killed with SIGKILL: from the
// kill to another replica's /readyz saying it leads. Run it with
// -benchtime=3x; each iteration takes up to the lease duration.
func BenchmarkLeaderTakeover(b *testing.B) {
	storeURL := pgtest.URL(b)
	dir := b.TempDir()
	cfg := writeFile(b, filepath.Join(dir, "lockstep.yaml"), "repos: {}\n")
	start := func(i int) *server {
		return startServerArgs(b, cfg, filepath.Join(dir, fmt.Sprintf("data-%d-%d", i, time.Now().UnixNano())), "--store", storeURL,
			"--replica", fmt.Sprintf("r%d-%d", i, time.Now().UnixNano()),
			"--lease-duration", leader.DefaultLeaseDuration.String(), "--lease-renew", leader.DefaultRenewInterval.String())
	}
	reps := []*server{start(0), start(1), start(2)}
	leading := func(s *server) bool {
		z := (&replicaProc{srv: s}).readyz()
		return z != nil && z["leading"] == "true"
	}
	findLeader := func(limit time.Duration) int {
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			for i, s := range reps {
				if s != nil && leading(s) {
					return i
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.Fatalf("no leader within %v", limit)
		return -1
	}
	var worst, total time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		l := findLeader(2 * leader.DefaultLeaseDuration)
		b.StartTimer()
		killed := time.Now()
		_ = reps[l].cmd.Process.Signal(syscall.SIGKILL)
		<-reps[l].done
		reps[l] = nil
		findLeader(2 * leader.DefaultLeaseDuration)
		d := time.Since(killed)
		b.StopTimer()
		total += d
		worst = max(worst, d)
		reps[l] = start(l)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/takeover")
	b.ReportMetric(worst.Seconds(), "worst-s")
}

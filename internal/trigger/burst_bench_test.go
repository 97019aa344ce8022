package trigger_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/trigger"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

// BenchmarkBurstOpenedPulls sends a burst of 2,000 opened pull requests,
// each starting one job that clones and merges a small local repository,
// over real HTTP to the whole of lockstep as serve assembles it (intake,
// delivery processor, trigger, runner, local executor, SQLite), from 32
// senders at once. It reports how long after the last delivery was
// answered the last run was created (lag-s: the delivery processor
// keeping up with intake while executions go on), the burst's answer
// rate, and the most executions seen live at once, counted by the jobs
// themselves.
func BenchmarkBurstOpenedPulls(b *testing.B) {
	const pulls = 2000
	for range b.N {
		e := newEnv(b)
		dir := b.TempDir()
		src, base, head := burstRepo(b, filepath.Join(dir, "src"))
		live := filepath.Join(dir, "live")
		if err := os.MkdirAll(live, 0o755); err != nil {
			b.Fatal(err)
		}
		counts := filepath.Join(dir, "counts")
		cfg, err := config.Parse(strings.NewReader(fmt.Sprintf(`
repos:
  acme/widget:
    clone_url: %s
    presubmits:
      - name: unit
        always_run: true
        run: |
          touch %[2]s/$BUILD_ID
          ls %[2]s | wc -l >> %[3]s
          rm %[2]s/$BUILD_ID
trust:
  cache_ttl: 10m
github:
  bot_login: lockstep-bot
`, src, live, counts)), "burst.yaml")
		if err != nil {
			b.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		e.cfg = cfg
		st := e.store
		getCfg := func() *config.Config { return e.cfg }
		x := local.New(local.Options{
			WorkDir: filepath.Join(dir, "workspaces"), LogDir: filepath.Join(dir, "logs"),
			CacheDir: filepath.Join(dir, "cache", "git"),
			// The jobs count themselves in files under the host's /tmp,
			// which the sandbox's private /tmp would hide.
			Sandbox: local.SandboxOff,
		})
		rnr := runner.New(runner.Options{Store: st, Executor: x, Config: getCfg, Logger: quiet})
		trig := trigger.New(trigger.Options{Store: st, Forge: e.forge(), Config: getCfg, Logger: quiet})
		proc := trigger.NewProcessor(trigger.ProcessorOptions{Store: st, Trigger: trig, Logger: quiet})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = proc.Run(ctx) })
		wg.Go(func() { _ = rnr.Run(ctx) })
		srv := httptest.NewServer(webhook.NewHandler(webhook.HandlerOptions{Secret: func() ([]byte, error) { return secret, nil }, Sink: trigger.Sink(st), Logger: quiet}))

		pr := func(n int) []byte {
			return payload(b, prEvent("opened", &github.PullRequest{
				Number: github.Ptr(n), State: github.Ptr("open"), Draft: github.Ptr(false),
				User:      &github.User{Login: github.Ptr(trusted)},
				Head:      &github.PullRequestBranch{SHA: github.Ptr(head), Ref: github.Ptr("feature")},
				Base:      &github.PullRequestBranch{SHA: github.Ptr(base), Ref: github.Ptr("main")},
				UpdatedAt: &github.Timestamp{Time: time.Now()},
			}, trusted))
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		// Warm the trust cache, as a running lockstep's would be.
		if status, err := send(client, srv.URL, "warm", "pull_request", pr(1)); err != nil || status != http.StatusAccepted {
			b.Fatalf("warm-up delivery: %d %v", status, err)
		}
		bodies := make([][]byte, pulls)
		for i := range bodies {
			bodies[i] = pr(i + 2)
		}

		b.ResetTimer()
		start := time.Now()
		var next atomic.Int64
		var senders sync.WaitGroup
		for range 32 {
			senders.Go(func() {
				for i := int(next.Add(1)) - 1; i < pulls; i = int(next.Add(1)) - 1 {
					status, err := send(client, srv.URL, webhook.NewDeliveryID(), "pull_request", bodies[i])
					if err != nil || status != http.StatusAccepted {
						b.Errorf("delivery %d: %d %v", i, status, err)
						return
					}
				}
			})
		}
		senders.Wait()
		answered := time.Now()
		b.StopTimer()

		deadline := answered.Add(5 * time.Minute)
		for {
			page, err := st.ListDeliveries(context.Background(), store.DeliveryListOptions{State: store.DeliveryPending, Limit: 1})
			if err != nil {
				b.Fatal(err)
			}
			if len(page.Deliveries) == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("deliveries not processed within 5 minutes")
			}
			time.Sleep(5 * time.Millisecond)
		}
		runs := 0
		var last time.Time
		var finished int
		opts := store.ListOptions{Job: "unit", Limit: store.MaxLimit}
		for {
			page, err := st.ListRuns(context.Background(), opts)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range page.Runs {
				runs++
				if r.CreatedAt.After(last) {
					last = r.CreatedAt
				}
				if r.Status.State.Terminal() {
					finished++
				}
			}
			if page.Continue == "" {
				break
			}
			opts.Continue = page.Continue
		}
		cancel()
		wg.Wait()
		srv.Close()
		shut, stop := context.WithTimeout(context.Background(), time.Minute)
		_ = x.Shutdown(shut)
		stop()
		if runs != pulls+1 {
			b.Fatalf("%d runs, want %d", runs, pulls+1)
		}
		b.ReportMetric(last.Sub(answered).Seconds(), "lag-s")
		b.ReportMetric(float64(pulls)/answered.Sub(start).Seconds(), "answers/s")
		b.ReportMetric(float64(finished), "runs-finished")
		b.ReportMetric(float64(maxLive(b, counts)), "max-live")
	}
}

// burstRepo makes a repository with a base commit on main and a head
// commit on feature, and returns its path and the two SHAs.
func burstRepo(b *testing.B, dir string) (path, base, head string) {
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	git("init", "-q", "-b", "main")
	git("commit", "-q", "--allow-empty", "-m", "base")
	base = git("rev-parse", "HEAD")
	git("checkout", "-q", "-b", "feature")
	git("commit", "-q", "--allow-empty", "-m", "head")
	head = git("rev-parse", "HEAD")
	git("checkout", "-q", "main")
	return dir, base, head
}

// maxLive returns the largest count the jobs wrote to counts.
func maxLive(b *testing.B, counts string) int {
	data, err := os.ReadFile(counts)
	if err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	m := 0
	for _, f := range strings.Fields(string(data)) {
		n, _ := strconv.Atoi(f)
		m = max(m, n)
	}
	return m
}

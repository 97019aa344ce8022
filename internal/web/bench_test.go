package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// BenchmarkRunsPage100k measures the server time of the runs page and of
// GET /api/v1/runs over a store holding 100,000 runs: the first page,
// filtered pages, and a page deep in the listing.
//
//	go test -run '^$' -bench RunsPage100k ./internal/web
func BenchmarkRunsPage100k(b *testing.B) {
	const total = 100_000
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "lockstep.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	populate(b, st, total)
	srv := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})

	serve := func(b *testing.B, path string) string {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	// A continue token from deep in the listing: page 1000 of 100.
	deep := ""
	for i := 0; i < 20; i++ {
		body := serve(b, "/api/v1/runs?limit=1000"+deep)
		m := regexp.MustCompile(`"continue": "([^"]+)"`).FindStringSubmatch(body)
		if m == nil {
			b.Fatal("no continue token")
		}
		deep = "&continue=" + m[1]
	}
	deep = strings.TrimPrefix(deep, "&")

	for _, bm := range []struct{ name, path string }{
		{"page", "/runs"},
		{"page/repo+state", "/runs?repo=acme%2Frepo-3&state=failure%2Cerror"},
		{"page/job+type", "/runs?job=job-9&type=periodic"},
		// job-7 has no periodic runs: the query walks all 5,000 runs of
		// the job to find that out.
		{"page/no match", "/runs?job=job-7&type=periodic"},
		{"page/pull", "/runs?repo=acme%2Frepo-3&pr=1203"},
		{"page/deep", "/runs?" + deep},
		{"api", "/api/v1/runs"},
		{"api/limit=50", "/api/v1/runs?limit=50"},
		{"api/repo+state", "/api/v1/runs?repo=acme%2Frepo-3&state=failure,error"},
		{"api/deep", "/api/v1/runs?" + deep},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				serve(b, bm.path)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/req")
		})
	}
}

// populate creates n runs in st from several goroutines, as lockstep's
// writers do: 10 repos, 20 jobs, a pull request per 50 runs, a tenth of
// the runs periodic, one in seven failed, one in a thousand unfinished.
func populate(b *testing.B, st *sqlite.Store, n int) {
	b.Helper()
	ctx := context.Background()
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now().Add(-time.Duration(n) * time.Minute)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				r := &run.Run{Spec: run.Spec{
					Job: fmt.Sprintf("job-%d", i%20), Type: run.Presubmit, Cause: run.CauseEvent, Requester: "octocat",
					Refs: run.Refs{Repo: fmt.Sprintf("acme/repo-%d", i%10), BaseRef: "main", Pull: i / 50,
						HeadSHA: fakeSHA("bench", i/50), Author: "octocat"},
					Script: "make test", Env: map[string]string{"GOFLAGS": "-mod=mod"},
					TriggerKey: fmt.Sprintf("bench/%d", i),
				}}
				if i%10 == 9 {
					r.Spec.Type = run.Periodic
				}
				started := start.Add(time.Duration(i) * time.Minute)
				finished := started.Add(3 * time.Minute)
				r.Status = run.Status{State: run.Success, StartedAt: &started, FinishedAt: &finished, LogPath: "/var/lib/lockstep/logs/x.log"}
				switch {
				case i%1000 == 1:
					r.Status = run.Status{State: run.Running, StartedAt: &started}
				case i%7 == 0:
					r.Status.State = run.Failure
					r.Status.Reason = "ScriptExited"
				}
				if _, err := st.CreateRun(ctx, r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

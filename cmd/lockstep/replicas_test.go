package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/forge/github/githubtest"
	lsrun "github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/postgres"
	"github.com/lockstep-ci/lockstep/internal/store/postgres/pgtest"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

// The lease of the chaos test: short, so that the test takes seconds.
const (
	chaosLease = 3 * time.Second
	chaosRenew = 500 * time.Millisecond
)

// replicaProc is one lockstep serve process of the chaos test.
type replicaProc struct {
	name string
	data string
	srv  *server
}

func startReplicaProc(t *testing.T, cfg, data, storeURL, name string) *replicaProc {
	t.Helper()
	srv := startServerArgs(t, cfg, data, "--store", storeURL, "--replica", name,
		"--lease-duration", chaosLease.String(), "--lease-renew", chaosRenew.String())
	return &replicaProc{name: name, data: data, srv: srv}
}

// readyz returns what the replica's /readyz says, or nil when it does not
// answer.
func (r *replicaProc) readyz() map[string]string {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + r.srv.addr + "/readyz")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			out[k] = v
		}
	}
	return out
}

// TestReplicasChaos runs three lockstep serve processes on one PostgreSQL
// database and streams thousands of webhook deliveries at them (30% and
// more duplicates, under the same and under fresh delivery ids, shuffled,
// 16 senders spread over the replicas, each retrying until a 2xx), while
// the leader is killed with SIGKILL twice and stopped with SIGSTOP once,
// then continued after its lease expired. Afterwards every expected run
// exists exactly once, no accepted delivery is lost, nothing the stopped
// replica did after losing its lease landed, the periodic job fired at
// most once per due time, and each new leader took over within the lease
// duration plus one renewal interval.
func TestReplicasChaos(t *testing.T) {
	t.Parallel()
	storeURL := pgtest.URL(t)
	const repoName = "acme/widget"
	gh := githubtest.NewServer(t)
	gh.AddMember("acme", "alice")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "token"), "test-token\n")
	writeFile(t, filepath.Join(dir, "secret"), "chaos-secret\n")
	secret := []byte("chaos-secret")
	// Jobs run one at a time at most, so that the replicas' executors do
	// not bury the test under processes: the test is about runs existing
	// once, not about running them.
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), fmt.Sprintf(`
github:
  endpoint: %s
  token_file: token
  webhook_secret_file: secret
  bot_login: lockstep-bot
repos:
  acme/widget:
    clone_url: %s
    presubmits:
      - name: unit
        always_run: true
        max_concurrency: 1
        run: "true"
      - name: lint
        always_run: true
        max_concurrency: 1
        run: "true"
      - name: e2e
        max_concurrency: 1
        run: "true"
    postsubmits:
      - name: publish
        max_concurrency: 1
        run: "true"
    periodics:
      - name: tick
        interval: 1s
        max_concurrency: 1
        run: "true"
`, gh.URL(), gitRepo(t)))

	// The stream: 60 pull requests, each with redelivered actions and
	// commands, and 40 pushes.
	type delivery struct {
		id, event string
		body      []byte
	}
	var unique []delivery
	var want []string
	add := func(event string, ev any) {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		unique = append(unique, delivery{id: webhook.NewDeliveryID(), event: event, body: b})
	}
	ghRepo := &github.Repository{FullName: github.Ptr(repoName), Name: github.Ptr("widget"), Owner: &github.User{Login: github.Ptr("acme")}}
	commentID := int64(5000)
	comment := func(n int, body string) *github.IssueCommentEvent {
		commentID++
		return &github.IssueCommentEvent{
			Action: github.Ptr("created"),
			Issue: &github.Issue{Number: github.Ptr(n), State: github.Ptr("open"),
				PullRequestLinks: &github.PullRequestLinks{URL: github.Ptr(fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", repoName, n))}},
			Comment: &github.IssueComment{ID: github.Ptr(commentID), Body: github.Ptr(body), User: &github.User{Login: github.Ptr("alice")}},
			Repo:    ghRepo, Sender: &github.User{Login: github.Ptr("alice")},
		}
	}
	updated := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for n := 1; n <= 60; n++ {
		head := fmt.Sprintf("%040x", n)
		gh.AddPull(repoName, githubtest.Pull{Number: n, Author: "alice", HeadSHA: head, HeadRef: "feature", BaseRef: "main", BaseSHA: "base0", UpdatedAt: updated})
		pr := &github.PullRequest{
			Number: github.Ptr(n), State: github.Ptr("open"), Draft: github.Ptr(false),
			User:      &github.User{Login: github.Ptr("alice")},
			Head:      &github.PullRequestBranch{SHA: github.Ptr(head), Ref: github.Ptr("feature")},
			Base:      &github.PullRequestBranch{SHA: github.Ptr("base0"), Ref: github.Ptr("main")},
			UpdatedAt: &github.Timestamp{Time: updated},
		}
		for _, a := range []string{"opened", "edited", "ready_for_review", "reopened"} {
			add("pull_request", &github.PullRequestEvent{Action: github.Ptr(a), Number: github.Ptr(n), PullRequest: pr, Repo: ghRepo, Sender: &github.User{Login: github.Ptr("alice")}})
		}
		for _, j := range []string{"lint", "unit"} {
			want = append(want, lsrun.AutoKey(repoName, n, head, j))
		}
		for range 3 {
			c := comment(n, "/test e2e")
			add("issue_comment", c)
			want = append(want, lsrun.RequestKey(repoName, n, head, "e2e", fmt.Sprintf("c%d", c.GetComment().GetID())))
		}
		all := comment(n, "/test all")
		add("issue_comment", all)
		for _, j := range []string{"lint", "unit"} {
			want = append(want, lsrun.RequestKey(repoName, n, head, j, fmt.Sprintf("c%d", all.GetComment().GetID())))
		}
		for range 3 {
			add("issue_comment", comment(n, "thanks"))
		}
	}
	for i := range 40 {
		sha := fmt.Sprintf("%040x", 100000+i)
		add("push", &github.PushEvent{
			Ref: github.Ptr("refs/heads/main"), After: github.Ptr(sha), Before: github.Ptr("0123"),
			Repo:    &github.PushEventRepository{FullName: github.Ptr(repoName), Name: github.Ptr("widget")},
			Pusher:  &github.CommitAuthor{Name: github.Ptr("alice")},
			Sender:  &github.User{Login: github.Ptr("alice")},
			Commits: []*github.HeadCommit{{Modified: []string{"main.go"}}},
		})
		want = append(want, lsrun.PostsubmitKey(repoName, sha, "publish"))
	}
	rng := rand.New(rand.NewPCG(9, 9))
	sends := slices.Clone(unique)
	for len(sends) < 3*len(unique) {
		d := unique[rng.IntN(len(unique))]
		if rng.IntN(2) == 0 {
			d.id = webhook.NewDeliveryID() // the org hook's copy
		}
		sends = append(sends, d)
	}
	rng.Shuffle(len(sends), func(i, j int) { sends[i], sends[j] = sends[j], sends[i] })

	// Three replicas.
	var mu sync.Mutex // mu guards reps
	reps := make([]*replicaProc, 3)
	for i := range reps {
		reps[i] = startReplicaProc(t, cfg, filepath.Join(dir, fmt.Sprintf("data-%d", i)), storeURL, fmt.Sprintf("r%d", i))
	}
	addrs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, r := range reps {
			out = append(out, r.srv.addr)
		}
		return out
	}
	// currentLeader waits for exactly one replica to say it leads, and
	// returns its index.
	currentLeader := func(not string, limit time.Duration) (int, time.Duration) {
		start := time.Now()
		for {
			mu.Lock()
			rs := slices.Clone(reps)
			mu.Unlock()
			idx := -1
			n := 0
			for i, r := range rs {
				if z := r.readyz(); z != nil && z["leading"] == "true" && r.name != not {
					idx = i
					n++
				}
			}
			if n == 1 {
				return idx, time.Since(start)
			}
			if time.Since(start) > limit {
				t.Fatalf("no single leader within %v (%d say they lead)", limit, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first, _ := currentLeader("", 30*time.Second)

	// The senders.
	client := &http.Client{Timeout: 5 * time.Second}
	var accepted sync.Map // delivery id → true, once some replica answered 2xx
	var sent atomic.Int64
	work := make(chan delivery)
	var senders sync.WaitGroup
	for w := range 16 {
		senders.Go(func() {
			for d := range work {
				for attempt := 0; ; attempt++ {
					as := addrs()
					addr := as[(w+attempt)%len(as)]
					status, err := postHook(client, "http://"+addr+"/hook", secret, d.id, d.event, d.body)
					if err == nil && status < 300 {
						accepted.Store(d.id, true)
						break
					}
					if attempt > 2000 {
						t.Errorf("delivery %s never accepted: %v %d", d.id, err, status)
						break
					}
					time.Sleep(5 * time.Millisecond) // a redelivery, after a pause
				}
				sent.Add(1)
			}
		})
	}
	// The chaos, at fractions of the stream.
	var takeovers []time.Duration
	chaosDone := make(chan struct{})
	var stoppedName string
	var stoppedLostAt time.Time
	go func() {
		defer close(chaosDone)
		waitSent := func(frac float64) {
			for float64(sent.Load()) < frac*float64(len(sends)) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		leaderIdx := first
		for _, frac := range []float64{0.25, 0.5} {
			waitSent(frac)
			mu.Lock()
			victim := reps[leaderIdx]
			mu.Unlock()
			_ = victim.srv.cmd.Process.Signal(syscall.SIGKILL)
			<-victim.srv.done
			killed := time.Now()
			next, _ := currentLeader(victim.name, chaosLease+chaosRenew+10*time.Second)
			takeovers = append(takeovers, time.Since(killed))
			// The killed replica comes back, as a new process.
			restarted := startReplicaProc(t, cfg, victim.data, storeURL, victim.name+"b")
			mu.Lock()
			reps[leaderIdx] = restarted
			mu.Unlock()
			leaderIdx = next
		}
		// Stop the leader, let its lease expire and another take over,
		// then continue it.
		waitSent(0.75)
		mu.Lock()
		victim := reps[leaderIdx]
		mu.Unlock()
		_ = victim.srv.cmd.Process.Signal(syscall.SIGSTOP)
		stopped := time.Now()
		_, _ = currentLeader(victim.name, chaosLease+chaosRenew+10*time.Second)
		takeovers = append(takeovers, time.Since(stopped))
		stoppedName, stoppedLostAt = victim.name, time.Now()
		time.Sleep(chaosLease) // well past the lease, as a long GC pause
		_ = victim.srv.cmd.Process.Signal(syscall.SIGCONT)
	}()
	for _, d := range sends {
		work <- d
	}
	close(work)
	senders.Wait()
	<-chaosDone

	// Check the store once every accepted delivery is processed.
	st, err := postgres.Open(context.Background(), storeURL, postgres.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pending, err := st.ListDeliveries(ctx, store.DeliveryListOptions{State: store.DeliveryPending, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(pending.Deliveries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deliveries still pending after 3 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// No accepted delivery is lost.
	accepted.Range(func(k, _ any) bool {
		if _, err := st.GetDelivery(ctx, k.(string)); err != nil {
			t.Errorf("delivery %s was accepted but is not stored: %v", k, err)
		}
		return true
	})
	failed, err := st.ListDeliveries(ctx, store.DeliveryListOptions{State: store.DeliveryFailed})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range failed.Deliveries {
		t.Errorf("delivery %s (%s) failed: %s", d.ID, d.Event, d.Outcome.Error)
	}
	// Every expected run exists exactly once (trigger keys are unique, so
	// the list of keys has no duplicates by construction: what matters is
	// that none is missing and none is extra).
	var got []string
	ticks := map[string]int{}
	var all []*lsrun.Run
	opts := store.ListOptions{Limit: store.MaxLimit}
	for {
		page, err := st.ListRuns(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Runs...)
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	for _, r := range all {
		if r.Spec.Job == "tick" {
			ticks[r.Spec.TriggerKey]++
			continue
		}
		got = append(got, r.Spec.TriggerKey)
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs (-want +got), %d wanted, %d got:\n%s", len(want), len(got), diff)
	}
	// The periodic fired once per due time: each due time is one key,
	// and no two runs share a due time.
	if len(ticks) == 0 {
		t.Error("the periodic job never fired")
	}
	sched, err := st.GetSchedule(ctx, repoName, "tick")
	if err != nil {
		t.Fatal(err)
	}
	for key, n := range ticks {
		if n != 1 {
			t.Errorf("periodic due time %s fired %d times", key, n)
		}
	}
	_ = sched
	// Nothing the stopped replica started after it lost its lease.
	for _, r := range all {
		if r.Status.Replica == stoppedName && r.Status.StartedAt != nil && r.Status.StartedAt.After(stoppedLostAt) {
			t.Errorf("run %d was started by %s at %v, after it lost its lease at %v", r.ID, stoppedName, r.Status.StartedAt, stoppedLostAt)
		}
	}
	// Takeovers within the lease duration plus one renewal interval (and
	// the time to see it through /readyz).
	for i, d := range takeovers {
		t.Logf("takeover %d: %v", i+1, d)
		if limit := chaosLease + chaosRenew + time.Second; d > limit {
			t.Errorf("takeover %d took %v, want at most %v", i+1, d, limit)
		}
	}
}

// postHook sends one signed delivery.
func postHook(client *http.Client, url string, secret []byte, id, event string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.HeaderEvent, event)
	req.Header.Set(webhook.HeaderDelivery, id)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(secret, body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	"github.com/lockstep-ci/lockstep/internal/executor/kube/kubetest"
	lsrun "github.com/lockstep-ci/lockstep/internal/run"
)

// startKubeBed starts a Kubernetes test bed of the test's own (etcd,
// kube-apiserver, kwok), stopped at its end. Its processes' output goes
// to a file kept when the test fails.
func startKubeBed(t *testing.T) *kubetest.Bed {
	t.Helper()
	logs, err := os.CreateTemp("", "lockstep-kubetest-*.log")
	if err != nil {
		t.Fatal(err)
	}
	bed, err := kubetest.Start(logs)
	if err != nil {
		// Not a skip: the test bed is part of the suite (scripts/test).
		t.Fatalf("start the Kubernetes test bed: %v (its output: %s)", err, logs.Name())
	}
	t.Cleanup(func() {
		bed.Stop()
		logs.Close()
		if t.Failed() {
			t.Logf("test bed output: %s", logs.Name())
		} else {
			os.Remove(logs.Name())
		}
	})
	return bed
}

// podCreates records every Pod of lockstep's created in a namespace, from
// a watch that resumes where it stopped, so that no create is missed.
type podCreates struct {
	mu      sync.Mutex // mu guards created and deleted
	created map[types.UID]string
	deleted map[types.UID]bool
}

func watchPodCreates(t *testing.T, c kubernetes.Interface, ns string) *podCreates {
	t.Helper()
	sel := kube.LabelManagedBy + "=" + kube.ManagedByValue
	pods := c.CoreV1().Pods(ns)
	list, err := pods.List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Fatalf("%d Pods before the test created any", len(list.Items))
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			return pods.Watch(ctx, o)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	pc := &podCreates{created: map[types.UID]string{}, deleted: map[types.UID]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			pc.mu.Lock()
			if _, seen := pc.created[p.UID]; !seen {
				pc.created[p.UID] = p.Name
			}
			if ev.Type == watch.Deleted {
				pc.deleted[p.UID] = true
			}
			pc.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		w.Stop()
		<-done
	})
	return pc
}

// snapshot returns the Pods created so far (UID to name) and how many of
// them are deleted.
func (pc *podCreates) snapshot() (map[types.UID]string, int) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	out := make(map[types.UID]string, len(pc.created))
	for uid, name := range pc.created {
		out[uid] = name
	}
	return out, len(pc.deleted)
}

// TestKillServeWhilePodsRun kills lockstep serve with SIGKILL while 20
// runs execute as Pods, lets a few of the Pods end while it is down, and
// starts it again on the same data directory: the new process adopts
// every Pod, and each run ends with its Pod's outcome (half succeed, half
// exit 3), none interrupted, none run twice. Exactly 20 Pods are ever
// created, the same ones before and after the restart, and lockstep
// deletes them all once their runs are recorded.
func TestKillServeWhilePodsRun(t *testing.T) {
	t.Parallel()
	bed := startKubeBed(t)
	admin, err := kubernetes.NewForConfig(bed.Config(kubetest.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	const ns = "ci"
	if err := kubetest.Namespace(context.Background(), admin, ns); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := bed.WriteKubeconfig(kubeconfig, kubetest.AdminToken); err != nil {
		t.Fatal(err)
	}
	// Runs are made with "run now": the schedule is a leap day's
	// midnight, so that the scheduler adds none of its own while the test
	// runs. Every Pod runs (KWOK_OUTCOME hold) until the test releases
	// it; kwok then ends its test container with KWOK_EXIT.
	cfg := writeFile(t, filepath.Join(dir, "lockstep.yaml"), fmt.Sprintf(`
kubernetes:
  kubeconfig: %s
  namespace: %s
  node_name: %s
repos:
  acme/widget:
    periodics:
      - name: passes
        cron: "0 0 29 2 *"
        executor: kubernetes
        image: golang:1.25
        run: go test ./...
        env: {KWOK_OUTCOME: hold}
      - name: fails
        cron: "0 0 29 2 *"
        executor: kubernetes
        image: golang:1.25
        run: go test ./...
        env: {KWOK_OUTCOME: hold, KWOK_EXIT: "3"}
`, kubeconfig, ns, kubetest.NodeName))
	creates := watchPodCreates(t, admin, ns)
	data := filepath.Join(dir, "data")
	srv := startServer(t, cfg, data)
	token, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	runNow := func(job string, i int) apiRun {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/api/v1/periodics/acme/widget/%s/run", srv.addr, job), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("Idempotency-Key", fmt.Sprintf("kill-%d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r apiRun
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("run %s now: %s, %+v, %v", job, resp.Status, r, err)
		}
		return r
	}
	const n = 20
	wantJob := map[int64]string{}
	var ids []int64
	for i := range n {
		job := "passes"
		if i%2 == 1 {
			job = "fails"
		}
		r := runNow(job, i)
		wantJob[r.ID] = job
		ids = append(ids, r.ID)
	}

	pods := func() map[string]corev1.Pod {
		t.Helper()
		l, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=" + kube.ManagedByValue})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]corev1.Pod{}
		for _, p := range l.Items {
			out[p.Name] = p
		}
		return out
	}
	podOf := func(id int64) string { return kube.PodName(lsrun.ID(id)) }
	waitFor(t, "the 20 Pods to run", srv, func() bool {
		for _, r := range listRuns(t, srv.addr) {
			if lsrun.State(r.State).Terminal() {
				t.Fatalf("run %d of %s ended %s/%s %q before its Pod was released", r.ID, r.Job, r.State, r.Reason, r.Message)
			}
		}
		ps := pods()
		running := 0
		for _, id := range ids {
			if p, ok := ps[podOf(id)]; ok && p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == n
	})
	uids := map[string]types.UID{}
	for name, p := range pods() {
		uids[name] = p.UID
	}
	if len(uids) != n {
		t.Fatalf("%d Pods before the kill, want %d: %v", len(uids), n, uids)
	}

	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.done
	// While lockstep is down, five Pods end (three that pass, two that
	// fail): the next process finds them finished and records them.
	down := ids[:5]
	for _, id := range down {
		if err := kubetest.Release(context.Background(), admin, ns, podOf(id)); err != nil {
			t.Fatal(err)
		}
	}
	pollUntil(t, "the Pods released while lockstep is down to end", func() bool {
		ps := pods()
		for _, id := range down {
			if ph := ps[podOf(id)].Status.Phase; ph != corev1.PodSucceeded && ph != corev1.PodFailed {
				return false
			}
		}
		return true
	})

	srv = startServer(t, cfg, data)
	for _, id := range ids[len(down):] {
		// A Pod already gone was deleted by lockstep: its run's outcome
		// says why.
		if err := kubetest.Release(context.Background(), admin, ns, podOf(id)); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	var runs []apiRun
	waitFor(t, "the 20 runs to end", srv, func() bool {
		runs = listRuns(t, srv.addr)
		for _, r := range runs {
			if !lsrun.State(r.State).Terminal() {
				return false
			}
		}
		return len(runs) >= n
	})
	if len(runs) != n {
		t.Errorf("%d runs, want %d: %+v", len(runs), n, runs)
	}
	for _, r := range runs {
		want, ok := wantJob[r.ID]
		switch {
		case !ok:
			t.Errorf("run %d (%s) was not asked for", r.ID, r.Job)
		case want == "passes" && r.State != string(lsrun.Success),
			want == "fails" && (r.State != string(lsrun.Failure) || r.Reason != "ScriptExited" || !strings.Contains(r.Message, "status 3")):
			t.Errorf("run %d of %s ended %s/%s %q, want the outcome of its Pod", r.ID, r.Job, r.State, r.Reason, r.Message)
		}
	}

	// lockstep deletes each finished Pod; by then the watch has seen every
	// Pod ever created.
	pollUntil(t, "lockstep to delete the finished Pods", func() bool {
		_, deleted := creates.snapshot()
		return len(pods()) == 0 && deleted >= n
	})
	created, _ := creates.snapshot()
	if len(created) != n {
		t.Errorf("%d Pods created, want %d: %v", len(created), n, created)
	}
	for uid, name := range created {
		if uids[name] != uid {
			t.Errorf("Pod %s (%s) was created after the kill; want only the %d from before", name, uid, n)
		}
	}
	for _, l := range strings.Split(httpGet(t, "http://"+srv.addr+"/metrics"), "\n") {
		if strings.HasPrefix(l, "lockstep_kube_requests_total{") && strings.Contains(l, `verb="create"`) &&
			strings.Contains(l, `resource="pods"`) && strings.Contains(l, `code="201"`) && !strings.HasSuffix(l, " 0") {
			t.Errorf("the restarted lockstep created Pods: %s", l)
		}
	}
}

// listRuns returns every run the API lists.
func listRuns(t *testing.T, addr string) []apiRun {
	t.Helper()
	var page struct {
		Runs     []apiRun `json:"runs"`
		Continue string   `json:"continue"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+addr+"/api/v1/runs?limit=100")), &page); err != nil {
		t.Fatal(err)
	}
	if page.Continue != "" {
		t.Fatalf("more than 100 runs")
	}
	return page.Runs
}

// waitFor polls cond like pollUntil; when it times out, it reports the
// runs and srv's log.
func waitFor(t *testing.T, what string, srv *server, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; runs %+v\nlockstep serve's log:\n%s", what, listRuns(t, srv.addr), srv.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling, with a deadline
	}
}

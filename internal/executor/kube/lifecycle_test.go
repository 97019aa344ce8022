package kube_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	"github.com/lockstep-ci/lockstep/internal/executor/kube/kubetest"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
)

// TestPod asserts the Pod lockstep creates for a run, in full.
func TestPod(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(k *config.Kubernetes) { k.KeepPods = config.Duration{Duration: time.Hour} })
	r := e.create(job(outcome("succeed"), func(j *config.JobBase) {
		j.ServiceAccount = ""
		j.NodeSelector = map[string]string{"type": "kwok"}
	}), 0)
	done := e.waitDone(r.ID)
	// The run's log is the test container's, read through pods/log.
	logData, err := os.ReadFile(done.Status.LogPath)
	if err != nil || !strings.HasPrefix(string(logData), kubetest.ContainerLog) {
		t.Errorf("run log %s: %q, %v; want it to start with the container's log %q", done.Status.LogPath, logData, err, kubetest.ContainerLog)
	}
	pod := e.waitPod(r.ID, "kept", func(p *corev1.Pod) bool { return p.Annotations[kube.AnnotationDeleteAfter] != "" })
	id := r.ID.String()
	wantLabels := map[string]string{kube.LabelManagedBy: "lockstep", kube.LabelRun: id, kube.LabelJob: "unit", kube.LabelPull: "7"}
	if diff := cmp.Diff(wantLabels, pod.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	for k, v := range map[string]string{kube.AnnotationRepo: "acme/widget", kube.AnnotationSHA: r.Spec.Refs.HeadSHA, kube.AnnotationJob: "unit", kube.AnnotationPull: "7"} {
		if pod.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, pod.Annotations[k], v)
		}
	}
	spec := pod.Spec
	if spec.NodeName != kubetest.NodeName || spec.RestartPolicy != corev1.RestartPolicyNever || spec.NodeSelector["type"] != "kwok" {
		t.Errorf("nodeName %q, restartPolicy %q, nodeSelector %v", spec.NodeName, spec.RestartPolicy, spec.NodeSelector)
	}
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("%d init containers and %d containers, want 1 and 1", len(spec.InitContainers), len(spec.Containers))
	}
	clone, test := spec.InitContainers[0], spec.Containers[0]
	if clone.Name != "clone" || clone.Image != config.DefaultKubeCloneImage || clone.WorkingDir != "/workspace/src" {
		t.Errorf("clone container %s %s in %s", clone.Name, clone.Image, clone.WorkingDir)
	}
	wantArgs := []string{"https://github.com/acme/widget.git", "main", r.Spec.Refs.BaseSHA, "7", r.Spec.Refs.HeadSHA, "feature", "/dev/null", ""}
	if got := clone.Command[len(clone.Command)-len(wantArgs):]; !cmp.Equal(got, wantArgs) {
		t.Errorf("clone arguments %q, want %q", got, wantArgs)
	}
	if !strings.HasPrefix(clone.Command[2], "exec 3>/dev/termination-log\n") || clone.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
		t.Errorf("the clone script does not report to its termination message")
	}
	wantTest := []string{"sh", "-e", "-c", "go test ./..."}
	if test.Name != "test" || test.Image != "golang:1.25" || !cmp.Equal(test.Command, wantTest) || test.WorkingDir != "/workspace/src" ||
		test.TerminationMessagePath != "/dev/termination-log" {
		t.Errorf("test container %s %s %q in %s, termination message at %s", test.Name, test.Image, test.Command, test.WorkingDir, test.TerminationMessagePath)
	}
	env := map[string]string{}
	for _, v := range test.Env {
		env[v.Name] = v.Value
	}
	for k, v := range map[string]string{
		"CI": "true", "JOB_NAME": "unit", "JOB_TYPE": "presubmit", "BUILD_ID": id, "LOCKSTEP_RUN_ID": id,
		"REPO_OWNER": "acme", "REPO_NAME": "widget", "PULL_NUMBER": "7", "PULL_BASE_REF": "main",
		"PULL_PULL_SHA": r.Spec.Refs.HeadSHA, "PULL_REFS": "main:" + r.Spec.Refs.BaseSHA + ",7:" + r.Spec.Refs.HeadSHA,
		"ARTIFACTS": "/workspace/artifacts", "KWOK_OUTCOME": "succeed",
		"LOCKSTEP_BUILD_FILE": "/dev/termination-log",
	} {
		if env[k] != v {
			t.Errorf("test container's %s = %q, want %q", k, env[k], v)
		}
	}
	if len(spec.Volumes) != 1 || spec.Volumes[0].EmptyDir == nil || len(test.VolumeMounts) != 1 || test.VolumeMounts[0].MountPath != "/workspace" {
		t.Errorf("volumes %+v, mounts %+v: want one emptyDir at /workspace", spec.Volumes, test.VolumeMounts)
	}
}

// TestPodSpec runs a Prow-shaped spec: its containers are kept, the
// first one is the test container.
func TestPodSpec(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(k *config.Kubernetes) { k.KeepPods = config.Duration{Duration: time.Hour} })
	j := job(map[string]string{"KWOK_OUTCOME": "fail", "KWOK_EXIT": "2"}, func(j *config.JobBase) {
		j.Image, j.Run = "", ""
		j.Spec = &config.KubeValue[corev1.PodSpec]{Value: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "e2e", Image: "kubekins", Command: []string{"runner.sh"}, Args: []string{"make", "e2e"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}},
			{Name: "sidecar", Image: "busybox", Command: []string{"sleep", "inf"}},
		}}}
	})
	r := e.create(j, 0)
	got := e.waitDone(r.ID)
	if got.Status.State != run.Failure || !strings.Contains(got.Status.Message, "status 2") {
		t.Errorf("run ended %s %q, want failure with status 2", got.Status.State, got.Status.Message)
	}
	pod := e.waitPod(r.ID, "kept", func(p *corev1.Pod) bool { return p.Annotations[kube.AnnotationDeleteAfter] != "" })
	if c := pod.Spec.Containers; len(c) != 2 || c[0].Name != "e2e" || c[0].Command[0] != "runner.sh" || c[1].Name != "sidecar" || c[0].Resources.Requests.Cpu().String() != "1" {
		t.Errorf("containers %+v", c)
	}
}

// TestExactlyOnce reconciles one run from 8 goroutines at once, and
// restarts lockstep between creating a Pod and recording it: one Pod.
func TestExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.stop() // the reconciles below are the only ones
	e.start(false)
	r := e.create(job(outcome("pending"), nil), 0)
	admit(t, e, r.ID)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.runner.Reconcile(context.Background(), r.ID); err != nil {
				t.Errorf("Reconcile: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := len(e.pods(r.ID)); n != 1 {
		t.Errorf("%d Pods after 8 concurrent reconciles, want 1", n)
	}

	// A process created the Pod and died before recording it.
	r2 := e.create(job(outcome("succeed"), nil), 0)
	admit(t, e, r2.ID)
	ctx, cancel := context.WithCancel(context.Background())
	first := kube.New(kube.Options{Client: e.admin, Config: e.kcfg, LogDir: t.TempDir()})
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Run(ctx) }()
	cur, _ := e.store.GetRun(context.Background(), r2.ID)
	if _, err := first.Start(context.Background(), cur, func() {}); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-firstDone
	e.stop()
	e.start(true)
	if got := e.waitDone(r2.ID); got.Status.State != run.Success {
		t.Errorf("adopted run ended %s/%s %q, want success", got.Status.State, got.Status.Reason, got.Status.Message)
	}
	if n := testutil.ToFloat64(kube.KubeRequests(e.mets, "create", "pods", "201")); n != 0 {
		t.Errorf("the restarted lockstep created %v Pods, want 0 (adopt the one there)", n)
	}
	if n := len(e.pods(r.ID)); n != 1 {
		t.Errorf("%d Pods for the first run after the restart, want 1", n)
	}
}

// admit moves run id to scheduled, as the runner's admission does.
func admit(t *testing.T, e *env, id run.ID) {
	t.Helper()
	if _, err := e.runner.Reconcile(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.store.GetRun(context.Background(), id); r.Status.State != run.Scheduled {
		t.Fatalf("run %d is %s after admission, want scheduled", id, r.Status.State)
	}
}

// TestRestartAdoption stops lockstep while 20 Pods run; the next lockstep
// adopts them and every run ends with its Pod's outcome.
func TestRestartAdoption(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var ids []run.ID
	for range 20 {
		ids = append(ids, e.create(job(outcome("hold"), nil), 0).ID)
	}
	for _, id := range ids {
		e.wait(id, "running", func(r *run.Run) bool { return r.Status.State == run.Running })
	}
	uids := map[run.ID]string{}
	for _, id := range ids {
		uids[id] = string(e.pods(id)[0].UID)
	}
	e.stop()
	e.start(true)
	// A second writer (the test) annotates the Pods while lockstep
	// follows them: kwok then ends them.
	for _, id := range ids {
		release(t, e.admin, e.ns, id)
	}
	for _, id := range ids {
		got := e.waitDone(id)
		if got.Status.State != run.Success {
			t.Errorf("run %d ended %s/%s %q, want success", id, got.Status.State, got.Status.Reason, got.Status.Message)
		}
	}
	if n := testutil.ToFloat64(kube.KubeRequests(e.mets, "create", "pods", "201")); n != 0 {
		t.Errorf("the restarted lockstep created %v Pods, want 0", n)
	}
	for _, id := range ids {
		if p := e.pods(id); len(p) > 1 || (len(p) == 1 && string(p[0].UID) != uids[id]) {
			t.Errorf("run %d has Pods %v, want its first one or none", id, p)
		}
	}
}

// release annotates run id's Pod so that kwok ends it, retrying on
// conflicts like any writer.
func release(t *testing.T, c kubernetes.Interface, ns string, id run.ID) {
	t.Helper()
	if err := kubetest.Release(context.Background(), c, ns, kube.PodName(id)); err != nil {
		t.Fatal(err)
	}
}

// TestAbortAndTimeout deletes the Pod of an aborted or timed-out run and
// finishes the run once the Pod is gone.
func TestAbortAndTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	abort := e.create(job(outcome("hold"), nil), 0)
	slow := e.create(job(outcome("hold"), nil), 3*time.Second)
	e.wait(abort.ID, "running", func(r *run.Run) bool { return r.Status.State == run.Running })
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := e.store.GetRun(context.Background(), abort.ID)
		if err != nil {
			return err
		}
		cur.RequestAbort(run.ReasonSuperseded, "a newer head")
		_, err = e.store.UpdateRun(context.Background(), cur)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id     run.ID
		reason string
	}{{abort.ID, run.ReasonSuperseded}, {slow.ID, runner.ReasonTimeout}} {
		got := e.waitDone(tc.id)
		if got.Status.State != run.Aborted || got.Status.Reason != tc.reason {
			t.Errorf("run %d ended %s/%s, want aborted/%s", tc.id, got.Status.State, got.Status.Reason, tc.reason)
		}
		if n := len(e.pods(tc.id)); n != 0 {
			t.Errorf("run %d finished with %d Pods left, want 0", tc.id, n)
		}
	}
}

// TestQuota refuses Pods with a ResourceQuota for a while (the
// cluster-api pattern): the runs wait with a condition, then run; none
// ends as failure or error.
func TestQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(k *config.Kubernetes) { k.ScheduleTimeout = config.Duration{Duration: 5 * time.Minute} })
	ctx := context.Background()
	q, err := e.admin.CoreV1().ResourceQuotas(e.ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-pods"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No controller manager runs: publish the quota's usage as it would.
	q.Status = corev1.ResourceQuotaStatus{Hard: q.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}
	if _, err := e.admin.CoreV1().ResourceQuotas(e.ns).UpdateStatus(ctx, q, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ids []run.ID
	for range 5 {
		ids = append(ids, e.create(job(outcome("succeed"), nil), 0).ID)
	}
	for _, id := range ids {
		got := e.wait(id, "waiting for quota", func(r *run.Run) bool {
			c, ok := r.Status.Condition(runner.ConditionStarted)
			return ok && !c.Status && c.Reason == kube.RetryQuota
		})
		if got.Status.State != run.Scheduled {
			t.Errorf("run %d waits for quota as %s, want scheduled", id, got.Status.State)
		}
	}
	if err := e.admin.CoreV1().ResourceQuotas(e.ns).Delete(ctx, "no-pods", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if got := e.waitDone(id); got.Status.State != run.Success {
			t.Errorf("run %d ended %s/%s %q after the quota went, want success", id, got.Status.State, got.Status.Reason, got.Status.Message)
		}
	}
}

// TestConflictsNeverShow has a second writer update the labels of
// lockstep's Pods without pause (the gatekeeper pattern) while lockstep
// annotates them (keep_pods) and deletes them with preconditions (abort):
// no conflict reaches a run.
func TestConflictsNeverShow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(k *config.Kubernetes) { k.KeepPods = config.Duration{Duration: time.Hour} })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	var writes int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			l, err := e.admin.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for _, p := range l.Items {
				p.Labels["gatekeeper"] = fmt.Sprint(i)
				if _, err := e.admin.CoreV1().Pods(e.ns).Update(ctx, &p, metav1.UpdateOptions{}); err == nil {
					writes++
				}
			}
		}
	}()
	var done, aborted []run.ID
	for range 10 {
		done = append(done, e.create(job(outcome("hold"), nil), 0).ID)
		aborted = append(aborted, e.create(job(outcome("hold"), nil), 0).ID)
	}
	for _, id := range append(done, aborted...) {
		e.wait(id, "running", func(r *run.Run) bool { return r.Status.State == run.Running })
	}
	for _, id := range aborted {
		err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			cur, err := e.store.GetRun(context.Background(), id)
			if err != nil {
				return err
			}
			cur.RequestAbort("ByUser", "")
			_, err = e.store.UpdateRun(context.Background(), cur)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range done {
		release(t, e.admin, e.ns, id)
	}
	for _, id := range done {
		if got := e.waitDone(id); got.Status.State != run.Success {
			t.Errorf("run %d ended %s/%s %q, want success", id, got.Status.State, got.Status.Reason, got.Status.Message)
		}
		e.waitPod(id, "annotated", func(p *corev1.Pod) bool { return p.Annotations[kube.AnnotationDeleteAfter] != "" })
	}
	for _, id := range aborted {
		if got := e.waitDone(id); got.Status.State != run.Aborted || strings.Contains(strings.ToLower(got.Status.Message), "conflict") {
			t.Errorf("run %d ended %s/%s %q, want aborted", id, got.Status.State, got.Status.Reason, got.Status.Message)
		}
	}
	cancel()
	wg.Wait()
	if writes == 0 {
		t.Errorf("the second writer wrote nothing")
	}
}

// TestInstrumentConcurrent sends requests through one instrumented
// client from many goroutines under -race, and checks every request is
// counted and none is changed.
func TestInstrumentConcurrent(t *testing.T) {
	t.Parallel()
	m, err := kube.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := bed.Config(kubetest.AdminToken)
	kube.Instrumented(rc, m)
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := c.CoreV1().Pods("default").Get(context.Background(), "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("get: %v, want NotFound", err)
				}
			}
		}()
	}
	wg.Wait()
	if n := testutil.ToFloat64(kube.KubeRequests(m, "get", "pods", "404")); n != 320 {
		t.Errorf("counted %v gets, want 320", n)
	}

	// The same request, shared by goroutines, is left as it was.
	next := http.RoundTripper(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	}))
	in := kube.NewInstrument(next, m, nil)
	req, _ := http.NewRequest(http.MethodGet, "https://k/api/v1/namespaces/ns/pods?watch=true", nil)
	req.Header.Set("Accept", "application/json")
	before := req.Clone(context.Background())
	for range 32 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = in.RoundTrip(req) }()
	}
	wg.Wait()
	if req.URL.String() != before.URL.String() || !cmp.Equal(req.Header, before.Header) {
		t.Errorf("the request was changed")
	}
	if n := testutil.ToFloat64(kube.KubeRequests(m, "watch", "pods", "200")); n != 32 {
		t.Errorf("counted %v watches, want 32", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

package kube_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	"github.com/lockstep-ci/lockstep/internal/executor/kube/kubetest"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/runner"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// bed is the test bed every test of the package shares; each test works
// in a namespace of its own.
var bed *kubetest.Bed

func TestMain(m *testing.M) {
	logs, err := os.CreateTemp("", "lockstep-kubetest-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bed, err = kubetest.Start(logs)
	if err != nil {
		// Not a skip: the Kubernetes executor is untested without it.
		fmt.Fprintf(os.Stderr, "FAIL: start the Kubernetes test bed: %v (its output: %s)\n", err, logs.Name())
		os.Exit(1)
	}
	code := m.Run()
	bed.Stop()
	logs.Close()
	if code == 0 {
		os.Remove(logs.Name())
	} else {
		fmt.Fprintf(os.Stderr, "test bed output: %s\n", logs.Name())
	}
	os.Exit(code)
}

var nsSeq atomic.Int64

// env is one test's lockstep: a SQLite store, the Kubernetes executor
// in a namespace of the test's own, and the real runner.
type env struct {
	t      testing.TB
	ns     string
	admin  kubernetes.Interface
	client kubernetes.Interface
	store  *sqlite.Store
	kcfg   config.Kubernetes
	dir    string
	exec   *kube.Executor
	runner *runner.Runner
	mets   *kube.Metrics
	stop   func()
	seq    atomic.Int64
	wrap   func(*kube.Executor) executor.Executor
	// token is the executor's user's; default the admin's.
	token string
	// transport, if set, wraps the executor's client transport.
	transport func(http.RoundTripper) http.RoundTripper
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

func newEnv(t testing.TB, mutate func(*config.Kubernetes)) *env {
	t.Helper()
	return newEnvWrapped(t, mutate, nil)
}

// newEnvWrapped is newEnv with the runner given wrap's executor.
func newEnvWrapped(t testing.TB, mutate func(*config.Kubernetes), wrap func(*kube.Executor) executor.Executor) *env {
	t.Helper()
	ns := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(ns) > 50 {
		ns = ns[:50]
	}
	ns = fmt.Sprintf("%s-%d", ns, nsSeq.Add(1))
	admin, err := kubernetes.NewForConfig(bed.Config(kubetest.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	if err := kubetest.Namespace(context.Background(), admin, ns); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, ns: ns, admin: admin, store: st, dir: dir, client: admin, wrap: wrap}
	e.kcfg = config.Kubernetes{
		Namespace: ns, NodeName: kubetest.NodeName,
		ImagePullTimeout:  config.Duration{Duration: 2 * time.Second},
		ScheduleTimeout:   config.Duration{Duration: 2 * time.Second},
		DeleteGracePeriod: config.Duration{Duration: time.Second},
	}
	if mutate != nil {
		mutate(&e.kcfg)
	}
	e.start(true)
	return e
}

// start starts an executor and, withRunner, a runner; stop stops them, as a lockstep
// process ending.
func (e *env) start(withRunner bool) {
	var err error
	e.mets, err = kube.NewMetrics(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	token := e.token
	if token == "" {
		token = kubetest.AdminToken
	}
	rc := bed.Config(token)
	kube.Instrumented(rc, e.mets)
	if e.transport != nil {
		rc.Wrap(e.transport)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		e.t.Fatal(err)
	}
	var rnr *runner.Runner
	e.exec = kube.New(kube.Options{
		Client: client, Config: e.kcfg, LogDir: filepath.Join(e.dir, "logs"),
		LogSink: &executor.StoreLogs{Logs: e.store, Logger: slog.New(slog.DiscardHandler), FlushInterval: 20 * time.Millisecond},
		Wake:    func(id run.ID) { rnr.Enqueue(id) }, RetryInterval: 200 * time.Millisecond,
		// kwok keeps a followed log stream open after the container ends.
		LogDrain: 300 * time.Millisecond,
		Metrics:  e.mets, Logger: slog.New(slog.DiscardHandler),
	})
	var ex executor.Executor = e.exec
	if e.wrap != nil {
		ex = e.wrap(e.exec)
	}
	rnr = runner.New(runner.Options{
		Store: e.store, Logger: slog.New(slog.DiscardHandler),
		Executors: map[string]executor.Executor{config.ExecutorKubernetes: ex},
		Config:    func() *config.Config { return config.Default() },
		Workers:   16,
	})
	e.runner = rnr
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = e.exec.Run(ctx) }()
	if withRunner {
		wg.Add(1)
		go func() { defer wg.Done(); _ = rnr.Run(ctx) }()
	}
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	e.t.Cleanup(e.stop)
}

// job returns the ExecutorConfig of a job with image golang and env.
func job(env map[string]string, mutate func(*config.JobBase)) *config.JobBase {
	j := &config.JobBase{Name: "unit", Run: "go test ./...", Executor: config.ExecutorKubernetes, Env: env,
		KubeJob: config.KubeJob{Image: "golang:1.25"}}
	if mutate != nil {
		mutate(j)
	}
	return j
}

// create creates a run of j; outcome is the kwok stage its Pod follows.
func (e *env) create(j *config.JobBase, timeout time.Duration) *run.Run {
	e.t.Helper()
	if timeout == 0 {
		timeout = time.Minute
	}
	r, err := e.store.CreateRun(context.Background(), &run.Run{Spec: run.Spec{
		Job: j.Name, Type: run.Presubmit, Cause: run.CauseCLI,
		Refs: run.Refs{
			Repo: "acme/widget", CloneURL: "https://github.com/acme/widget.git", BaseRef: "main",
			BaseSHA: "1111111111111111111111111111111111111111", Pull: 7,
			HeadSHA: "2222222222222222222222222222222222222222", HeadRef: "feature", Author: "alice",
		},
		Script: j.Run, Env: j.Env, Timeout: timeout,
		Executor: j.Executor, ExecutorConfig: j.ExecutorConfig(config.GitLab{}),
		TriggerKey: fmt.Sprintf("%s/%d", e.ns, e.seq.Add(1)),
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func outcome(o string) map[string]string { return map[string]string{"KWOK_OUTCOME": o} }

// wait polls run id until cond holds, for at most a minute.
func (e *env) wait(id run.ID, what string, cond func(*run.Run) bool) *run.Run {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var r *run.Run
	for {
		var err error
		r, err = e.store.GetRun(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %d: not %s after 90s: state %s/%s %q, conditions %+v", id, what, r.Status.State, r.Status.Reason, r.Status.Message, r.Status.Conditions)
		}
		time.Sleep(20 * time.Millisecond) // polling the store, with a deadline
	}
}

func (e *env) waitDone(id run.ID) *run.Run {
	e.t.Helper()
	return e.wait(id, "finished", func(r *run.Run) bool { return r.Status.State.Terminal() })
}

// pods lists the Pods of run id.
func (e *env) pods(id run.ID) []corev1.Pod {
	e.t.Helper()
	l, err := e.admin.CoreV1().Pods(e.ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelRun + "=" + id.String()})
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

// waitPod polls until run id's Pod satisfies cond.
func (e *env) waitPod(id run.ID, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		p, err := e.admin.CoreV1().Pods(e.ns).Get(context.Background(), kube.PodName(id), metav1.GetOptions{})
		if err == nil && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Pod of run %d not %s after 90s (last error %v)", id, what, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the API server, with a deadline
	}
}

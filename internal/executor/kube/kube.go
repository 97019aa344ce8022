// Package kube is the Kubernetes executor: it runs every run as a Pod,
// named after the run so that it is created exactly once, follows the
// Pods through a shared informer filtered by lockstep's labels, and maps
// each Pod's status, never a guess, to the run's outcome. A restart of
// lockstep interrupts nothing: the Pods go on, and are adopted again.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/executor/local"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// The reasons of the infrastructure failures this executor reports,
// beside executor.ReasonClone and executor.ReasonMergeConflict.
const (
	ReasonImagePull     = "ImagePullFailed"
	ReasonUnschedulable = "Unschedulable"
	ReasonRejected      = "PodRejected"
	ReasonLost          = "PodLost"
)

// The reasons of the Started=false condition while a create is retried.
const (
	RetryQuota      = "QuotaExceeded"
	RetryAPI        = "APIUnavailable"
	RetryMaxPending = "MaxPending"
)

var (
	_ executor.Executor = (*Executor)(nil)
	_ executor.Runnable = (*Executor)(nil)
)

// Options configure an Executor. Client is required.
type Options struct {
	Client kubernetes.Interface
	// Config is the configuration's kubernetes section; its defaults are
	// filled in.
	Config config.Kubernetes
	// LogDir is where the test containers' logs are kept, one file per
	// run, read by the UI like a local run's log.
	LogDir string
	// LogSink, if set, gets a copy of each test container's log as it is
	// read (the store, so that every replica can show it).
	LogSink executor.LogSink
	// LogDrain is how long a test container's log stream may stay open
	// after the container ended (the kubelet ends it then) before lockstep
	// cuts it and ends the run; default DefaultLogDrain.
	LogDrain time.Duration
	// Wake, if set, is called with a run's ID whenever its Pod changes,
	// also for Pods adopted after a restart: pass the runner's Enqueue.
	Wake func(run.ID)
	// RetryInterval is how soon a refused create is tried again; default
	// 5s.
	RetryInterval time.Duration
	// Metrics, if set, receives the executor's measurements.
	Metrics *Metrics
	Clock   clock.WithTickerAndDelayedExecution
	Logger  *slog.Logger
}

// Executor runs runs as Pods. Create it with New, run Run, then use it
// from any goroutine.
type Executor struct {
	opts Options
	cfg  config.Kubernetes
	log  *slog.Logger

	// running is closed once Run has begun; ctx is Run's context.
	running chan struct{}
	ctx     context.Context
	wg      sync.WaitGroup

	// mu guards informers, notify, followers and timers.
	mu        sync.Mutex
	informers map[string]*nsInformer
	notify    map[run.ID]func()
	followers map[run.ID]*follower
	timers    map[run.ID]clock.Timer
}

type nsInformer struct {
	inf    cache.SharedIndexInformer
	synced chan struct{}
}

// New returns an Executor.
// DefaultLogDrain is Options.LogDrain's default.
const DefaultLogDrain = 5 * time.Second

func New(opts Options) *Executor {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.LogDrain <= 0 {
		opts.LogDrain = DefaultLogDrain
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 5 * time.Second
	}
	e := &Executor{
		opts: opts, cfg: opts.Config.Effective(), log: opts.Logger.With("executor", "kubernetes"),
		running:   make(chan struct{}),
		informers: map[string]*nsInformer{},
		notify:    map[run.ID]func(){},
		followers: map[run.ID]*follower{},
		timers:    map[run.ID]clock.Timer{},
	}
	if opts.Metrics != nil {
		opts.Metrics.pods.e = e
	}
	return e
}

// Run starts the informer of the default namespace (others start when a
// job first names them), sweeps the finished Pods kept for debugging, and
// returns when ctx is done and everything it started has stopped.
func (e *Executor) Run(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	e.mu.Unlock()
	close(e.running)
	if _, err := e.informer(ctx, e.cfg.Namespace); err != nil && ctx.Err() == nil {
		e.log.Warn("start the Pod informer", "namespace", e.cfg.Namespace, "err", err)
	}
	tick := e.opts.Clock.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.mu.Lock()
			for id, t := range e.timers {
				t.Stop()
				delete(e.timers, id)
			}
			e.mu.Unlock()
			e.wg.Wait()
			return nil
		case <-tick.C():
			e.sweep(ctx)
		}
	}
}

// informer returns the synced informer of namespace ns, starting it if
// needed.
func (e *Executor) informer(ctx context.Context, ns string) (*nsInformer, error) {
	select {
	case <-e.running:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	e.mu.Lock()
	ni, ok := e.informers[ns]
	if !ok {
		ni = &nsInformer{synced: make(chan struct{})}
		ni.inf = coreinformers.NewFilteredPodInformer(e.opts.Client, ns, 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=" + ManagedByValue })
		_, _ = ni.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    e.onPod,
			UpdateFunc: func(_, obj any) { e.onPod(obj) },
			DeleteFunc: e.onPod,
		})
		e.informers[ns] = ni
		runCtx := e.ctx
		e.wg.Add(2)
		go func() { defer e.wg.Done(); ni.inf.RunWithContext(runCtx) }()
		go func() {
			defer e.wg.Done()
			if cache.WaitForCacheSync(runCtx.Done(), ni.inf.HasSynced) {
				close(ni.synced)
			}
		}()
	}
	e.mu.Unlock()
	select {
	case <-ni.synced:
		return ni, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the Pod informer of namespace %s: %w", ns, ctx.Err())
	}
}

// onPod wakes the run of a Pod that changed.
func (e *Executor) onPod(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	id, ok := runOf(pod)
	if !ok {
		return
	}
	e.wake(id)
}

func (e *Executor) wake(id run.ID) {
	if e.opts.Wake != nil {
		e.opts.Wake(id)
		return
	}
	e.mu.Lock()
	fn := e.notify[id]
	e.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func runOf(pod *corev1.Pod) (run.ID, bool) {
	var id int64
	if _, err := fmt.Sscan(pod.Labels[LabelRun], &id); err != nil || id <= 0 {
		return 0, false
	}
	return run.ID(id), true
}

// namespace returns where r's Pod is.
func (e *Executor) namespace(r *run.Run) string {
	if ns, _, ok := strings.Cut(r.Status.Handle, "/"); ok && ns != "" {
		return ns
	}
	if kr, err := kubeRun(r); err == nil && kr.Namespace != "" {
		return kr.Namespace
	}
	return e.cfg.Namespace
}

// Start creates r's Pod, or adopts it if it exists (a retried reconcile,
// a restart between creating it and recording it).
func (e *Executor) Start(ctx context.Context, r *run.Run, notify func()) (executor.Started, error) {
	kr, err := kubeRun(r)
	if err != nil {
		return executor.Started{}, &executor.InfraError{Reason: ReasonRejected, Err: err}
	}
	ns := kr.Namespace
	if ns == "" {
		ns = e.cfg.Namespace
	}
	ni, err := e.informer(ctx, ns)
	if err != nil {
		return executor.Started{}, err
	}
	started := executor.Started{Handle: ns + "/" + PodName(r.ID), LogPath: e.logPath(r.ID), Waiting: true}
	e.mu.Lock()
	e.notify[r.ID] = notify
	e.mu.Unlock()
	if _, exists, _ := ni.inf.GetStore().GetByKey(ns + "/" + PodName(r.ID)); exists {
		return started, nil
	}
	if max := e.cfg.MaxPending; max > 0 {
		if n := e.pending(); n >= max {
			return executor.Started{}, e.retry(r, RetryMaxPending,
				fmt.Errorf("%d of lockstep's Pods are pending, kubernetes.max_pending is %d", n, max))
		}
	}
	pod := e.buildPod(r, kr, ns)
	_, err = e.opts.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{FieldManager: "lockstep"})
	switch {
	case err == nil:
		e.opts.Metrics.created(e.opts.Clock.Since(r.CreatedAt))
		e.log.Info("pod created", "run", r.ID, "job", r.Spec.Job, "pod", started.Handle)
		return started, nil
	case apierrors.IsAlreadyExists(err):
		cur, gerr := e.opts.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return executor.Started{}, fmt.Errorf("read existing Pod %s: %w", started.Handle, gerr)
		}
		if id, ok := runOf(cur); !ok || id != r.ID {
			return executor.Started{}, &executor.InfraError{Reason: ReasonRejected,
				Err: fmt.Errorf("Pod %s exists and is not run %d's: delete it", started.Handle, r.ID)}
		}
		e.log.Info("pod adopted", "run", r.ID, "pod", started.Handle)
		return started, nil
	case transient(err):
		reason := RetryAPI
		if apierrors.IsForbidden(err) {
			reason = RetryQuota
		}
		return executor.Started{}, e.retry(r, reason, fmt.Errorf("create Pod %s: %w", started.Handle, err))
	default:
		return executor.Started{}, &executor.InfraError{Reason: ReasonRejected,
			Err: fmt.Errorf("create Pod %s: %w", started.Handle, err)}
	}
}

// transient reports whether a refused create may pass: a quota, an API
// server overloaded, failing or away.
func transient(err error) bool {
	if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota") {
		return true
	}
	var ne net.Error
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) ||
		errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

// retry returns the RetryError for a create refused for reason, or the
// InfraError ending the run when that has lasted past schedule_timeout
// since the run was admitted.
func (e *Executor) retry(r *run.Run, reason string, err error) error {
	since := r.CreatedAt
	if c, ok := r.Status.Condition("Admitted"); ok && c.Status {
		since = c.Time
	}
	if e.opts.Clock.Since(since) >= e.cfg.ScheduleTimeout.Duration {
		return &executor.InfraError{Reason: ReasonRejected,
			Err: fmt.Errorf("still refused after kubernetes.schedule_timeout %s: %w", e.cfg.ScheduleTimeout, err)}
	}
	return &executor.RetryError{Reason: reason, Err: err, After: e.opts.RetryInterval}
}

// pending counts lockstep's Pods that are pending.
func (e *Executor) pending() int {
	n := 0
	for _, p := range e.pods() {
		if p.Status.Phase == corev1.PodPending || p.Status.Phase == "" {
			n++
		}
	}
	return n
}

// pods returns every Pod the informers hold.
func (e *Executor) pods() []*corev1.Pod {
	e.mu.Lock()
	infs := make([]*nsInformer, 0, len(e.informers))
	for _, ni := range e.informers {
		infs = append(infs, ni)
	}
	e.mu.Unlock()
	var out []*corev1.Pod
	for _, ni := range infs {
		for _, o := range ni.inf.GetStore().List() {
			if p, ok := o.(*corev1.Pod); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

// getPod returns r's Pod from the informer, or from the API server when
// the informer does not have it (yet); nil when there is none.
func (e *Executor) getPod(ctx context.Context, r *run.Run) (*corev1.Pod, error) {
	ns := e.namespace(r)
	ni, err := e.informer(ctx, ns)
	if err != nil {
		return nil, err
	}
	if o, ok, _ := ni.inf.GetStore().GetByKey(ns + "/" + PodName(r.ID)); ok {
		return o.(*corev1.Pod), nil
	}
	pod, err := e.opts.Client.CoreV1().Pods(ns).Get(ctx, PodName(r.ID), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Pod %s/%s: %w", ns, PodName(r.ID), err)
	}
	return pod, nil
}

// Status maps r's Pod to an outcome. A run whose start was not recorded
// yet is unknown here, so that the runner starts it: Start then adopts
// the Pod if one exists.
func (e *Executor) Status(ctx context.Context, r *run.Run) (executor.Outcome, error) {
	if r.Status.Handle == "" {
		return executor.Outcome{}, executor.ErrUnknown
	}
	pod, err := e.getPod(ctx, r)
	if err != nil {
		return executor.Outcome{}, err
	}
	if pod == nil {
		return executor.Outcome{Done: true, Infra: &executor.InfraError{Reason: ReasonLost,
			Err: fmt.Errorf("Pod %s was deleted outside lockstep", r.Status.Handle)}}, nil
	}
	out := e.outcome(r, pod)
	if out.Done && out.Infra == nil {
		// The outcome is reported once the test container's log is kept.
		if !e.followLog(r, pod, true) {
			return executor.Outcome{}, nil
		}
	} else if !out.Waiting {
		e.followLog(r, pod, false)
	}
	return out, nil
}

// outcome maps pod's status to r's outcome.
func (e *Executor) outcome(r *run.Run, pod *corev1.Pod) executor.Outcome {
	infra := func(reason, format string, args ...any) executor.Outcome {
		return executor.Outcome{Done: true, Infra: &executor.InfraError{Reason: reason, Err: fmt.Errorf(format, args...)}}
	}
	name := pod.Namespace + "/" + pod.Name
	for _, cs := range pod.Status.InitContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			if cs.Name == cloneContainer {
				if ie := local.ParseCloneReport(t.Message); ie != nil {
					return executor.Outcome{Done: true, Infra: ie}
				}
				return infra(executor.ReasonClone, "the clone init container of Pod %s exited with status %d", name, t.ExitCode)
			}
			return executor.Outcome{Done: true, ExitCode: int(t.ExitCode),
				Message: fmt.Sprintf("init container %s exited with status %d", cs.Name, t.ExitCode)}
		}
	}
	testName := pod.Spec.Containers[0].Name
	var test *corev1.ContainerStatus
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == testName {
			test = &pod.Status.ContainerStatuses[i]
		}
	}
	if test != nil && test.State.Terminated != nil && pod.Status.Reason == "" {
		t := test.State.Terminated
		out := executor.Outcome{Done: true, ExitCode: int(t.ExitCode)}
		// The build file is the termination message (pod.go); the
		// kubelet leaves it empty when the job wrote nothing, and puts the
		// log's end there instead for a failed container whose policy says
		// FallbackToLogsOnError.
		if t.ExitCode == 0 || pod.Spec.Containers[0].TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
			out.BuildOutput = strings.TrimSpace(t.Message)
			out.HaveBuild = out.BuildOutput != ""
		}
		if t.ExitCode != 0 && t.Reason != "" && t.Reason != "Error" {
			out.Message = fmt.Sprintf("the test container exited with status %d (%s)", t.ExitCode, t.Reason)
		}
		return out
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		return executor.Outcome{Done: true}
	case corev1.PodFailed:
		reason := pod.Status.Reason
		if reason == "" {
			reason = "Failed"
		}
		return infra(ReasonLost, "Pod %s failed outside its test container: %s %s", name, reason, pod.Status.Message)
	case corev1.PodRunning:
		return executor.Outcome{}
	}
	now := e.opts.Clock.Now()
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			if d := c.LastTransitionTime.Add(e.cfg.ScheduleTimeout.Duration).Sub(now); d > 0 {
				e.wakeIn(r.ID, d)
				return executor.Outcome{Waiting: true}
			}
			return infra(ReasonUnschedulable, "Pod %s could not be scheduled for %s: %s", name, e.cfg.ScheduleTimeout, c.Message)
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "InvalidImageName", "ErrImageNeverPull":
			return infra(ReasonImagePull, "container %s of Pod %s: %s: %s", cs.Name, name, w.Reason, w.Message)
		case "ErrImagePull", "ImagePullBackOff", "RegistryUnavailable", "SignatureValidationFailed":
			if d := pod.CreationTimestamp.Add(e.cfg.ImagePullTimeout.Duration).Sub(now); d > 0 {
				e.wakeIn(r.ID, d)
				return executor.Outcome{Waiting: true}
			}
			return infra(ReasonImagePull, "container %s of Pod %s could not pull %s for %s: %s %s",
				cs.Name, name, cs.Image, e.cfg.ImagePullTimeout, w.Reason, w.Message)
		}
	}
	return executor.Outcome{Waiting: true}
}

// wakeIn wakes run id after d, once.
func (e *Executor) wakeIn(id run.ID, d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.timers[id]; ok {
		return
	}
	e.timers[id] = e.opts.Clock.AfterFunc(d, func() {
		e.mu.Lock()
		delete(e.timers, id)
		e.mu.Unlock()
		e.wake(id)
	})
}

// Kill deletes r's Pod with the configured grace period and waits for it
// to be gone. A delete is conditioned on the Pod lockstep read; a
// conflict is read again and retried, never reported.
func (e *Executor) Kill(ctx context.Context, r *run.Run) error {
	ns := e.namespace(r)
	name := PodName(r.ID)
	pods := e.opts.Client.CoreV1().Pods(ns)
	grace := int64(e.cfg.DeleteGracePeriod.Seconds())
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.DeletionTimestamp != nil {
			return nil
		}
		return pods.Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: &grace,
			Preconditions:      &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion},
		})
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete Pod %s/%s: %w", ns, name, err)
	}
	return e.waitGone(ctx, ns, name, time.Duration(grace)*time.Second+30*time.Second)
}

// waitGone waits until Pod ns/name is gone, for at most limit.
func (e *Executor) waitGone(ctx context.Context, ns, name string, limit time.Duration) error {
	ni, err := e.informer(ctx, ns)
	if err != nil {
		return err
	}
	deadline := e.opts.Clock.Now().Add(limit)
	tick := e.opts.Clock.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, ok, _ := ni.inf.GetStore().GetByKey(ns + "/" + name); !ok {
			return nil
		}
		if !e.opts.Clock.Now().Before(deadline) {
			return fmt.Errorf("Pod %s/%s is still there %s after its deletion", ns, name, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C():
		}
	}
}

// Cleanup deletes r's finished Pod, or marks it to be deleted after
// kubernetes.keep_pods.
func (e *Executor) Cleanup(ctx context.Context, r *run.Run) error {
	e.mu.Lock()
	delete(e.notify, r.ID)
	if t, ok := e.timers[r.ID]; ok {
		t.Stop()
		delete(e.timers, r.ID)
	}
	f := e.followers[r.ID]
	delete(e.followers, r.ID)
	e.mu.Unlock()
	if f != nil {
		f.stop()
	}
	ns := e.namespace(r)
	pods := e.opts.Client.CoreV1().Pods(ns)
	name := PodName(r.ID)
	if keep := e.cfg.KeepPods.Duration; keep > 0 {
		after := e.opts.Clock.Now().Add(keep).UTC().Format(time.RFC3339)
		err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			cur, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cur.Annotations[AnnotationDeleteAfter] != "" {
				return nil
			}
			if cur.Annotations == nil {
				cur.Annotations = map[string]string{}
			}
			cur.Annotations[AnnotationDeleteAfter] = after
			_, err = pods.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "lockstep"})
			return err
		})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	err := pods.Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete finished Pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// sweep deletes the kept Pods whose time is up.
func (e *Executor) sweep(ctx context.Context) {
	now := e.opts.Clock.Now()
	for _, p := range e.pods() {
		s := p.Annotations[AnnotationDeleteAfter]
		if s == "" || p.DeletionTimestamp != nil {
			continue
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil || now.Before(t) {
			continue
		}
		uid := p.UID
		err = e.opts.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			e.log.Warn("delete kept Pod", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
	}
}

func (e *Executor) logPath(id run.ID) string {
	return filepath.Join(e.opts.LogDir, id.String()+".log")
}

// ensureLogDir creates the log directory.
func (e *Executor) ensureLogDir() error { return os.MkdirAll(e.opts.LogDir, 0o750) }

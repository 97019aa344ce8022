package kube

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"

	"github.com/lockstep-ci/lockstep/internal/executor"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// follower copies a test container's log, streamed through the API
// (pods/log, follow), into the run's log file and the LogSink, where the
// UI reads it live and where it stays when the Pod is deleted.
type follower struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	// drain is started once the test container has ended; late is set
	// when the stream had not ended LogDrain later and was cut.
	drain sync.Once
	late  atomic.Bool
}

// ended tells f that the test container has ended: a stream still open
// LogDrain later (a kubelet that does not end it) is cut.
func (e *Executor) ended(f *follower) {
	f.drain.Do(func() {
		e.opts.Clock.AfterFunc(e.opts.LogDrain, func() {
			f.late.Store(true)
			f.cancel()
		})
	})
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
}

func (f *follower) finished() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// followLog starts following the log of r's test container once it has
// started, and reports whether the whole log has been kept. ended says
// the test container has ended.
func (e *Executor) followLog(r *run.Run, pod *corev1.Pod, ended bool) bool {
	e.mu.Lock()
	f, ok := e.followers[r.ID]
	if !ok {
		if e.ctx == nil {
			e.mu.Unlock()
			return true
		}
		ctx, cancel := context.WithCancel(e.ctx)
		f = &follower{cancel: cancel, done: make(chan struct{})}
		e.followers[r.ID] = f
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer close(f.done)
			defer e.wake(r.ID)
			e.copyLog(ctx, f, r.ID, pod.Namespace, pod.Name, pod.Spec.Containers[0].Name)
		}()
	}
	e.mu.Unlock()
	if ended {
		e.ended(f)
	}
	return f.finished()
}

// copyLog writes the container's log into the run's log file and the
// LogSink from the start: a follower started again after a restart
// rewrites the file whole, and the sink skips what it holds already.
func (e *Executor) copyLog(ctx context.Context, fw *follower, id run.ID, ns, name, container string) {
	if err := e.ensureLogDir(); err != nil {
		e.log.Warn("create log directory", "run", id, "err", err)
		return
	}
	f, err := os.Create(e.logPath(id))
	if err != nil {
		e.log.Warn("create log file", "run", id, "err", err)
		return
	}
	defer f.Close()
	var out io.Writer = f
	if e.opts.LogSink != nil {
		sink := e.opts.LogSink.Open(id, executor.LogFromStart)
		defer sink.Close()
		out = io.MultiWriter(sink, f)
	}
	stream, err := e.opts.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		fmt.Fprintf(out, "lockstep: cannot read the log of container %s of Pod %s/%s: %v\n", container, ns, name, err)
		return
	}
	defer stream.Close()
	_, err = io.Copy(out, stream)
	switch {
	case fw.late.Load():
		fmt.Fprintf(out, "lockstep: the log stream of Pod %s/%s was still open %s after its test container ended; stopped reading it\n", ns, name, e.opts.LogDrain)
	case err != nil && ctx.Err() == nil:
		fmt.Fprintf(out, "\nlockstep: the log of Pod %s/%s broke off: %v\n", ns, name, err)
	}
}

package kube_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/lockstep-ci/lockstep/internal/executor/kube"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// breaker cuts the Pod watches passing through it on demand, holds the
// watch requests that follow until released, then answers the first of
// them the way an API server answers a watch from a resourceVersion it
// has compacted away: an ERROR event with a 410 Expired status.
type breaker struct {
	next http.RoundTripper

	mu      sync.Mutex
	bodies  []io.Closer
	broken  chan struct{} // closed by cut
	release chan struct{} // closed by resume
	expired bool          // the 410 was sent
}

func (b *breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	if kube.Verb(req) != "watch" {
		return b.next.RoundTrip(req)
	}
	b.mu.Lock()
	broken, release := b.broken, b.release
	b.mu.Unlock()
	select {
	case <-broken:
		select {
		case <-release:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		b.mu.Lock()
		send := !b.expired
		b.expired = true
		b.mu.Unlock()
		if send {
			body := `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}` + "\n"
			return &http.Response{StatusCode: http.StatusOK, Request: req, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(body))}, nil
		}
	default:
	}
	resp, err := b.next.RoundTrip(req)
	if err == nil {
		b.mu.Lock()
		b.bodies = append(b.bodies, resp.Body)
		b.mu.Unlock()
	}
	return resp, err
}

func (b *breaker) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.broken)
	for _, c := range b.bodies {
		c.Close()
	}
	b.bodies = nil
}

func (b *breaker) resume() { close(b.release) }

// TestWatchExpiry breaks the informer's watch while a Pod ends; the watch
// resumes with 410 Gone, the informer lists again, and the end is seen.
func TestWatchExpiry(t *testing.T) {
	t.Parallel()
	br := &breaker{broken: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, nil)
	e.stop()
	e.transport = func(next http.RoundTripper) http.RoundTripper { br.next = next; return br }
	e.start(true)
	r := e.create(job(outcome("hold"), nil), 0)
	e.wait(r.ID, "running", func(r *run.Run) bool { return r.Status.State == run.Running })
	br.cut()
	release(t, e.admin, e.ns, r.ID)
	e.waitPod(r.ID, "succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if got, _ := e.store.GetRun(context.Background(), r.ID); got.Status.State.Terminal() {
		t.Fatalf("run finished (%s) while the watch was cut: the test shows nothing", got.Status.State)
	}
	br.resume()
	if got := e.waitDone(r.ID); got.Status.State != run.Success {
		t.Errorf("run ended %s/%s %q, want success", got.Status.State, got.Status.Reason, got.Status.Message)
	}
	if _, all := kube.CountRequests(e.mets); all == 0 {
		t.Errorf("no requests counted")
	}
	br.mu.Lock()
	defer br.mu.Unlock()
	if !br.expired {
		t.Errorf("the informer never watched again after the cut")
	}
}

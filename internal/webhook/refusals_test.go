package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// Refused deliveries reach the store through the recorder, without
// their bodies, and the intake answers without waiting for the write.
func TestRefusalRecorder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := NewRefusalRecorder(st, nil)
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h := NewHandler(HandlerOptions{
		Secret:  func() ([]byte, error) { return testSecret, nil },
		Sink:    SinkFunc(func(context.Context, Delivery) (bool, error) { return false, nil }),
		Refused: rec.Record,
	})
	body := []byte(`{"action":"opened"}`)
	const n = 20
	for i := range n {
		r := signedRequest("pull_request", "d-"+string(rune('a'+i)), body)
		r.Header.Set(HeaderSignature, Sign([]byte("not the secret"), body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", w.Code)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var page store.RefusalPage
	for {
		page, err = st.ListRefusals(ctx, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Refusals) == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(page.Refusals) != n {
		t.Fatalf("%d refusals stored, want %d", len(page.Refusals), n)
	}
	r := page.Refusals[0]
	if r.ID != "d-"+string(rune('a'+n-1)) || r.Event != "pull_request" || r.Status != 401 || r.Outcome != OutcomeUnauthorized || !strings.HasPrefix(r.Message, "signature does not match the body") {
		t.Errorf("newest refusal %+v", r)
	}
}

// A full queue drops refusals rather than blocking the intake.
func TestRefusalRecorderNeverBlocks(t *testing.T) {
	t.Parallel()
	rec := NewRefusalRecorder(nil, nil) // never written: Run is not started
	for range refusalQueue * 3 {
		rec.Record(store.Refusal{Status: 401})
	}
	if got := rec.dropped.Load(); got != refusalQueue*2 {
		t.Errorf("dropped %d, want %d", got, refusalQueue*2)
	}
}

package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

// largestPullRequest returns the largest pull_request fixture.
func largestPullRequest(b *testing.B) testfixtures.Payload {
	b.Helper()
	var largest testfixtures.Payload
	for _, p := range testfixtures.GitHubPayloads(b, "pull_request") {
		if len(p.Body) > len(largest.Body) {
			largest = p
		}
	}
	return largest
}

// BenchmarkHandler measures the intake's CPU time per delivery of the
// largest pull_request fixture, everything but the Sink's write included:
// reading, verifying, validating and answering.
func BenchmarkHandler(b *testing.B) {
	p := largestPullRequest(b)
	sig := Sign(testSecret, p.Body)
	h := NewHandler(HandlerOptions{
		Secret: func() ([]byte, error) { return testSecret, nil },
		Sink:   SinkFunc(func(context.Context, Delivery) (bool, error) { return false, nil }),
	})
	newRequest := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(p.Body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(HeaderEvent, "pull_request")
		r.Header.Set(HeaderDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		r.Header.Set(HeaderSignature, sig)
		return r
	}
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(int64(len(p.Body)))
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, newRequest())
			if w.Code != http.StatusAccepted {
				b.Fatalf("got status %d (%s), want 202", w.Code, w.Body)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(int64(len(p.Body)))
		b.ReportAllocs()
		defer reportCPU(b)()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, newRequest())
				if w.Code != http.StatusAccepted {
					b.Errorf("got status %d (%s), want 202", w.Code, w.Body)
					return
				}
			}
		})
	})
}

// BenchmarkVerify measures the HMAC-SHA256 check of the largest
// pull_request fixture.
func BenchmarkVerify(b *testing.B) {
	p := largestPullRequest(b)
	sig := Sign(testSecret, p.Body)
	b.SetBytes(int64(len(p.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(testSecret, sig, p.Body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidate compares Validate with the alternatives on the largest
// pull_request fixture: json.Valid alone, encoding/json into a struct of
// the same few fields, and Decode's full go-github decoding.
func BenchmarkValidate(b *testing.B) {
	p := largestPullRequest(b)
	b.Run("Validate", func(b *testing.B) {
		b.SetBytes(int64(len(p.Body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Validate("pull_request", p.Body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(p.Body)))
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid(p.Body) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Unmarshal-small-struct", func(b *testing.B) {
		b.SetBytes(int64(len(p.Body)))
		b.ReportAllocs()
		for b.Loop() {
			var e struct {
				Action      *string `json:"action"`
				Number      *int    `json:"number"`
				PullRequest *struct {
					Head *struct {
						SHA *string `json:"sha"`
					} `json:"head"`
				} `json:"pull_request"`
				Repository *struct {
					FullName *string `json:"full_name"`
				} `json:"repository"`
			}
			if err := json.Unmarshal(p.Body, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(p.Body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode("pull_request", p.Body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU starts measuring the process's CPU time; the function it
// returns reports it per operation as cpu-ns/op, garbage collection and
// every goroutine included.
func reportCPU(b *testing.B) func() {
	start, ok := processCPU()
	return func() {
		end, ok2 := processCPU()
		if ok && ok2 && b.N > 0 {
			b.ReportMetric(float64((end-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkHandlerRefused measures the intake's CPU time per refused
// delivery (a wrong signature on the largest pull_request fixture) with
// the refusal recorder writing to a real SQLite store: what a flood of
// bad deliveries costs the intake.
func BenchmarkHandlerRefused(b *testing.B) {
	p := largestPullRequest(b)
	sig := Sign([]byte("not the secret"), p.Body)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "lockstep.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rec := NewRefusalRecorder(st, nil)
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	defer func() { cancel(); <-done }()
	h := NewHandler(HandlerOptions{
		Secret:  func() ([]byte, error) { return testSecret, nil },
		Sink:    SinkFunc(func(context.Context, Delivery) (bool, error) { return false, nil }),
		Refused: rec.Record,
	})
	b.SetBytes(int64(len(p.Body)))
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(p.Body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(HeaderEvent, "pull_request")
		r.Header.Set(HeaderDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		r.Header.Set(HeaderSignature, sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			b.Fatalf("got status %d, want 401", w.Code)
		}
	}
}

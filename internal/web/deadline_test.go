package web

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBodyDeadline sends a webhook that declares 10 MB and drips a byte
// at a time: the server cuts it within the deadline, while /healthz
// keeps answering and a body sent at once goes through.
func TestBodyDeadline(t *testing.T) {
	t.Parallel()
	const deadline = 300 * time.Millisecond
	readErr := make(chan error, 1)
	srv := New(Options{Store: nil, Routes: func(mux *http.ServeMux) {
		mux.HandleFunc("POST /hook", func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				select {
				case readErr <- err:
				default:
				}
				http.Error(w, "body too slow", http.StatusRequestTimeout)
				return
			}
			fmt.Fprintf(w, "read %d\n", n)
		})
	}})
	ts := httptest.NewServer(BodyDeadline(srv, deadline))
	t.Cleanup(ts.Close)

	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 10<<20)
	// Drip a byte every 50 ms from another goroutine until the server
	// closes the connection.
	dripDone := make(chan struct{})
	go func() {
		defer close(dripDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
			if time.Since(start) > 20*time.Second {
				return
			}
		}
	}()
	// Meanwhile /healthz answers.
	resp, err := http.Get(ts.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz while a body drips: %v %v", resp, err)
	}
	resp.Body.Close()

	select {
	case err := <-readErr:
		if elapsed := time.Since(start); elapsed > deadline+2*time.Second {
			t.Errorf("the dripping body was cut after %s, want about %s", elapsed, deadline)
		}
		if !strings.Contains(err.Error(), "timeout") {
			t.Errorf("read error %v, want a timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the dripping body was never cut")
	}
	// The server closes the connection: the drip stops with an error.
	<-dripDone

	// A body sent at once is read whole, and the connection lives on.
	resp, err = http.Post(ts.URL+"/hook", "application/json", strings.NewReader(strings.Repeat("y", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != fmt.Sprintf("read %d\n", 1<<20) {
		t.Errorf("a prompt body: got %d %q", resp.StatusCode, b)
	}
}

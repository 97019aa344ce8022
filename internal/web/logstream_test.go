package web

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
}

// stream is a client of a live log. events is closed when the stream
// ends.
type stream struct {
	events chan sseEvent
}

func openStream(t *testing.T, url string, header map[string]string) *stream {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &stream{events: make(chan sseEvent, 100)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if data != nil || ev.Event != "" {
					ev.Data = strings.Join(data, "\n")
					s.events <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[6:])
			}
		}
	}()
	return s
}

// next returns the next event, failing the test if none comes.
func (s *stream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended while an event was expected")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return sseEvent{}
}

// ended waits for the stream to close, failing on any further event.
func (s *stream) ended(t *testing.T) {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if ok {
			t.Fatalf("got event %+v, want the end of the stream", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end within 10 s")
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func liveEnv(t *testing.T) *testEnv {
	return newEnv(t, func(o *Options) {
		o.Clock = clock.RealClock{}
		o.LogPoll = 5 * time.Millisecond
	})
}

func TestLogStreamFollowsRunningLog(t *testing.T) {
	t.Parallel()
	e := liveEnv(t)
	ctx := context.Background()
	logPath := filepath.Join(e.dir, "run.log")
	writeFile(t, logPath, "first\n")
	rn := createRunning(t, e.store, "stream/1", logPath)
	url := fmt.Sprintf("%s/api/v1/runs/%d/log/stream", e.ts.URL, rn.ID)
	s := openStream(t, url, nil)

	var got []sseEvent
	got = append(got, s.next(t))
	// Lines appended while the run goes on arrive; an unfinished line
	// waits for its end.
	appendFile(t, logPath, "second\npar")
	got = append(got, s.next(t))
	appendFile(t, logPath, "tial\r\nprogress 1%\rprogress 100%\n\x1b[31mred\x1b[0m\n")
	got = append(got, s.next(t), s.next(t), s.next(t))
	// The run ends with an unfinished last line: it is sent, then the end.
	appendFile(t, logPath, "no newline")
	rn.Status.State = run.Success
	rn.Status.FinishedAt = &testNow
	if _, err := e.store.UpdateRunStatus(ctx, rn); err != nil {
		t.Fatal(err)
	}
	got = append(got, s.next(t), s.next(t))
	s.ended(t)
	want := []sseEvent{
		{ID: "6", Data: "first"},
		{ID: "13", Data: "second"},
		{ID: "22", Data: "partial"},
		{ID: "48", Data: "progress 1%\nprogress 100%"},
		{ID: "61", Data: "red"},
		{ID: "71", Data: "no newline"},
		{Event: "end", Data: `{"state":"success"}`},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// Resuming from an event's id, as a reconnecting EventSource does,
	// sends what follows it; the run is over, so the stream ends.
	s = openStream(t, url, map[string]string{"Last-Event-ID": "22"})
	got = []sseEvent{s.next(t), s.next(t), s.next(t), s.next(t)}
	s.ended(t)
	want = []sseEvent{want[3], want[4], want[5], want[6]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resumed events (-want +got):\n%s", diff)
	}
	s = openStream(t, url+"?offset=61", nil)
	if ev := s.next(t); ev != (sseEvent{ID: "71", Data: "no newline"}) {
		t.Errorf("from offset 61: got %+v", ev)
	}
}

func TestLogStreamWaitsForStart(t *testing.T) {
	t.Parallel()
	e := liveEnv(t)
	ctx := context.Background()
	rn, err := e.store.CreateRun(ctx, &run.Run{Spec: run.Spec{Job: "unit", Type: run.Manual, Script: "true", TriggerKey: "stream/pending",
		Refs: run.Refs{Repo: seedRepo}}})
	if err != nil {
		t.Fatal(err)
	}
	s := openStream(t, fmt.Sprintf("%s/api/v1/runs/%d/log/stream", e.ts.URL, rn.ID), nil)
	logPath := filepath.Join(e.dir, "late.log")
	writeFile(t, logPath, "started\n")
	for _, st := range []run.State{run.Scheduled, run.Running} {
		rn.Status.State = st
		if st == run.Running {
			rn.Status.LogPath = logPath
		}
		if rn, err = e.store.UpdateRunStatus(ctx, rn); err != nil {
			t.Fatal(err)
		}
	}
	if ev := s.next(t); ev.Data != "started" {
		t.Errorf("got %+v, want the first line", ev)
	}
	// Shutting the server down ends the streams.
	e.srv.CloseStreams()
	s.ended(t)
}

func TestLogStreamErrors(t *testing.T) {
	t.Parallel()
	e := liveEnv(t)
	for path, want := range map[string]int{
		"/api/v1/runs/999999/log/stream":                                       404,
		"/api/v1/runs/x/log/stream":                                            400,
		fmt.Sprintf("/api/v1/runs/%d/log/stream?offset=-1", e.seed.PullFailed): 400,
	} {
		if status, body, _ := e.get(t, nil, path); status != want {
			t.Errorf("GET %s: got %d, want %d: %s", path, status, want, body)
		}
	}
	// A finished run's stream is its whole log and the end.
	s := openStream(t, fmt.Sprintf("%s/api/v1/runs/%d/log/stream", e.ts.URL, e.seed.PullFailed), nil)
	var lines []string
	for {
		ev := s.next(t)
		if ev.Event == "end" {
			if !strings.Contains(ev.Data, `"state":"failure"`) || !strings.Contains(ev.Data, `"reason":"ScriptExited"`) {
				t.Errorf("end event %q", ev.Data)
			}
			break
		}
		lines = append(lines, ev.Data)
	}
	s.ended(t)
	// The plain stream leaves colours out.
	if got, want := strings.Join(lines, "\n")+"\n", ansiEscape.ReplaceAllString(unitLog(false), ""); got != want {
		t.Errorf("got log %q, want %q", got, want)
	}

	// format=html streams each line as HTML, colours as classes.
	s = openStream(t, fmt.Sprintf("%s/api/v1/runs/%d/log/stream?format=html", e.ts.URL, e.seed.PullFailed), nil)
	var html []string
	for ev := s.next(t); ev.Event != "end"; ev = s.next(t) {
		html = append(html, ev.Data)
	}
	s.ended(t)
	if len(html) != len(lines) || html[7] != `<span class="a-f1 a-b">--- FAIL: TestRetryBackoff (0.31s)</span>` || html[0] != lines[0] {
		t.Errorf("html stream: %d lines, line 8 %q, want %d lines, line 8 in bold red", len(html), html[7], len(lines))
	}
}

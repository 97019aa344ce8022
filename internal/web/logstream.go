package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// ansiEscape matches terminal escape sequences (colours, cursor moves),
// which a browser would show as garbage.
var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>]")

// cleanLine makes one line of a log fit for a page.
func cleanLine(b []byte) []byte {
	if bytes.IndexByte(b, 0x1b) >= 0 {
		b = ansiEscape.ReplaceAll(b, nil)
	}
	return bytes.TrimSuffix(b, []byte("\r"))
}

// maxLine is the longest line the live log holds back waiting for its
// end: a longer one is sent in pieces.
const maxLine = 64 << 10

// logTail is the end of a log for a page: at most max bytes, starting at
// a line. Offset is where it ends: a live log continues from there.
type logTail struct {
	Lines     []logLine
	Offset    int64
	Truncated bool // the log is longer: Lines are its end
	Missing   bool // the log file is gone
}

// logLine is one line of a log on a page.
type logLine struct {
	// N is the line's number in the whole log, from 1.
	N int
	// HTML is the line rendered (renderLine); Text is its text without
	// escape sequences.
	HTML template.HTML
	Text string
}

// NextLine is the number the next line of the log gets.
func (t logTail) NextLine() int {
	if len(t.Lines) == 0 {
		return 1
	}
	return t.Lines[len(t.Lines)-1].N + 1
}

// Text returns the lines' text, each ended by a line break.
func (t logTail) Text() string {
	var b strings.Builder
	for _, l := range t.Lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// errorLine matches a line that says something failed, the way test
// runners, compilers and make say it.
var errorLine = regexp.MustCompile(`(?i)(^|[^a-z])(fail(ed|ure)?|errors?|panic|fatal)([^a-z]|$)`)

// FirstError returns the first line of the tail that says something
// failed, if any.
func (t logTail) FirstError() (logLine, bool) {
	for _, l := range t.Lines {
		if errorLine.MatchString(l.Text) {
			return l, true
		}
	}
	return logLine{}, false
}

// readLogTail reads the end of the log at path. When whole is false (the
// run goes on) it stops after the last complete line, so that the live
// log continues at a line's start.
func readLogTail(f logFile, err error, max int64, whole bool) (logTail, error) {
	if errors.Is(err, fs.ErrNotExist) {
		return logTail{Missing: true}, nil
	}
	if err != nil {
		return logTail{}, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return logTail{}, fmt.Errorf("log size: %w", err)
	}
	start := max64(0, size-max)
	b := make([]byte, size-start)
	if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return logTail{}, fmt.Errorf("read log: %w", err)
	}
	t := logTail{Offset: size}
	n := 1
	if start > 0 {
		t.Truncated = true
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
			start += int64(i + 1)
		}
		if n, err = countLines(f, start); err != nil {
			return logTail{}, err
		}
	}
	if !whole {
		i := bytes.LastIndexByte(b, '\n')
		t.Offset -= int64(len(b) - (i + 1))
		b = b[:i+1]
	}
	st := defaultSGR()
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		t.Lines = append(t.Lines, logLine{N: n, HTML: renderLine(&st, line), Text: string(cleanLine(line))})
		n++
		b = rest
	}
	return t, nil
}

// countLines returns the number of the line that starts at byte end of
// f: one more than the line breaks before it.
func countLines(f io.ReaderAt, end int64) (int, error) {
	buf := make([]byte, 64<<10)
	n := 1
	for off := int64(0); off < end; {
		m, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		n += bytes.Count(buf[:m], []byte("\n"))
		off += int64(m)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("count log lines: %w", err)
		}
		if m == 0 {
			break
		}
	}
	return n, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// streamEnd is the data of the stream's final "end" event.
type streamEnd struct {
	State   run.State `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Message string    `json:"message,omitempty"`
}

// apiRunLogStream is GET /api/v1/runs/{id}/log/stream: the run's log as
// Server-Sent Events, one "message" event per line, whose id is the byte
// offset after the line, so a reconnecting EventSource (Last-Event-ID) or
// the offset parameter resumes where it left off. When the run has ended
// and its log has been sent, an "end" event carries the final state as
// JSON and the stream closes. With format=html, each event's data is the
// line as HTML (renderLine: escaped, its ANSI colours as classes) rather
// than its text without escape sequences.
func (s *Server) apiRunLogStream(w http.ResponseWriter, r *http.Request) {
	rn, ok := s.runFromPath(w, r)
	if !ok {
		return
	}
	offset := int64(0)
	from := r.Header.Get("Last-Event-ID")
	if from == "" {
		from = r.URL.Query().Get("offset")
	}
	if from != "" {
		n, err := strconv.ParseInt(from, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("offset %q: want a byte offset", from))
			return
		}
		offset = n
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	fmt.Fprintf(w, ": log of run %d\nretry: 2000\n\n", rn.ID)
	if err := rc.Flush(); err != nil {
		return
	}

	ls := &logSender{w: w, offset: offset, html: r.URL.Query().Get("format") == "html", sgr: defaultSGR()}
	defer ls.close()
	tick := s.clock.NewTicker(s.opts.LogPoll)
	defer tick.Stop()
	for {
		// The state is read before the log: once a run is seen finished,
		// its executor has written everything, and one more read of the
		// log gets it all.
		done := rn.Status.State.Terminal()
		if err := ls.send(func() (logFile, error) { return s.openLog(r.Context(), rn) }, rn.Status.LogPath != "", done); err != nil {
			s.log.Warn("live log", "run", rn.ID, "err", err)
			return
		}
		if done {
			end, _ := json.Marshal(streamEnd{State: rn.Status.State, Reason: rn.Status.Reason, Message: rn.Status.Message})
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", end)
			_ = rc.Flush()
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-tick.C():
		}
		cur, err := s.opts.Store.GetRun(r.Context(), rn.ID)
		if err != nil {
			if r.Context().Err() == nil {
				s.log.Warn("live log: read run", "run", rn.ID, "err", err)
			}
			return
		}
		rn = cur
	}
}

// logSender sends the lines of one log file as events.
type logSender struct {
	w       io.Writer
	f       logFile
	offset  int64  // where the next event starts
	partial []byte // read but not sent: a line without its end yet
	buf     []byte
	// html makes each event's data the line as HTML (renderLine), with
	// its colours, rather than its text; sgr carries the colours from
	// line to line.
	html bool
	sgr  sgr
}

func (ls *logSender) close() {
	if ls.f != nil {
		ls.f.Close()
	}
}

// send writes an event for every complete line appended to the log since
// the last call, and, when final, for the unfinished last line too. open
// opens the log, once it exists (started).
func (ls *logSender) send(open func() (logFile, error), started, final bool) error {
	if ls.f == nil {
		if !started {
			return nil
		}
		f, err := open()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("open log: %w", err)
		}
		ls.f = f
		ls.buf = make([]byte, 32<<10)
	}
	read := ls.offset + int64(len(ls.partial))
	for {
		n, err := ls.f.ReadAt(ls.buf, read)
		read += int64(n)
		b := append(ls.partial, ls.buf[:n]...)
		for {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				break
			}
			ls.event(b[:i], int64(i+1))
			b = b[i+1:]
		}
		if len(b) >= maxLine {
			ls.event(b, int64(len(b)))
			b = nil
		}
		ls.partial = append(ls.partial[:0], b...)
		if errors.Is(err, io.EOF) || n == 0 {
			break
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
	}
	if final && len(ls.partial) > 0 {
		ls.event(ls.partial, int64(len(ls.partial)))
		ls.partial = ls.partial[:0]
	}
	return nil
}

// event writes one line as an event; n is how many bytes of the log it
// stands for.
func (ls *logSender) event(line []byte, n int64) {
	ls.offset += n
	var b bytes.Buffer
	fmt.Fprintf(&b, "id: %d\n", ls.offset)
	if ls.html {
		// Rendered HTML has no line breaks: one data field.
		fmt.Fprintf(&b, "data: %s\n\n", renderLine(&ls.sgr, line))
		_, _ = ls.w.Write(b.Bytes())
		return
	}
	line = cleanLine(line)
	// An event's data cannot hold a line break: a carriage return inside
	// the line (a progress bar) starts another data field, which the
	// browser joins with a newline.
	for {
		i := bytes.IndexByte(line, '\r')
		if i < 0 {
			break
		}
		b.WriteString("data: ")
		b.Write(line[:i])
		b.WriteByte('\n')
		line = line[i+1:]
	}
	b.WriteString("data: ")
	b.Write(line)
	b.WriteString("\n\n")
	_, _ = ls.w.Write(b.Bytes())
}

// logFile is an open run log, read at offsets: the file the local
// executor writes, on the replica that ran the run, or the store's copy,
// on any replica.
type logFile interface {
	io.ReaderAt
	Size() (int64, error)
	Close() error
}

// diskLog is a log file on this replica's disk.
type diskLog struct{ *os.File }

// Size returns the file's size.
func (d diskLog) Size() (int64, error) {
	fi, err := d.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// storeLog is a run's log in the store.
type storeLog struct {
	ctx  context.Context
	logs store.Logs
	id   run.ID
}

// ReadAt reads len(p) bytes of the log from off, or fewer and io.EOF at
// its end.
func (l storeLog) ReadAt(p []byte, off int64) (int, error) {
	b, err := l.logs.ReadLog(l.ctx, l.id, off, len(p))
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Size returns the log's length.
func (l storeLog) Size() (int64, error) { return l.logs.LogLength(l.ctx, l.id) }

// Close does nothing.
func (storeLog) Close() error { return nil }

// openLog opens the log of rn: the store's copy when the store keeps logs
// and has some of it, else the file the run's executor wrote on this
// replica, else (on a replica that did not run it) the store's copy, which
// fills in as the run goes on. Without either it fails with an error
// wrapping fs.ErrNotExist.
func (s *Server) openLog(ctx context.Context, rn *run.Run) (logFile, error) {
	var fromStore logFile
	if s.opts.Logs != nil {
		fromStore = storeLog{ctx: ctx, logs: s.opts.Logs, id: rn.ID}
		n, err := s.opts.Logs.LogLength(ctx, rn.ID)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return fromStore, nil
		}
	}
	if rn.Status.LogPath == "" {
		if fromStore != nil {
			return fromStore, nil
		}
		return nil, fmt.Errorf("run %d has no log: %w", rn.ID, fs.ErrNotExist)
	}
	f, err := os.Open(rn.Status.LogPath)
	if errors.Is(err, fs.ErrNotExist) && fromStore != nil {
		return fromStore, nil
	}
	if err != nil {
		return nil, err
	}
	return diskLog{f}, nil
}

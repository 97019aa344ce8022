// Package redact replaces secrets with "***" in a stream of bytes, as it
// is written: run logs pass through a Writer on their way to wherever they
// are kept, so no copy of a log (the stored file, the live stream, the
// API, a terminal) ever holds a secret lockstep knows.
package redact

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"sync"
)

// Mask is what every secret is replaced with.
const Mask = "***"

// minLineLen is the shortest line of a multi-line secret (a PEM private
// key) that is masked on its own, so that a job printing the key with
// other line endings, or one line of it, does not show it either.
const minLineLen = 8

// Secrets normalizes a list of secret values: it drops empty and
// duplicate values, adds each long enough line of multi-line ones, and
// sorts longest first so that a secret containing another is masked
// whole.
func Secrets(values ...string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s == "" || seen[s] {
			return
		}
		seen[s] = true
		out = append(out, s)
	}
	for _, v := range values {
		// Trimmed: a secret read from a file ends with a newline, which
		// the value used never holds.
		add(strings.TrimSpace(v))
		if strings.ContainsAny(v, "\r\n") {
			for line := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == '\n' || r == '\r' }) {
				if line = strings.TrimSpace(line); len(line) >= minLineLen {
					add(line)
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// Writer masks secrets in what is written through it before passing it on
// to the writer it wraps. A secret split across several writes is masked
// too: bytes that could be the start of a secret are held back until the
// next write says whether they are, or until Close. Create it with
// NewWriter. It is safe for concurrent use; each Write is passed on whole
// or not at all, in order.
type Writer struct {
	// mu guards w's writes and pending.
	mu      sync.Mutex
	w       io.Writer
	secrets [][]byte
	first   [256]bool // first bytes of the secrets
	pending []byte    // held back: a prefix of some secret
	closed  bool
}

// NewWriter returns a Writer that masks secrets (normalized with Secrets)
// in what it passes on to w. With no secrets it copies bytes unchanged.
func NewWriter(w io.Writer, secrets []string) *Writer {
	rw := &Writer{w: w}
	rw.setLocked(secrets)
	return rw
}

// SetSecrets replaces the secrets w masks from the next Write on (a
// secret file was read, or changed).
func (w *Writer) SetSecrets(secrets []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.setLocked(secrets)
}

func (w *Writer) setLocked(secrets []string) {
	w.secrets, w.first = nil, [256]bool{}
	for _, s := range Secrets(secrets...) {
		w.secrets = append(w.secrets, []byte(s))
		w.first[s[0]] = true
	}
}

// Write masks p's secrets and writes the result, except for a trailing
// part that may be the start of a secret, which is kept for the next
// Write or Close. It returns len(p) on success, as an io.Writer must,
// even though the bytes passed on differ.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, io.ErrClosedPipe
	}
	if len(w.secrets) == 0 {
		return w.w.Write(p)
	}
	buf := append(w.pending, p...)
	out, rest := w.mask(buf, false)
	w.pending = append(w.pending[:0:0], rest...)
	if len(out) > 0 {
		if _, err := w.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush passes on what Write held back, masked, as if the stream ended
// there; a secret that starts in it and would end in a later write is then
// no longer recognized. Close calls it.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if len(w.pending) == 0 {
		return nil
	}
	out, _ := w.mask(w.pending, true)
	w.pending = nil
	_, err := w.w.Write(out)
	return err
}

// Close flushes what is held back; later writes fail. It does not close
// the wrapped writer.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.flushLocked()
}

// mask returns buf with its secrets replaced, and, unless final, the tail
// of buf that is a proper prefix of a secret, which it leaves out.
func (w *Writer) mask(buf []byte, final bool) (out, rest []byte) {
	out = make([]byte, 0, len(buf))
	for i := 0; i < len(buf); {
		if !w.first[buf[i]] {
			j := i + 1
			for j < len(buf) && !w.first[buf[j]] {
				j++
			}
			out = append(out, buf[i:j]...)
			i = j
			continue
		}
		tail := buf[i:]
		if !final && w.maybeStart(tail) {
			return out, tail
		}
		matched := false
		for _, s := range w.secrets {
			if bytes.HasPrefix(tail, s) {
				out = append(out, Mask...)
				i += len(s)
				matched = true
				break
			}
		}
		if !matched {
			out = append(out, buf[i])
			i++
		}
	}
	return out, nil
}

// maybeStart reports whether tail, the rest of the bytes written so far,
// is a proper prefix of a secret, which the next write may complete.
func (w *Writer) maybeStart(tail []byte) bool {
	for _, s := range w.secrets {
		if len(tail) < len(s) && bytes.HasPrefix(s, tail) {
			return true
		}
	}
	return false
}

// String masks the secrets of s, for text that is not a stream (a log
// line, an error message).
func String(s string, secrets []string) string {
	var b bytes.Buffer
	w := NewWriter(&b, secrets)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.String()
}

package web

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// BodyDeadline returns h with a deadline on reading each request's body:
// a client that has not sent the whole body within d of the request's
// start (one that declares a large webhook and sends a byte now and then)
// gets a read error, and its connection is closed, instead of holding it
// as long as it likes. http.Server's ReadHeaderTimeout bounds the headers;
// this bounds the rest. Requests without a body have no deadline, and a
// body read to its end lifts it, so that long responses (live logs) are
// not cut.
func BodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			http.Error(w, "cannot set a read deadline", http.StatusInternalServerError)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body was read to its end.
type deadlineBody struct {
	io.ReadCloser
	once sync.Once
	lift func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(b.lift)
	}
	return n, err
}

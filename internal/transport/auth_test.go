package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	api := newScripted(t, step{status: 200})
	other := newScripted(t, step{status: 200})
	rt := NewAuth(newTransport(t), StaticToken("s3cret"), api.URL+"/api/v3")

	send := func(url, authorization string) {
		t.Helper()
		req := mustRequest(t, t.Context(), "GET", url, "")
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("RoundTrip %s: %v", url, err)
		}
		readBody(t, resp)
	}
	send(api.URL+"/api/v3/repos/o/r", "")
	send(other.URL+"/download", "")
	send(api.URL+"/api/v3/user", "Bearer caller's own")

	got := []string{api.requestHeaders()[0].Get("Authorization"), other.requestHeaders()[0].Get("Authorization"),
		api.requestHeaders()[1].Get("Authorization")}
	want := []string{"Bearer s3cret", "", "Bearer caller's own"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: Authorization: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestAuthErrors(t *testing.T) {
	t.Parallel()
	failing := TokenSourceFunc(func(context.Context, *http.Request) (string, error) {
		return "", errors.New("key file missing")
	})
	next := RoundTripperFunc(func(*http.Request) (*http.Response, error) {
		t.Error("request sent despite the error")
		return nil, errors.New("unreachable")
	})
	tests := []struct {
		name      string
		rt        *Auth
		want      string
		wantToken bool
	}{
		{"source fails", NewAuth(next, failing, "https://api.github.com"), "get GitHub token: key file missing", true},
		{"empty static token", NewAuth(next, StaticToken(""), "https://api.github.com"), "static token is empty", true},
		{"bad endpoint", NewAuth(next, StaticToken("x"), "api.github.com"), `endpoint "api.github.com"`, false},
	}
	for _, tt := range tests {
		body := &closeRecorder{Reader: strings.NewReader("{}")}
		req := mustRequest(t, t.Context(), "POST", "https://api.github.com/repos/o/r/statuses/abc", "")
		req.Body = body
		_, err := tt.rt.RoundTrip(req)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got error %v, want one containing %q", tt.name, err, tt.want)
		}
		if te := (*TokenError)(nil); errors.As(err, &te) != tt.wantToken {
			t.Errorf("%s: errors.As(%v, *TokenError): got %v, want %v", tt.name, err, !tt.wantToken, tt.wantToken)
		}
		if !body.closed {
			t.Errorf("%s: request body not closed", tt.name)
		}
	}
}

// closeRecorder records whether it was closed.
type closeRecorder struct {
	*strings.Reader
	closed bool
}

func (c *closeRecorder) Close() error {
	c.closed = true
	return nil
}

func TestStaticTokenNeverPrinted(t *testing.T) {
	t.Parallel()
	src := StaticToken("ghp_verysecret")
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("tokens", "source", src)
	out := fmt.Sprintf("%v %+v %#v %s", src, src, src, src) + buf.String()
	if strings.Contains(out, "verysecret") {
		t.Errorf("formatted StaticToken: got %s, want no token", out)
	}
}

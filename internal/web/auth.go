package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/utils/clock"
)

// AdminTokenFile is the name of the admin token's file in the data
// directory.
const AdminTokenFile = "admin-token"

// LoadAdminToken returns the admin token kept in dataDir/admin-token,
// creating the file (mode 0600) with a new random token when it does not
// exist. A new token is written to log, once: that is how the person who
// started lockstep learns it. Delete the file and restart to replace the
// token; that also signs out every browser.
func LoadAdminToken(dataDir string, log *slog.Logger) (string, error) {
	path := filepath.Join(dataDir, AdminTokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		token := strings.TrimSpace(string(b))
		if len(token) < 16 {
			return "", fmt.Errorf("admin token %s: it holds %d characters, fewer than 16; delete the file to have lockstep make a new one", path, len(token))
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the admin token file can be read by other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
		}
		return token, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	token := "lst_" + rand.Text()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another lockstep sharing the data directory made it first.
		return LoadAdminToken(dataDir, log)
	}
	if err != nil {
		return "", fmt.Errorf("create admin token: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("write admin token %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("write admin token %s: %w", path, err)
	}
	log.Warn("created the admin token; it authorizes re-runs and aborts in the UI and the API, and is not shown again (it is kept in the file)",
		"admin_token", token, "path", path)
	return token, nil
}

// Cookies the UI sets.
const (
	sessionCookie = "lockstep_session"
	csrfCookie    = "lockstep_csrf"
	// sessionTTL is how long a sign-in lasts.
	sessionTTL = 12 * time.Hour
)

// auth checks the admin token, the session cookies derived from it and
// the CSRF tokens of forms. It keeps no state besides its keys, so that
// several lockstep replicas sharing one admin token accept each other's
// cookies.
type auth struct {
	token string
	clock clock.PassiveClock
	// sessionKey signs session cookies, csrfKey CSRF tokens; both derive
	// from the token, or are random when there is none.
	sessionKey, csrfKey []byte
}

func newAuth(token string, clk clock.PassiveClock) *auth {
	secret := []byte(token)
	if token == "" {
		secret = []byte(rand.Text())
	}
	return &auth{
		token:      token,
		clock:      clk,
		sessionKey: mac(secret, "lockstep session key"),
		csrfKey:    mac(secret, "lockstep csrf key"),
	}
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// enabled reports whether an admin token is configured.
func (a *auth) enabled() bool { return a.token != "" }

// validToken reports whether t is the admin token.
func (a *auth) validToken(t string) bool {
	return a.enabled() && subtle.ConstantTimeCompare([]byte(t), []byte(a.token)) == 1
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// session returns a session cookie value that expires at exp.
func (a *auth) session(exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return e + "." + base64.RawURLEncoding.EncodeToString(mac(a.sessionKey, "session "+e))
}

// signedIn reports whether r carries a valid, unexpired session cookie.
func (a *auth) signedIn(r *http.Request) bool {
	if !a.enabled() {
		return false
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	e, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || a.clock.Now().Unix() >= exp {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	return err == nil && hmac.Equal(got, mac(a.sessionKey, "session "+e))
}

// csrfToken returns the token forms rendered for r carry, setting the
// CSRF cookie on w when r has none. The token is a MAC of the cookie, so
// a page from another site can neither read nor forge it.
func (a *auth) csrfToken(w http.ResponseWriter, r *http.Request) string {
	nonce := ""
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 16 {
		nonce = c.Value
	} else {
		nonce = rand.Text()
		http.SetCookie(w, &http.Cookie{
			Name: csrfCookie, Value: nonce, Path: "/",
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
		})
	}
	return base64.RawURLEncoding.EncodeToString(mac(a.csrfKey, "csrf "+nonce))
}

// checkCSRF reports whether the form posted in r carries the CSRF token
// of its cookie and, when the browser says where the form comes from,
// comes from this site (the host asked for, or the one a reverse proxy
// says it forwarded).
func (a *auth) checkCSRF(r *http.Request) bool {
	if origin := r.Header.Get("Origin"); origin != "" && origin != "null" {
		u, err := url.Parse(origin)
		if err != nil || (u.Host != r.Host && u.Host != r.Header.Get("X-Forwarded-Host")) {
			return false
		}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 16 {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("csrf"))
	return err == nil && hmac.Equal(got, mac(a.csrfKey, "csrf "+c.Value))
}

// signIn sets the session cookie on w.
func (a *auth) signIn(w http.ResponseWriter, r *http.Request) {
	exp := a.clock.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: a.session(exp), Path: "/",
		Expires: exp, MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// signOut clears the session cookie.
func (a *auth) signOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// localPath returns next if it is a path on this site, else "/".
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

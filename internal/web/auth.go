package web

import (
	"context"
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
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
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
		log.Info("admin token loaded", "path", path, "admin_token_prefix", TokenPrefix(token))
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

// TokenPrefix returns the first characters of a token, enough to tell
// tokens apart in a log, never enough to use one.
func TokenPrefix(token string) string {
	const n = 8
	if len(token) <= n+8 {
		return "…"
	}
	return token[:n] + "…"
}

// Cookies the UI sets.
const (
	sessionCookie = "lockstep_session"
	csrfCookie    = "lockstep_csrf"
	// sessionTTL is how long a sign-in lasts.
	sessionTTL = 12 * time.Hour
)

// auth checks the admin token, the session cookies derived from it and
// the CSRF tokens of forms. Sessions are recorded in sessions, an
// effects store shared by every replica (the key sessionEffect(id) is
// pending while the session is valid, done once it was signed out), so
// that several lockstep replicas sharing one admin token accept each
// other's cookies and refuse each other's signed-out ones.
type auth struct {
	token string
	clock clock.PassiveClock
	// sessionKey signs session cookies, csrfKey CSRF tokens; both derive
	// from the token, or are random when there is none.
	sessionKey, csrfKey []byte
	sessions            store.Effects
	log                 *slog.Logger
	// failures counts refused credentials by kind: sign_in, api_token,
	// session.
	failures *prometheus.CounterVec
}

func newAuth(token string, clk clock.PassiveClock, sessions store.Effects, log *slog.Logger, reg prometheus.Registerer) *auth {
	secret := []byte(token)
	if token == "" {
		secret = []byte(rand.Text())
	}
	if sessions == nil {
		sessions = &memoryEffects{}
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lockstep_auth_failures_total",
		Help: "Credentials lockstep refused, by kind: sign_in (a wrong admin token in the sign-in form), api_token (a wrong bearer token), session (a signed-out, expired or forged session cookie).",
	}, []string{"kind"})
	for _, k := range []string{failSignIn, failAPIToken, failSession} {
		failures.WithLabelValues(k)
	}
	if reg != nil {
		if err := reg.Register(failures); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				failures = are.ExistingCollector.(*prometheus.CounterVec)
			} else {
				log.Error("cannot register the authentication metrics", "err", err)
			}
		}
	}
	return &auth{
		token:      token,
		clock:      clk,
		sessionKey: mac(secret, "lockstep session key"),
		csrfKey:    mac(secret, "lockstep csrf key"),
		sessions:   sessions,
		log:        log,
		failures:   failures,
	}
}

// The kinds of refused credentials.
const (
	failSignIn   = "sign_in"
	failAPIToken = "api_token"
	failSession  = "session"
)

// refused logs and counts a refused credential, with where it came from.
func (a *auth) refused(r *http.Request, kind, msg string) {
	a.failures.WithLabelValues(kind).Inc()
	args := []any{"kind", kind, "remote", r.RemoteAddr, "path", r.URL.Path}
	if fwd := r.Header.Get("X-Forwarded-For"); fwd != "" {
		args = append(args, "forwarded_for", fwd)
	}
	a.log.Warn(msg, args...)
}

// sessionEffect is the effects key of session id.
func sessionEffect(id string) string { return "web-session/" + id }

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

// session returns the value of the cookie of session id, which expires
// at exp: "EXP.ID.MAC".
func (a *auth) session(id string, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10) + "." + id
	return e + "." + base64.RawURLEncoding.EncodeToString(mac(a.sessionKey, "session "+e))
}

// cookieSession returns the ID of the session r's cookie names, when the
// cookie is lockstep's and has not expired; it does not ask whether the
// session was signed out. present reports whether r had a cookie at all.
func (a *auth) cookieSession(r *http.Request) (id string, present, ok bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", false, false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 || parts[1] == "" {
		return "", true, false
	}
	e, id, sig := parts[0], parts[1], parts[2]
	signed := e + "." + id
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(a.sessionKey, "session "+signed)) {
		return "", true, false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || a.clock.Now().Unix() >= exp {
		return "", true, false
	}
	return id, true, true
}

// signedIn reports whether r carries the cookie of a session that is
// valid: signed by this lockstep, not expired, and not signed out. A
// cookie that fails is logged and counted; when the sessions cannot be
// read, r is not signed in.
func (a *auth) signedIn(r *http.Request) bool {
	if !a.enabled() {
		return false
	}
	// A request is checked once, however many parts of its answer ask.
	m, _ := r.Context().Value(authMemoKey{}).(*authMemo)
	if m == nil {
		return a.checkSession(r)
	}
	m.once.Do(func() { m.signedIn = a.checkSession(r) })
	return m.signedIn
}

// authMemo remembers, for one request, whether it is signed in.
type authMemo struct {
	once     sync.Once
	signedIn bool
}

type authMemoKey struct{}

// withAuthMemo returns r with a place to remember its sign-in check.
func withAuthMemo(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), authMemoKey{}, &authMemo{}))
}

// checkSession does signedIn's work.
func (a *auth) checkSession(r *http.Request) bool {
	id, present, ok := a.cookieSession(r)
	if !present {
		return false
	}
	if !ok {
		a.refused(r, failSession, "session cookie refused: expired or not signed by this lockstep")
		return false
	}
	state, err := a.sessions.ClaimEffect(r.Context(), sessionEffect(id))
	switch {
	case err != nil:
		a.log.Error("cannot check a session; treating the request as signed out", "err", err)
		return false
	case state == store.EffectPending:
		return true
	case state == store.EffectNew:
		// Signed, but never recorded (the record was lost): end it for
		// good rather than let this check make it valid.
		if err := a.sessions.CompleteEffect(r.Context(), sessionEffect(id)); err != nil {
			a.log.Error("cannot end an unknown session", "err", err)
		}
	}
	a.refused(r, failSession, "session cookie refused: the session was signed out")
	return false
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

// signIn records a new session and sets its cookie on w.
func (a *auth) signIn(w http.ResponseWriter, r *http.Request) error {
	id := rand.Text()
	if _, err := a.sessions.ClaimEffect(r.Context(), sessionEffect(id)); err != nil {
		return fmt.Errorf("record the session: %w", err)
	}
	exp := a.clock.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: a.session(id, exp), Path: "/",
		Expires: exp, MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	return nil
}

// signOut ends r's session on the server, so that its cookie is refused
// from now on by every replica, and clears the cookie.
func (a *auth) signOut(w http.ResponseWriter, r *http.Request) error {
	if id, _, ok := a.cookieSession(r); ok {
		if err := a.sessions.CompleteEffect(r.Context(), sessionEffect(id)); err != nil {
			return fmt.Errorf("end the session: %w", err)
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	return nil
}

// memoryEffects is a store.Effects in memory, for a Server given none:
// sessions then end when the process does.
type memoryEffects struct {
	mu    sync.Mutex // guards state
	state map[string]store.EffectState
}

func (m *memoryEffects) ClaimEffect(ctx context.Context, key string) (store.EffectState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st, ok := m.state[key]; ok {
		return st, nil
	}
	if m.state == nil {
		m.state = map[string]store.EffectState{}
	}
	m.state[key] = store.EffectPending
	return store.EffectNew, nil
}

func (m *memoryEffects) CompleteEffect(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		m.state = map[string]store.EffectState{}
	}
	m.state[key] = store.EffectDone
	return nil
}

func (m *memoryEffects) ReleaseEffect(ctx context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.state, key)
	return nil
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

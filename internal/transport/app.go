package transport

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
)

// AppConfig configures an AppTokenSource.
type AppConfig struct {
	// AppID is the GitHub App's ID; required.
	AppID int64
	// PrivateKey signs the App's JWTs; required. Parse the PEM file
	// GitHub issues with jwt.ParseRSAPrivateKeyFromPEM.
	PrivateKey *rsa.PrivateKey
	// Endpoint is the API base URL; default DefaultEndpoint.
	Endpoint string
	// InstallationID, when set, is used for every request, and no
	// installation is looked up.
	InstallationID int64
	// Transport sends the App's own requests (installation lookups and
	// token exchanges), which carry the App's JWT. Use a chain built by
	// New without Tokens and with DisableCache (each JWT differs, so
	// caching its requests is useless). Default http.DefaultTransport.
	Transport http.RoundTripper
	// Clock dates JWTs and expires tokens; default the real clock.
	Clock clock.PassiveClock
	// RefreshBefore is how long before its expiry a token is replaced;
	// default 5 minutes.
	RefreshBefore time.Duration
}

// AppTokenSource is a TokenSource for a GitHub App. For a request that
// names an owner (/repos/{owner}/…, /orgs/{org}/…, /users/{username}/…)
// it finds the App's installation for that owner, once per owner, and
// returns an installation token, exchanged for a JWT and cached until
// RefreshBefore ahead of its expiry. For a request to /app or /app/… it
// returns a fresh JWT. It is safe for concurrent use: concurrent callers
// needing the same lookup or refresh share one request, and a caller whose
// context ends stops waiting without cancelling it for the others.
type AppTokenSource struct {
	appID          string
	key            *rsa.PrivateKey
	endpoint       string // without a trailing slash
	endpointPath   string // endpoint's path, without a trailing slash
	installationID int64
	client         *http.Client
	clock          clock.PassiveClock
	refreshBefore  time.Duration
	flight         singleflight.Group

	mu     sync.Mutex
	owners map[string]int64            // mu guards owners: lower-case owner → installation ID
	tokens map[int64]installationToken // mu guards tokens: installation ID → token
}

var _ TokenSource = (*AppTokenSource)(nil)

// installationToken is a cached installation token.
type installationToken struct {
	token   string
	expires time.Time
}

// appRequestTimeout bounds one lookup or exchange shared by several
// callers, which no single caller's context may cancel.
const appRequestTimeout = time.Minute

// NewAppTokenSource returns an AppTokenSource for cfg.
func NewAppTokenSource(cfg AppConfig) (*AppTokenSource, error) {
	if cfg.AppID <= 0 {
		return nil, fmt.Errorf("GitHub App: app ID %d: want the positive ID from the App's settings page", cfg.AppID)
	}
	if cfg.PrivateKey == nil {
		return nil, errors.New("GitHub App: no private key: generate one on the App's settings page")
	}
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("GitHub App: endpoint %q: want an absolute http(s) URL such as %s", endpoint, DefaultEndpoint)
	}
	s := &AppTokenSource{
		appID:          strconv.FormatInt(cfg.AppID, 10),
		key:            cfg.PrivateKey,
		endpoint:       strings.TrimSuffix(endpoint, "/"),
		endpointPath:   strings.TrimSuffix(u.EscapedPath(), "/"),
		installationID: cfg.InstallationID,
		client:         &http.Client{Transport: cfg.Transport},
		clock:          cfg.Clock,
		refreshBefore:  cfg.RefreshBefore,
		owners:         make(map[string]int64),
		tokens:         make(map[int64]installationToken),
	}
	if s.client.Transport == nil {
		s.client.Transport = http.DefaultTransport
	}
	if s.clock == nil {
		s.clock = clock.RealClock{}
	}
	if s.refreshBefore <= 0 {
		s.refreshBefore = 5 * time.Minute
	}
	return s, nil
}

// Token returns the token to send req with.
func (s *AppTokenSource) Token(ctx context.Context, req *http.Request) (string, error) {
	p := strings.TrimPrefix(req.URL.EscapedPath(), s.endpointPath)
	if p == "/app" || strings.HasPrefix(p, "/app/") {
		return s.jwt()
	}
	id := s.installationID
	if id == 0 {
		var err error
		if id, err = s.installation(ctx, p); err != nil {
			return "", err
		}
	}
	return s.installationToken(ctx, id)
}

// jwt returns a JWT for the App, valid from a minute ago (for clock
// drift) for ten minutes, GitHub's maximum.
func (s *AppTokenSource) jwt() (string, error) {
	now := s.clock.Now()
	claims := jwt.RegisteredClaims{
		Issuer:    s.appID,
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign JWT for GitHub App %s: %w", s.appID, err)
	}
	return signed, nil
}

// installation returns the installation ID for the owner named by path,
// looking it up once per owner.
func (s *AppTokenSource) installation(ctx context.Context, path string) (int64, error) {
	owner, lookup, ok := installationLookup(path)
	if !ok {
		return 0, fmt.Errorf("GitHub App %s: path %s names no repository, organization or user to find the installation by; set the installation ID", s.appID, Route(path))
	}
	s.mu.Lock()
	id, ok := s.owners[owner]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	v, err := s.share(ctx, "owner/"+owner, func(ctx context.Context) (any, error) {
		s.mu.Lock()
		id, ok := s.owners[owner]
		s.mu.Unlock()
		if ok {
			return id, nil
		}
		var body struct {
			ID int64 `json:"id"`
		}
		if err := s.call(ctx, http.MethodGet, lookup, http.StatusOK, &body); err != nil {
			if se := (*statusError)(nil); errors.As(err, &se) && se.code == http.StatusNotFound {
				return nil, fmt.Errorf("find installation of GitHub App %s for %s: %w; install the App on %s's account or organization", s.appID, owner, err, owner)
			}
			return nil, fmt.Errorf("find installation of GitHub App %s for %s: %w", s.appID, owner, err)
		}
		if body.ID == 0 {
			return nil, fmt.Errorf("find installation of GitHub App %s for %s: response has no id", s.appID, owner)
		}
		s.mu.Lock()
		s.owners[owner] = body.ID
		s.mu.Unlock()
		return body.ID, nil
	})
	if err != nil {
		return 0, err
	}
	return v.(int64), nil
}

// installationLookup returns the owner a request path names, lower-cased,
// and the path that finds the App's installation for it.
func installationLookup(path string) (owner, lookup string, ok bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(segs) >= 3 && segs[0] == "repos" && segs[1] != "" && segs[2] != "":
		return strings.ToLower(segs[1]), "/repos/" + segs[1] + "/" + segs[2] + "/installation", true
	case len(segs) >= 2 && segs[0] == "orgs" && segs[1] != "":
		return strings.ToLower(segs[1]), "/orgs/" + segs[1] + "/installation", true
	case len(segs) >= 2 && segs[0] == "users" && segs[1] != "":
		return strings.ToLower(segs[1]), "/users/" + segs[1] + "/installation", true
	}
	return "", "", false
}

// installationToken returns a valid token for installation id, exchanging
// a JWT for a new one when the cached one is missing or near expiry.
func (s *AppTokenSource) installationToken(ctx context.Context, id int64) (string, error) {
	if tok, ok := s.cachedToken(id); ok {
		return tok, nil
	}
	v, err := s.share(ctx, "token/"+strconv.FormatInt(id, 10), func(ctx context.Context) (any, error) {
		// Another flight may have refreshed it since the check above.
		if tok, ok := s.cachedToken(id); ok {
			return tok, nil
		}
		return s.exchange(ctx, id)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// cachedToken returns installation id's token if it is not due for
// refresh.
func (s *AppTokenSource) cachedToken(id int64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || !s.clock.Now().Before(t.expires.Add(-s.refreshBefore)) {
		return "", false
	}
	return t.token, true
}

// exchange creates a token for installation id and caches it.
func (s *AppTokenSource) exchange(ctx context.Context, id int64) (string, error) {
	var body struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	path := "/app/installations/" + strconv.FormatInt(id, 10) + "/access_tokens"
	if err := s.call(WithRetryable(ctx), http.MethodPost, path, http.StatusCreated, &body); err != nil {
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusNotFound {
			s.forgetInstallation(id)
		}
		return "", fmt.Errorf("create token for installation %d of GitHub App %s: %w", id, s.appID, err)
	}
	if body.Token == "" {
		return "", fmt.Errorf("create token for installation %d of GitHub App %s: response has no token", id, s.appID)
	}
	if body.ExpiresAt.IsZero() {
		body.ExpiresAt = s.clock.Now().Add(time.Hour)
	}
	s.mu.Lock()
	s.tokens[id] = installationToken{token: body.Token, expires: body.ExpiresAt}
	s.mu.Unlock()
	return body.Token, nil
}

// forgetInstallation drops the owners mapped to installation id, which no
// longer exists, so that they are looked up again.
func (s *AppTokenSource) forgetInstallation(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for owner, oid := range s.owners {
		if oid == id {
			delete(s.owners, owner)
		}
	}
	delete(s.tokens, id)
}

// share runs fn once for all concurrent callers with the same key. fn's
// context keeps the first caller's values but not its cancellation, and
// is bounded by appRequestTimeout; each caller stops waiting when its own
// context ends.
func (s *AppTokenSource) share(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	ch := s.flight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), appRequestTimeout)
		defer cancel()
		return fn(fctx)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		return r.Val, r.Err
	}
}

// statusError is an unexpected HTTP status from GitHub.
type statusError struct {
	code    int
	message string
}

// Error gives the status and GitHub's message.
func (e *statusError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("HTTP %d", e.code)
	}
	return fmt.Sprintf("HTTP %d: %s", e.code, e.message)
}

// call sends an App-authenticated request for path and decodes a response
// with status want into out.
func (s *AppTokenSource) call(ctx context.Context, method, path string, want int, out any) error {
	token, err := s.jwt()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, s.endpoint+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want && resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&e)
		return &statusError{code: resp.StatusCode, message: e.Message}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

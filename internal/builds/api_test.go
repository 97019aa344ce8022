package builds

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// get serves a GET of path through mux and decodes the JSON answer into
// out, returning the status code.
func get(t *testing.T, mux http.Handler, path string, out any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		t.Fatalf("GET %s: decode %q: %v", path, rec.Body.String(), err)
	}
	return rec.Code
}

func TestAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig+`  - name: soaked
    repo: acme/kops
    branch: main
    gate: soak
`)
	ctx := context.Background()
	c := e.newController(nil)
	b1 := e.build("v1")
	if _, err := c.Reconcile(ctx, Key{Run: e.gateRun(b1, run.Success).ID}); err != nil {
		t.Fatal(err)
	}
	e.clk.Step(time.Hour)
	b2 := e.build("v2")
	if _, err := c.Reconcile(ctx, Key{Marker: "latest-green"}); err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	h := APIHandler(APIOptions{Store: e.store, Config: e.config, Clock: e.clk})
	for _, p := range APIPatterns() {
		mux.Handle(p, h)
	}

	var markers struct{ Markers []APIMarker }
	if code := get(t, mux, "/api/v1/markers", &markers); code != http.StatusOK || len(markers.Markers) != 2 {
		t.Fatalf("GET markers: %d, %+v", code, markers)
	}
	lg, soaked := markers.Markers[0], markers.Markers[1]
	if lg.Name != "latest-green" || lg.BuildID != b1.ID || lg.Version != "v1" || lg.Stale || lg.Reason != ReasonFresh ||
		lg.NewerBuilds != 1 || lg.NewestVersion != "v2" || lg.AgeSeconds != 3600 || lg.MaxAge != "48h0m0s" || lg.MaxGateFailures != 3 {
		t.Errorf("latest-green = %+v", lg)
	}
	if soaked.Name != "soaked" || soaked.BuildID != 0 || soaked.Reason != ReasonNoBuild || soaked.Message != "marker soaked names no build yet" {
		t.Errorf("soaked, never stored = %+v", soaked)
	}

	var one APIMarker
	if code := get(t, mux, "/api/v1/markers/latest-green", &one); code != http.StatusOK || len(one.History) != 1 || one.History[0].ToBuild != b1.ID {
		t.Errorf("GET marker: %d, %+v", code, one)
	}
	var apiErr struct{ Error string }
	if code := get(t, mux, "/api/v1/markers/nope", &apiErr); code != http.StatusNotFound || apiErr.Error != `no marker "nope" is configured` {
		t.Errorf("GET missing marker: %d %q", code, apiErr.Error)
	}

	var page struct {
		Builds   []*store.Build
		Continue string
	}
	if code := get(t, mux, "/api/v1/builds?repo=acme/kops&branch=main&limit=1", &page); code != http.StatusOK ||
		len(page.Builds) != 1 || page.Builds[0].ID != b2.ID || page.Continue != fmt.Sprint(b2.ID) {
		t.Fatalf("GET builds page 1: %d, %+v", code, page)
	}
	if code := get(t, mux, "/api/v1/builds?limit=1&continue="+page.Continue, &page); code != http.StatusOK ||
		len(page.Builds) != 1 || page.Builds[0].ID != b1.ID {
		t.Errorf("GET builds page 2: %d, %+v", code, page)
	}
	page.Builds, page.Continue = nil, ""
	if code := get(t, mux, "/api/v1/builds?branch=dev", &page); code != http.StatusOK || len(page.Builds) != 0 || page.Continue != "" {
		t.Errorf("GET builds of another branch: %d, %+v", code, page)
	}
	var b store.Build
	if code := get(t, mux, fmt.Sprintf("/api/v1/builds/%d", b2.ID), &b); code != http.StatusOK || b.Version != "v2" {
		t.Errorf("GET build: %d, %+v", code, b)
	}
	for path, want := range map[string]int{
		"/api/v1/builds?limit=x":     http.StatusBadRequest,
		"/api/v1/builds?continue=-1": http.StatusBadRequest,
		"/api/v1/builds/abc":         http.StatusBadRequest,
		"/api/v1/builds/999":         http.StatusNotFound,
	} {
		if code := get(t, mux, path, &apiErr); code != want || apiErr.Error == "" {
			t.Errorf("GET %s: %d %q, want %d and an error", path, code, apiErr.Error, want)
		}
	}
}

// TestMarkerFileServedFromTheStore: GET /markers/NAME.txt serves what the
// leader publishes to DATA_DIR/markers/NAME.txt, read from the store, so
// that a replica with no such file (a handler over the store only) serves
// the same bytes.
func TestMarkerFileServedFromTheStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig+`  - name: soaked
    repo: acme/kops
    branch: main
    gate: soak
`)
	ctx := context.Background()
	c := e.newController(nil)
	b1 := e.build("v1")
	if _, err := c.Reconcile(ctx, Key{Run: e.gateRun(b1, run.Success).ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, Key{Marker: "latest-green"}); err != nil {
		t.Fatal(err)
	}
	published, err := os.ReadFile(filepath.Join(e.dir, "markers", "latest-green.txt"))
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	h := APIHandler(APIOptions{Store: e.store, Config: e.config, Clock: e.clk})
	for _, p := range APIPatterns() {
		mux.Handle(p, h)
	}
	for _, tc := range []struct {
		path       string
		code       int
		body, kind string
	}{
		{"/markers/latest-green.txt", http.StatusOK, string(published), "text/plain; charset=utf-8"},
		{"/markers/soaked.txt", http.StatusNotFound, "marker \"soaked\" names no build yet\n", ""},
		{"/markers/nope.txt", http.StatusNotFound, "no marker \"nope\" is configured\n", ""},
		{"/markers/latest-green", http.StatusNotFound, "404 page not found\n", ""},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.code || rec.Body.String() != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, rec.Code, rec.Body, tc.code, tc.body)
		}
		if got := rec.Header().Get("Content-Type"); tc.kind != "" && got != tc.kind {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.kind)
		}
	}
	if string(published) != "v1\n" {
		t.Errorf("published file holds %q, want %q", published, "v1\n")
	}
}

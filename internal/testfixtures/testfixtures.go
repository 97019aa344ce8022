// Package testfixtures locates the public test fixtures lockstep's tests
// read: the GitHub webhook payloads copied into the repository's
// testdata/github-webhooks (see testdata/README.md for where they come
// from and their licence). Only tests import it.
//
// The fixtures are required: a test that cannot find them fails, saying
// where it looked, rather than passing without them.
package testfixtures

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// Payload is one example webhook payload.
type Payload struct {
	// Event is the X-GitHub-Event the payload belongs to: the name of its
	// directory.
	Event string
	// Name is the file name, such as "opened.payload.json".
	Name string
	// Body is the file's exact content.
	Body []byte
}

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the working directory (a package's directory under go test).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("find module root: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("find module root: %v", err)
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("find module root: no go.mod in %s or any parent", wd)
		}
	}
}

// GitHubWebhooksDir returns the directory of GitHub webhook payloads,
// testdata/github-webhooks under the module root.
func GitHubWebhooksDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(ModuleRoot(t), "testdata", "github-webhooks")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("GitHub webhook fixtures not found at %s (they are part of the repository; is the checkout complete?): %v", dir, err)
	}
	return dir
}

// GitHubPayloads returns every payload of event (a directory name such as
// "pull_request"), sorted by file name. It fails the test if there is none.
func GitHubPayloads(t testing.TB, event string) []Payload {
	t.Helper()
	dir := filepath.Join(GitHubWebhooksDir(t), event)
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatalf("list %s payloads: %v", event, err)
	}
	if len(names) == 0 {
		t.Fatalf("no %s payloads in %s", event, dir)
	}
	sort.Strings(names)
	payloads := make([]Payload, 0, len(names))
	for _, name := range names {
		body, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("read %s payload: %v", event, err)
		}
		payloads = append(payloads, Payload{Event: event, Name: filepath.Base(name), Body: body})
	}
	return payloads
}

// GitHubPayload returns the payload of event in file name, failing the test
// if it does not exist.
func GitHubPayload(t testing.TB, event, name string) Payload {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(GitHubWebhooksDir(t), event, name))
	if err != nil {
		t.Fatalf("read %s payload: %v", event, err)
	}
	return Payload{Event: event, Name: name, Body: body}
}

// CheckFuzzSeeds checks that dir (testdata/fuzz/TARGET) holds exactly the
// seed files in seeds (name → content, names starting "fixture-"), or,
// when update is set, rewrites them so it does. command names the test to
// rerun with -update.
func CheckFuzzSeeds(t testing.TB, dir string, seeds map[string]string, update bool, command string) {
	t.Helper()
	if update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(dir, "fixture-*"))
		for _, name := range old {
			if err := os.Remove(name); err != nil {
				t.Fatal(err)
			}
		}
		for name, content := range seeds {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	onDisk, err := filepath.Glob(filepath.Join(dir, "fixture-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(onDisk) != len(seeds) {
		t.Errorf("got %d fixture seeds in %s, want %d (run go test -run %s -update)", len(onDisk), dir, len(seeds), command)
	}
	for name, want := range seeds {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("read seed: %v (run go test -run %s -update)", err, command)
			continue
		}
		if string(got) != want {
			t.Errorf("seed %s/%s is out of date with the fixtures (run go test -run %s -update)", dir, name, command)
		}
	}
}

package testfixtures

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root := ModuleRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("ModuleRoot() = %s, which has no go.mod: %v", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testfixtures")); err != nil {
		t.Errorf("ModuleRoot() = %s, want the module holding internal/testfixtures: %v", root, err)
	}
}

func TestGitHubPayloads(t *testing.T) {
	payloads := GitHubPayloads(t, "pull_request")
	if len(payloads) < 2 {
		t.Fatalf("got %d pull_request payloads, want several", len(payloads))
	}
	names := make([]string, len(payloads))
	for i, p := range payloads {
		names[i] = p.Name
		if p.Event != "pull_request" || len(p.Body) == 0 {
			t.Errorf("payload %d: got event %q and %d bytes, want pull_request and a body", i, p.Event, len(p.Body))
		}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("got names %v, want them sorted", names)
	}
	one := GitHubPayload(t, "pull_request", payloads[0].Name)
	if string(one.Body) != string(payloads[0].Body) {
		t.Errorf("GitHubPayload(%s) differs from GitHubPayloads' copy", payloads[0].Name)
	}
}

package offline_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/forge"
	"github.com/lockstep-ci/lockstep/internal/forge/offline"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
)

// TestGetPull: the offline forge knows the pull requests the store
// recorded from webhooks, and says what to do about the others.
func TestGetPull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "lockstep.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	updated := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := st.PutPullState(ctx, &store.PullState{
		Repo: "acme/widget", Number: 2, State: "open", Author: "alice",
		HeadSHA: "h", HeadRef: "fix", BaseRef: "main", BaseSHA: "b", Labels: []string{"ok-to-test"}, UpdatedAt: updated,
	}); err != nil {
		t.Fatal(err)
	}

	f := &offline.Forge{Pulls: st}
	got, err := f.GetPull(ctx, "acme/widget", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := &forge.Pull{Repo: "acme/widget", Number: 2, State: "open", Author: "alice",
		HeadSHA: "h", HeadRef: "fix", BaseRef: "main", BaseSHA: "b", Labels: []string{"ok-to-test"}, UpdatedAt: updated}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetPull mismatch (-want +got):\n%s", diff)
	}

	for name, f := range map[string]*offline.Forge{"unknown pull": {Pulls: st}, "no store": {}} {
		_, err := f.GetPull(ctx, "acme/widget", 3)
		if !errors.Is(err, forge.ErrNotFound) || !strings.Contains(err.Error(), "acme/widget#3") {
			t.Errorf("%s: err = %v, want ErrNotFound naming acme/widget#3", name, err)
		}
	}
	if _, err := (&offline.Forge{Pulls: st}).GetPull(ctx, "acme/widget", 3); !strings.Contains(err.Error(), "send one first") {
		t.Errorf("unknown pull: err = %v, want it to say to send its pull_request webhook", err)
	}
}

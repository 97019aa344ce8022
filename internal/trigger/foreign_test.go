package trigger_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/store/sqlite"
	"github.com/lockstep-ci/lockstep/internal/trigger"
)

// TestProcessorLeavesOtherIntakesDeliveries: a delivery of an event that
// is not GitHub's (a GitLab pipeline webhook, processed by the GitLab
// executor) stays pending for its owner, while GitHub's are processed.
func TestProcessorLeavesOtherIntakesDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "d.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for _, d := range []*store.Delivery{
		{ID: "gitlab-1", Event: "gitlab/pipeline", ReceivedAt: time.Now(), Body: []byte(`{"object_kind":"pipeline"}`)},
		{ID: "gh-1", Event: "pull_request", ReceivedAt: time.Now(), Body: payload(t, prEvent("opened", e.pull(1, trusted, "h1"), trusted))},
	} {
		if _, err := st.AcceptDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	trig := trigger.New(trigger.Options{Store: st, Forge: e.forge(), Config: func() *config.Config { return e.cfg }, Logger: quiet})
	proc := trigger.NewProcessor(trigger.ProcessorOptions{Store: st, Trigger: trig, Logger: quiet})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- proc.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		gh, err := st.GetDelivery(ctx, "gh-1")
		if err != nil {
			t.Fatal(err)
		}
		if gh.State != store.DeliveryPending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the GitHub delivery was not processed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	gl, err := st.GetDelivery(ctx, "gitlab-1")
	if err != nil {
		t.Fatal(err)
	}
	if gl.State != store.DeliveryPending {
		t.Errorf("the GitLab delivery is %s (%+v), want it left pending for its owner", gl.State, gl.Outcome)
	}
}

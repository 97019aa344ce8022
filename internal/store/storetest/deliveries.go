package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// IntakeStore is what the webhook intake and the trigger keep in a store.
type IntakeStore interface {
	Revision(ctx context.Context) (int64, error)
	store.Deliveries
	store.Pulls
	store.Effects
	store.Refusals
}

// RunIntake runs the conformance tests of deliveries, pull request states
// and effects against stores made by newStore, which must return a new,
// empty store and close it with t.Cleanup.
func RunIntake(t *testing.T, newStore func(t *testing.T) IntakeStore) {
	ctx := context.Background()
	t.Run("DeliveryAcceptedOnceUnderConcurrency", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				dup, err := s.AcceptDelivery(ctx, &store.Delivery{ID: "d-1", Event: "push", Body: []byte(`{"a":1}`)})
				if err != nil {
					t.Error(err)
				}
				if !dup {
					fresh.Add(1)
				}
			})
		}
		wg.Wait()
		if got := fresh.Load(); got != 1 {
			t.Fatalf("%d accepts reported a new delivery, want 1", got)
		}
		d, err := s.GetDelivery(ctx, "d-1")
		if err != nil {
			t.Fatal(err)
		}
		if d.State != store.DeliveryPending || string(d.Body) != `{"a":1}` || d.Event != "push" {
			t.Errorf("got %+v body %q, want a pending push with its body", d, d.Body)
		}
		if _, err := s.GetDelivery(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetDelivery of an unknown id: %v, want ErrNotFound", err)
		}
	})
	t.Run("DeliveryFinishOnce", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.AcceptDelivery(ctx, &store.Delivery{ID: "d", Event: "pull_request"}); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishDelivery(ctx, "d", store.DeliveryDone, store.Outcome{Repo: "acme/widget", Ignored: "why"}); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishDelivery(ctx, "d", store.DeliveryFailed, store.Outcome{}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("second finish: %v, want ErrConflict", err)
		}
		if err := s.FinishDelivery(ctx, "missing", store.DeliveryDone, store.Outcome{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("finish of an unknown delivery: %v, want ErrNotFound", err)
		}
		d, err := s.GetDelivery(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		if d.State != store.DeliveryDone || d.Outcome.Ignored != "why" || d.Outcome.Repo != "acme/widget" {
			t.Errorf("got %+v, want done with its outcome", d)
		}
	})
	t.Run("DeliveryListNewestFirstAndPages", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range 25 {
			ev := "push"
			if i%2 == 0 {
				ev = "pull_request"
			}
			if _, err := s.AcceptDelivery(ctx, &store.Delivery{ID: fmt.Sprintf("d%02d", i), Event: ev, ReceivedAt: base.Add(time.Duration(i) * time.Second)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.FinishDelivery(ctx, "d03", store.DeliveryDone, store.Outcome{}); err != nil {
			t.Fatal(err)
		}
		var ids []string
		opts := store.DeliveryListOptions{Limit: 10}
		for {
			page, err := s.ListDeliveries(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page.Deliveries {
				if d.Body != nil {
					t.Errorf("listing carries the body of %s", d.ID)
				}
				ids = append(ids, d.ID)
			}
			if page.Continue == "" {
				break
			}
			opts.Continue = page.Continue
		}
		if len(ids) != 25 || ids[0] != "d24" || ids[24] != "d00" {
			t.Errorf("listed %v, want d24 … d00", ids)
		}
		page, err := s.ListDeliveries(ctx, store.DeliveryListOptions{State: store.DeliveryPending, Event: "push"})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Deliveries) != 11 {
			t.Errorf("%d pending pushes, want 11", len(page.Deliveries))
		}
	})
	t.Run("DeliveryWatch", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		rev, err := s.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcceptDelivery(ctx, &store.Delivery{ID: "a", Event: "push"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AcceptDelivery(ctx, &store.Delivery{ID: "b", Event: "push"}); err != nil {
			t.Fatal(err)
		}
		if err := s.FinishDelivery(ctx, "a", store.DeliveryDone, store.Outcome{}); err != nil {
			t.Fatal(err)
		}
		var seen []string
		stop := errors.New("stop")
		err = s.WatchDeliveries(ctx, rev, func(d *store.Delivery) error {
			seen = append(seen, d.ID+"/"+string(d.State))
			if len(seen) == 2 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) {
			t.Fatalf("WatchDeliveries = %v, want the callback's error", err)
		}
		if fmt.Sprint(seen) != "[b/pending a/done]" {
			t.Errorf("watched %v, want [b/pending a/done] (revision order, latest state)", seen)
		}
	})
	t.Run("PullStateCAS", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.GetPullState(ctx, "acme/widget", 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get of a missing pull: %v, want ErrNotFound", err)
		}
		p, err := s.PutPullState(ctx, &store.PullState{Repo: "acme/widget", Number: 1, HeadSHA: "a", State: "open"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutPullState(ctx, &store.PullState{Repo: "acme/widget", Number: 1, HeadSHA: "x"}); !errors.Is(err, store.ErrAlreadyExists) {
			t.Errorf("second create: %v, want ErrAlreadyExists", err)
		}
		next := *p
		next.HeadSHA = "b"
		if _, err := s.PutPullState(ctx, &next); err != nil {
			t.Fatal(err)
		}
		stale := *p
		stale.HeadSHA = "c"
		if _, err := s.PutPullState(ctx, &stale); !errors.Is(err, store.ErrConflict) {
			t.Errorf("stale write: %v, want ErrConflict", err)
		}
		got, err := s.GetPullState(ctx, "acme/widget", 1)
		if err != nil || got.HeadSHA != "b" {
			t.Errorf("got %+v, %v; want head b", got, err)
		}
	})
	t.Run("PullStatesListed", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, p := range []store.PullState{
			{Repo: "acme/widget", Number: 1, Title: "First", State: "closed"},
			{Repo: "acme/widget", Number: 2, Title: "Second", State: "open"},
			{Repo: "acme/gadget", Number: 3, Title: "Third", State: "open"},
		} {
			if _, err := s.PutPullState(ctx, &p); err != nil {
				t.Fatal(err)
			}
		}
		list := func(opts store.PullListOptions) string {
			t.Helper()
			ps, err := s.ListPullStates(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, p := range ps {
				out = append(out, fmt.Sprintf("%s#%d %s", p.Repo, p.Number, p.Title))
			}
			return fmt.Sprint(out)
		}
		for _, c := range []struct {
			opts store.PullListOptions
			want string
		}{
			{store.PullListOptions{}, "[acme/gadget#3 Third acme/widget#2 Second acme/widget#1 First]"},
			{store.PullListOptions{Repo: "acme/widget"}, "[acme/widget#2 Second acme/widget#1 First]"},
			{store.PullListOptions{State: "open"}, "[acme/gadget#3 Third acme/widget#2 Second]"},
			{store.PullListOptions{Repo: "acme/widget", State: "closed"}, "[acme/widget#1 First]"},
			{store.PullListOptions{Limit: 1}, "[acme/gadget#3 Third]"},
		} {
			if got := list(c.opts); got != c.want {
				t.Errorf("ListPullStates(%+v) = %s, want %s", c.opts, got, c.want)
			}
		}
	})
	t.Run("RefusalsBounded", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var batch []store.Refusal
		for i := range store.MaxRefusals + 10 {
			batch = append(batch, store.Refusal{ID: fmt.Sprintf("r-%d", i), Event: "push", Status: 401, Outcome: "unauthorized",
				Message: "signature does not match", Remote: "192.0.2.1:1234", ReceivedAt: time.Unix(int64(i), 0)})
			if len(batch) == 100 || i == store.MaxRefusals+9 {
				if err := s.RecordRefusals(ctx, batch); err != nil {
					t.Fatal(err)
				}
				batch = nil
			}
		}
		var ids []string
		next := ""
		for {
			page, err := s.ListRefusals(ctx, 300, next)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Refusals {
				ids = append(ids, r.ID)
			}
			if next = page.Continue; next == "" {
				break
			}
		}
		if len(ids) != store.MaxRefusals {
			t.Fatalf("%d refusals kept, want %d", len(ids), store.MaxRefusals)
		}
		if ids[0] != fmt.Sprintf("r-%d", store.MaxRefusals+9) || ids[len(ids)-1] != "r-10" {
			t.Errorf("kept %s … %s, want the newest first, down to r-10", ids[0], ids[len(ids)-1])
		}
		page, err := s.ListRefusals(ctx, 1, "")
		if err != nil {
			t.Fatal(err)
		}
		r := page.Refusals[0]
		if r.Status != 401 || r.Outcome != "unauthorized" || r.Message != "signature does not match" || r.Remote != "192.0.2.1:1234" || r.Event != "push" || !r.ReceivedAt.Equal(time.Unix(store.MaxRefusals+9, 0)) {
			t.Errorf("newest refusal %+v: fields not kept", r)
		}
	})
	t.Run("EffectClaimedOnce", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		var fresh atomic.Int32
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				st, err := s.ClaimEffect(ctx, "welcome/acme/widget#1")
				if err != nil {
					t.Error(err)
				}
				if st == store.EffectNew {
					fresh.Add(1)
				}
			})
		}
		wg.Wait()
		if got := fresh.Load(); got != 1 {
			t.Fatalf("%d claims won, want 1", got)
		}
		if st, _ := s.ClaimEffect(ctx, "welcome/acme/widget#1"); st != store.EffectPending {
			t.Errorf("claim after claim: %q, want pending", st)
		}
		if err := s.CompleteEffect(ctx, "welcome/acme/widget#1"); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.ClaimEffect(ctx, "welcome/acme/widget#1"); st != store.EffectDone {
			t.Errorf("claim after completion: %q, want done", st)
		}
		if st, _ := s.ClaimEffect(ctx, "reply/9"); st != store.EffectNew {
			t.Errorf("first claim of another key: %q, want new", st)
		}
		if err := s.ReleaseEffect(ctx, "reply/9"); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.ClaimEffect(ctx, "reply/9"); st != store.EffectNew {
			t.Errorf("claim after release: %q, want new", st)
		}
	})
}

package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/store"
	"github.com/lockstep-ci/lockstep/internal/webhook"
)

// Sink returns the webhook intake's sink: it stores each delivery durably
// before the intake answers, for the Processor to handle.
func Sink(s store.Deliveries) webhook.Sink {
	return webhook.SinkFunc(func(ctx context.Context, d webhook.Delivery) (bool, error) {
		return s.AcceptDelivery(ctx, &store.Delivery{
			ID: d.ID, Event: d.Event, ReceivedAt: d.ReceivedAt, Body: d.Body,
			Outcome: store.Outcome{Repo: d.Subject.Repo, Pull: d.Subject.Number, Action: d.Subject.Action},
		})
	})
}

// ProcessorStore is what the Processor reads and writes.
type ProcessorStore interface {
	store.Deliveries
	Revision(ctx context.Context) (int64, error)
}

// ProcessorOptions configure a Processor. Store and Trigger are required.
type ProcessorOptions struct {
	Store   ProcessorStore
	Trigger *Trigger
	Clock   clock.WithTicker
	Logger  *slog.Logger
	// Workers is how many deliveries are handled at once; default 8.
	Workers int
	// MetricsProvider and OnError, if set, receive the workqueue's
	// metrics and every processing error.
	MetricsProvider workqueue.MetricsProvider
	OnError         func(error)
}

// Processor handles accepted deliveries: each pending delivery is decoded,
// handed to the Trigger, and finished with its outcome. Deliveries left
// pending by a crash are found again at start.
type Processor struct {
	opts ProcessorOptions
	ctrl *controller.Controller[string]
	log  *slog.Logger
}

// NewProcessor returns a Processor.
func NewProcessor(opts ProcessorOptions) *Processor {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	p := &Processor{opts: opts, log: opts.Logger.With("controller", "deliveries")}
	p.ctrl = controller.New(controller.Options[string]{
		Name:       "deliveries",
		Reconciler: p,
		Workers:    opts.Workers,
		Clock:      opts.Clock,
		Logger:     opts.Logger,
		Watches: []controller.Watch[string]{controller.NewStoreSource(controller.DeliveryFeed(opts.Store),
			func(d *store.Delivery, enqueue func(string)) {
				// Deliveries of other intakes (GitLab's pipeline hooks)
				// are their owners' to process.
				if d.State == store.DeliveryPending && webhook.Known(d.Event) {
					enqueue(d.ID)
				}
			}, opts.Clock, opts.Logger)},
		List:   p.listPending,
		Resync: time.Minute,

		MetricsProvider: opts.MetricsProvider,
		OnError:         opts.OnError,
	})
	return p
}

// Run processes deliveries until ctx is done.
func (p *Processor) Run(ctx context.Context) error {
	return p.ctrl.Run(ctx)
}

func (p *Processor) listPending(ctx context.Context, enqueue func(string)) error {
	opts := store.DeliveryListOptions{State: store.DeliveryPending, Limit: store.MaxLimit}
	for {
		page, err := p.opts.Store.ListDeliveries(ctx, opts)
		if err != nil {
			return fmt.Errorf("list pending deliveries: %w", err)
		}
		for _, d := range page.Deliveries {
			if webhook.Known(d.Event) {
				enqueue(d.ID)
			}
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// Reconcile handles delivery id if it is still pending.
func (p *Processor) Reconcile(ctx context.Context, id string) (controller.Result, error) {
	d, err := p.opts.Store.GetDelivery(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	if d.State != store.DeliveryPending || !webhook.Known(d.Event) {
		return controller.Result{}, nil
	}
	log := p.log.With("delivery", id, "event", d.Event)
	base := d.Outcome
	ev, err := webhook.Decode(d.Event, d.Body)
	if err != nil {
		base.Error = err.Error()
		return controller.Result{}, p.finish(ctx, d, store.DeliveryFailed, base, log)
	}
	out, err := p.opts.Trigger.Handle(ctx, id, ev)
	mergeOutcome(&out, base)
	if err != nil {
		if !controller.IsTerminal(err) {
			return controller.Result{}, fmt.Errorf("delivery %s: %w", id, err)
		}
		out.Error = err.Error()
		return controller.Result{}, p.finish(ctx, d, store.DeliveryFailed, out, log)
	}
	return controller.Result{}, p.finish(ctx, d, store.DeliveryDone, out, log)
}

// mergeOutcome fills what the trigger did not say from what the intake
// read.
func mergeOutcome(out *store.Outcome, base store.Outcome) {
	if out.Repo == "" {
		out.Repo = base.Repo
	}
	if out.Pull == 0 {
		out.Pull = base.Pull
	}
	if out.Action == "" {
		out.Action = base.Action
	}
}

func (p *Processor) finish(ctx context.Context, d *store.Delivery, state store.DeliveryState, out store.Outcome, log *slog.Logger) error {
	now := p.clockNow()
	out.ProcessedAt = &now
	err := p.opts.Store.FinishDelivery(ctx, d.ID, state, out)
	if errors.Is(err, store.ErrConflict) {
		return nil // finished by an earlier attempt
	}
	if err != nil {
		return err
	}
	switch {
	case state == store.DeliveryFailed:
		log.Warn("delivery failed", "reason", out.Error)
	case out.Ignored != "":
		log.Debug("delivery ignored", "repo", out.Repo, "pr", out.Pull, "reason", out.Ignored)
	default:
		log.Info("delivery processed", "repo", out.Repo, "pr", out.Pull, "runs", out.Runs, "existing", out.Existing, "aborted", out.Aborted)
	}
	return nil
}

func (p *Processor) clockNow() time.Time {
	if p.opts.Clock != nil {
		return p.opts.Clock.Now()
	}
	return time.Now()
}

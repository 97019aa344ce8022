package webhook

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// refusalQueue is how many refusals wait for their write; beyond it, a
// flood of bad deliveries is counted and dropped rather than slowing the
// intake.
const refusalQueue = 256

// refusalBatch caps the refusals written at once.
const refusalBatch = 128

// RefusalRecorder keeps the deliveries the intake refuses in a store,
// off the request path: Record only queues (HandlerOptions.Refused), and
// Run writes what is queued in batches. When the queue is full a refusal
// is dropped and counted, and Run logs how many were. Create it with
// NewRefusalRecorder; Record is safe for concurrent use, Run is called
// once.
type RefusalRecorder struct {
	store   store.Refusals
	log     *slog.Logger
	queue   chan store.Refusal
	dropped atomic.Int64
}

// NewRefusalRecorder returns a recorder writing to st, logging to log
// (nil discards).
func NewRefusalRecorder(st store.Refusals, log *slog.Logger) *RefusalRecorder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RefusalRecorder{store: st, log: log, queue: make(chan store.Refusal, refusalQueue)}
}

// Record queues r for writing, without blocking.
func (rr *RefusalRecorder) Record(r store.Refusal) {
	select {
	case rr.queue <- r:
	default:
		rr.dropped.Add(1)
	}
}

// Run writes queued refusals until ctx ends; it returns nil then. A write
// that fails is logged and its refusals are lost: they are a record for
// people, not a delivery.
func (rr *RefusalRecorder) Run(ctx context.Context) error {
	batch := make([]store.Refusal, 0, refusalBatch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-rr.queue:
			batch = append(batch[:0], r)
		}
	fill:
		for len(batch) < refusalBatch {
			select {
			case r := <-rr.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := rr.store.RecordRefusals(wctx, batch); err != nil {
			rr.log.Error("refused webhook deliveries not recorded", "count", len(batch), "err", err)
		}
		cancel()
		if n := rr.dropped.Swap(0); n > 0 {
			rr.log.Warn("refused webhook deliveries not recorded: too many at once", "dropped", n)
		}
	}
}

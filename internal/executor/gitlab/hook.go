package gitlab

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/controller"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// Headers of a GitLab webhook delivery.
const (
	HeaderEvent       = "X-Gitlab-Event"
	HeaderToken       = "X-Gitlab-Token"
	HeaderEventUUID   = "X-Gitlab-Event-UUID"
	HeaderIdempotency = "Idempotency-Key"
)

// DeliveryEvent is the event name under which pipeline webhooks are
// stored among the deliveries.
const DeliveryEvent = "gitlab/pipeline"

// maxHookBody bounds a webhook's body.
const maxHookBody = 25 << 20

// HookOptions configures NewHookHandler. Token and Store are required.
type HookOptions struct {
	// Token returns the webhook's secret token; called for every
	// delivery, so a reloaded configuration takes effect at once. While it
	// returns nothing every delivery is refused with 500.
	Token func() []byte
	// Store keeps accepted deliveries, durably before the answer.
	Store  store.Deliveries
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// NewHookHandler returns the handler of POST /hook/gitlab. It checks the
// X-Gitlab-Token header against the token in constant time, stores each
// pipeline webhook among the deliveries before answering 202 (200 for a
// delivery already stored: GitLab's Idempotency-Key, kept across its
// retries, names it), and acknowledges other events with 202 without
// storing them.
func NewHookHandler(opts HookOptions) http.Handler {
	if opts.Token == nil || opts.Store == nil {
		panic("gitlab.NewHookHandler: Token and Store are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &hookHandler{opts: opts}
}

type hookHandler struct{ opts HookOptions }

// hookSubject is what the intake reads of a pipeline webhook.
type hookSubject struct {
	ObjectKind       string `json:"object_kind"`
	ObjectAttributes struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
		Ref    string `json:"ref"`
	} `json:"object_attributes"`
	Project struct {
		PathWithNamespace string `json:"path_with_namespace"`
	} `json:"project"`
}

func (h *hookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, msg string) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintln(w, msg)
	}
	refuse := func(status int, msg string) {
		h.opts.Logger.Warn("gitlab webhook refused", "status", status, "reason", msg, "remote", r.RemoteAddr)
		reply(status, msg)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, "send POST")
		return
	}
	want := h.opts.Token()
	if len(want) == 0 {
		refuse(http.StatusInternalServerError, "lockstep has no GitLab webhook token configured (gitlab.webhook_token_file)")
		return
	}
	got := r.Header.Get(HeaderToken)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
		refuse(http.StatusUnauthorized, "missing or wrong "+HeaderToken+": set the webhook's secret token to lockstep's gitlab.webhook_token_file")
		return
	}
	event := r.Header.Get(HeaderEvent)
	if event != string(gl.EventTypePipeline) {
		reply(http.StatusAccepted, "ignored event "+event)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	if err != nil {
		refuse(http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	var sub hookSubject
	if err := json.Unmarshal(body, &sub); err != nil || sub.ObjectKind != "pipeline" || sub.ObjectAttributes.ID <= 0 {
		refuse(http.StatusBadRequest, "not a pipeline webhook: want object_kind pipeline and object_attributes.id")
		return
	}
	id := deliveryID(r, body)
	dup, err := h.opts.Store.AcceptDelivery(r.Context(), &store.Delivery{
		ID: id, Event: DeliveryEvent, ReceivedAt: h.opts.Clock.Now(), Body: body,
		Outcome: store.Outcome{Repo: sub.Project.PathWithNamespace, Action: sub.ObjectAttributes.Status},
	})
	switch {
	case err != nil:
		h.opts.Logger.Error("gitlab webhook not stored", "delivery", id, "err", err)
		reply(http.StatusServiceUnavailable, "not stored, send it again: "+err.Error())
	case dup:
		reply(http.StatusOK, "duplicate delivery "+id)
	default:
		reply(http.StatusAccepted, "accepted "+id)
	}
}

// deliveryID names a delivery: GitLab's Idempotency-Key (the same across
// its retries of one delivery), else X-Gitlab-Event-UUID, else the
// payload's digest.
func deliveryID(r *http.Request, body []byte) string {
	for _, h := range []string{HeaderIdempotency, HeaderEventUUID} {
		if v := r.Header.Get(h); v != "" && len(v) <= 100 {
			return "gitlab-" + v
		}
	}
	sum := sha256.Sum256(body)
	return "gitlab-" + hex.EncodeToString(sum[:16])
}

// DeliveryStore is what the Deliveries processor reads and writes.
type DeliveryStore interface {
	store.Deliveries
	Revision(ctx context.Context) (int64, error)
}

// Deliveries processes stored pipeline webhooks: each pending one is
// handed to the Executor's Observe and finished with what it did.
// Webhooks left pending by a crash are found again at start; one about a
// pipeline nobody follows yet is finished too, since polling and the
// runner's own look at the run cover it.
type Deliveries struct {
	store DeliveryStore
	exec  *Executor
	ctrl  *controller.Controller[string]
	log   *slog.Logger
}

// NewDeliveries returns a processor of st's pipeline webhooks for e.
func NewDeliveries(st DeliveryStore, e *Executor, log *slog.Logger) *Deliveries {
	if log == nil {
		log = slog.Default()
	}
	d := &Deliveries{store: st, exec: e, log: log.With("controller", "gitlab-deliveries")}
	d.ctrl = controller.New(controller.Options[string]{
		Name: "gitlab-deliveries", Reconciler: d, Workers: 4, Logger: log,
		Watches: []controller.Watch[string]{controller.NewStoreSource(controller.DeliveryFeed(st),
			func(del *store.Delivery, enqueue func(string)) {
				if del.State == store.DeliveryPending && del.Event == DeliveryEvent {
					enqueue(del.ID)
				}
			}, nil, log)},
		List: d.listPending, Resync: time.Minute,
	})
	return d
}

// Run processes deliveries until ctx is done.
func (d *Deliveries) Run(ctx context.Context) error {
	return d.ctrl.Run(ctx)
}

func (d *Deliveries) listPending(ctx context.Context, enqueue func(string)) error {
	opts := store.DeliveryListOptions{State: store.DeliveryPending, Event: DeliveryEvent, Limit: store.MaxLimit}
	for {
		page, err := d.store.ListDeliveries(ctx, opts)
		if err != nil {
			return fmt.Errorf("list pending gitlab deliveries: %w", err)
		}
		for _, del := range page.Deliveries {
			enqueue(del.ID)
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// Reconcile handles delivery id if it is still pending.
func (d *Deliveries) Reconcile(ctx context.Context, id string) (controller.Result, error) {
	del, err := d.store.GetDelivery(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	if del.State != store.DeliveryPending || del.Event != DeliveryEvent {
		return controller.Result{}, nil
	}
	out := del.Outcome
	now := time.Now()
	out.ProcessedAt = &now
	state := store.DeliveryDone
	ev, err := gl.ParseWebhook(gl.EventTypePipeline, del.Body)
	pe, ok := ev.(*gl.PipelineEvent)
	if err != nil || !ok {
		state = store.DeliveryFailed
		out.Error = fmt.Sprintf("not a pipeline webhook: %v", err)
	} else {
		out.Notes = append(out.Notes, d.exec.Observe(pe))
	}
	err = d.store.FinishDelivery(ctx, id, state, out)
	if errors.Is(err, store.ErrConflict) {
		return controller.Result{}, nil // finished by another worker
	}
	return controller.Result{}, err
}

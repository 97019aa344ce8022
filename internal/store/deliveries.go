package store

import (
	"context"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// DeliveryState is where a webhook delivery is in its processing.
type DeliveryState string

// The states of a delivery.
const (
	DeliveryPending DeliveryState = "pending" // accepted, not processed yet
	DeliveryDone    DeliveryState = "done"    // processed; Outcome says what it caused
	DeliveryFailed  DeliveryState = "failed"  // could not be processed; Outcome.Error says why
)

// Delivery is one webhook delivery, kept from the moment it is accepted
// (before the forge gets its 2xx answer) for processing, audit and replay.
type Delivery struct {
	// Seq orders deliveries by acceptance.
	Seq int64 `json:"seq"`
	// ID is the forge's delivery id (X-GitHub-Delivery).
	ID              string        `json:"id"`
	Event           string        `json:"event"`
	ReceivedAt      time.Time     `json:"received_at"`
	State           DeliveryState `json:"state"`
	Outcome         Outcome       `json:"outcome"`
	ResourceVersion int64         `json:"resource_version"`
	// Body is the payload as received; listings leave it out.
	Body []byte `json:"-"`
}

// Outcome is what processing a delivery caused, for the deliveries page:
// the first place to look when "my PR did not trigger".
type Outcome struct {
	// Repo, Pull, Action and Sender describe the event.
	Repo   string `json:"repo,omitempty"`
	Pull   int    `json:"pull,omitempty"`
	Action string `json:"action,omitempty"`
	Sender string `json:"sender,omitempty"`
	// Runs lists the runs the delivery created; Existing the runs it
	// would have created but that existed already (same trigger key).
	Runs     []run.ID `json:"runs,omitempty"`
	Existing []run.ID `json:"existing,omitempty"`
	Aborted  []run.ID `json:"aborted,omitempty"`
	// Ignored says why the delivery caused nothing, when it did not.
	Ignored string `json:"ignored,omitempty"`
	// Stale is set when the event was about a head SHA that is no longer
	// the pull request's head.
	Stale bool `json:"stale,omitempty"`
	// Notes lists other effects: labels added, comments posted.
	Notes []string `json:"notes,omitempty"`
	// Error says why processing failed, for a failed delivery.
	Error       string     `json:"error,omitempty"`
	ProcessedAt *time.Time `json:"processed_at,omitempty"`
}

// DeliveryListOptions filter and page a delivery listing, newest first.
type DeliveryListOptions struct {
	State    DeliveryState
	Event    string
	Limit    int
	Continue string
}

// DeliveryPage is one page of deliveries.
type DeliveryPage struct {
	Deliveries []*Delivery
	Continue   string
}

// Deliveries stores webhook deliveries.
type Deliveries interface {
	// AcceptDelivery stores d as pending. It is durable when it returns.
	// A delivery whose ID is already stored is not stored again: it
	// returns duplicate true.
	AcceptDelivery(ctx context.Context, d *Delivery) (duplicate bool, err error)
	// GetDelivery returns the delivery with id, body included, or
	// ErrNotFound.
	GetDelivery(ctx context.Context, id string) (*Delivery, error)
	// ListDeliveries returns deliveries without their bodies, newest first.
	ListDeliveries(ctx context.Context, opts DeliveryListOptions) (DeliveryPage, error)
	// FinishDelivery records the outcome of a pending delivery and moves
	// it to state (done or failed). Finishing a delivery that is not
	// pending fails with ErrConflict and changes nothing.
	FinishDelivery(ctx context.Context, id string, state DeliveryState, outcome Outcome) error
	// WatchDeliveries calls fn with every delivery written after revision
	// from, without its body, in revision order, until ctx is done or fn
	// fails; like WatchRuns.
	WatchDeliveries(ctx context.Context, from int64, fn func(*Delivery) error) error
}

// PullState is the newest known state of a pull request, ordered by the
// forge's updated_at, so that late webhooks cannot move a pull request's
// head backwards.
type PullState struct {
	Repo      string    `json:"repo"`
	Number    int       `json:"number"`
	Title     string    `json:"title,omitempty"`
	State     string    `json:"state"` // open or closed
	Draft     bool      `json:"draft"`
	Author    string    `json:"author"`
	HeadSHA   string    `json:"head_sha"`
	HeadRef   string    `json:"head_ref"`
	BaseRef   string    `json:"base_ref"`
	BaseSHA   string    `json:"base_sha"`
	Labels    []string  `json:"labels,omitempty"`
	Mergeable *bool     `json:"mergeable,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// HeadCloneURL is where the head commit can be fetched (a fork).
	HeadCloneURL string `json:"head_clone_url,omitempty"`
	// Epoch counts how often the pull request was closed or turned into
	// a draft: reopening it, or marking it ready again, starts a new
	// generation of automatic runs on the same head.
	Epoch           int   `json:"epoch,omitempty"`
	ResourceVersion int64 `json:"resource_version"`
}

// Pulls stores the newest known state of pull requests.
type Pulls interface {
	// GetPullState returns the state of pull request number of repo, or
	// ErrNotFound.
	GetPullState(ctx context.Context, repo string, number int) (*PullState, error)
	// PutPullState creates (ResourceVersion 0) or replaces (the current
	// ResourceVersion) a pull request's state. A create of an existing one
	// fails with ErrAlreadyExists, a replace based on a stale version with
	// ErrConflict.
	PutPullState(ctx context.Context, p *PullState) (*PullState, error)
	// ListPullStates returns the pull requests matching opts, the most
	// recently written first.
	ListPullStates(ctx context.Context, opts PullListOptions) ([]*PullState, error)
}

// PullListOptions filter a listing of pull requests. Zero fields match
// anything; Limit zero means DefaultLimit, above MaxLimit MaxLimit.
type PullListOptions struct {
	Repo  string
	State string // open or closed
	Limit int
}

// Refusal is a webhook delivery the intake refused (a bad signature, a
// wrong content type, a body too large, a malformed payload), kept
// without its body so that a person can see why a delivery caused
// nothing.
type Refusal struct {
	// Seq orders refusals by recording.
	Seq int64 `json:"seq"`
	// ID and Event are the delivery's headers, empty when missing.
	ID         string    `json:"id,omitempty"`
	Event      string    `json:"event,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	// Status is the HTTP status of the answer; Outcome a short word for
	// the reason (unauthorized, too_large…) and Message the answer's text.
	Status  int    `json:"status"`
	Outcome string `json:"outcome"`
	Message string `json:"message"`
	// Remote is the address the delivery came from.
	Remote string `json:"remote,omitempty"`
}

// MaxRefusals is how many refusals a store keeps: the oldest go first.
const MaxRefusals = 1000

// RefusalPage is one page of refusals, newest first.
type RefusalPage struct {
	Refusals []*Refusal
	Continue string
}

// Refusals stores refused deliveries, a bounded number of them.
type Refusals interface {
	// RecordRefusals stores rs in one write and forgets the oldest
	// refusals beyond MaxRefusals.
	RecordRefusals(ctx context.Context, rs []Refusal) error
	// ListRefusals returns up to limit refusals, newest first, after the
	// continue token of a previous page.
	ListRefusals(ctx context.Context, limit int, continueToken string) (RefusalPage, error)
}

// EffectState says whether a side effect done once has been done.
type EffectState string

// The states of an effect.
const (
	EffectNew     EffectState = ""        // claimed by this call: do it
	EffectPending EffectState = "pending" // claimed before, maybe not done (a crash): check, then do it
	EffectDone    EffectState = "done"
)

// Effects records side effects on the forge that must happen once, such
// as a pull request's welcome comment, whatever the redeliveries.
type Effects interface {
	// ClaimEffect claims key: it returns EffectNew if nobody had, or the
	// state of the earlier claim.
	ClaimEffect(ctx context.Context, key string) (EffectState, error)
	// CompleteEffect marks key done.
	CompleteEffect(ctx context.Context, key string) error
	// ReleaseEffect forgets key, after the effect failed, so that a retry
	// can claim it again.
	ReleaseEffect(ctx context.Context, key string) error
}

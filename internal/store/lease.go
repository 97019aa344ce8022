package store

import (
	"context"
	"errors"
	"time"
)

// ErrFenced: the write was made under a leader term that is no longer
// current; the replica that made it has lost its lease and must stop
// writing as a leader.
var ErrFenced = errors.New("fenced: this replica's leader term is over, another replica leads now")

// Lease is a named, expiring lock that one holder at a time has, such as
// the leadership of the replicas sharing a store. Term grows by one every
// time the lease passes to a holder, and fences the writes made under it
// (see Fence).
type Lease struct {
	Name       string    `json:"name"`
	Holder     string    `json:"holder"`
	Term       int64     `json:"term"`
	AcquiredAt time.Time `json:"acquired_at"`
	RenewedAt  time.Time `json:"renewed_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// Leases stores leases. Implementations are safe for concurrent use by
// many goroutines and, for stores shared by several processes, by many
// processes; lease times are those of the store's clock.
type Leases interface {
	// AcquireLease takes the lease called name for holder until ttl from
	// now, creating it if needed, and returns it as stored. If holder
	// holds it and it has not expired, it is renewed in the same term. If
	// it has expired, whoever held it, holder takes it in the next term.
	// If another holder has it and it has not expired, AcquireLease
	// changes nothing and returns it, with no error: the caller compares
	// Holder.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (*Lease, error)
	// ReleaseLease ends the lease called name if holder holds it in term,
	// so that another holder can take it at once; otherwise it does
	// nothing.
	ReleaseLease(ctx context.Context, name, holder string, term int64) error
	// GetLease returns the lease called name, or ErrNotFound.
	GetLease(ctx context.Context, name string) (*Lease, error)
}

// Fence names the lease and term a write is made under.
type Fence struct {
	Lease string
	Term  int64
}

type fenceKey struct{}

// WithFence returns ctx carrying f: every write made with it fails with
// ErrFenced, and changes nothing, once the lease f names has a term other
// than f.Term. A store that only one process can open (SQLite) has no
// other leader to fence off and may ignore it.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceFrom returns the fence ctx carries, if any.
func FenceFrom(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lockstep-ci/lockstep/internal/store"
)

// leaseColumns are the columns scanLease reads, in its order.
const leaseColumns = `name, holder, term, acquired_at, renewed_at, expires_at`

// AcquireLease takes or renews the lease called name for holder. The row
// is locked for the transaction, so that two replicas racing for an
// expired lease give it one new term, and so that a takeover waits for the
// fenced writes of the old term that are under way (see checkFence).
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (*store.Lease, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return nil, fmt.Errorf("acquire lease %q: %w: name, holder and a positive ttl are required", name, store.ErrInvalid)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: begin: %w", name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	now := s.clock.Now()
	expires := now.Add(ttl)
	cur, err := scanLease(tx.QueryRow(ctx, `SELECT `+leaseColumns+` FROM leases WHERE name = $1 FOR UPDATE`, name))
	var got *store.Lease
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		got, err = scanLease(tx.QueryRow(ctx, `
INSERT INTO leases (name, holder, term, acquired_at, renewed_at, expires_at) VALUES ($1, $2, 1, $3, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING `+leaseColumns, name, holder, now.UnixNano(), expires.UnixNano()))
		if errors.Is(err, pgx.ErrNoRows) {
			// Another replica created it since: it holds it.
			tx.Rollback(ctx)
			return s.GetLease(ctx, name)
		}
	case err != nil:
		return nil, fmt.Errorf("acquire lease %s: read: %w", name, err)
	case cur.Holder == holder && now.Before(cur.ExpiresAt):
		got, err = scanLease(tx.QueryRow(ctx, `
UPDATE leases SET renewed_at = $2, expires_at = $3 WHERE name = $1 RETURNING `+leaseColumns,
			name, now.UnixNano(), expires.UnixNano()))
	case now.Before(cur.ExpiresAt):
		return cur, nil
	default:
		got, err = scanLease(tx.QueryRow(ctx, `
UPDATE leases SET holder = $2, term = term + 1, acquired_at = $3, renewed_at = $3, expires_at = $4
WHERE name = $1 RETURNING `+leaseColumns, name, holder, now.UnixNano(), expires.UnixNano()))
	}
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: write: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("acquire lease %s: commit: %w", name, err)
	}
	return got, nil
}

// ReleaseLease ends the lease if holder holds it in term.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string, term int64) error {
	_, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = $4 WHERE name = $1 AND holder = $2 AND term = $3`,
		name, holder, term, s.clock.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// GetLease returns the lease called name.
func (s *Store) GetLease(ctx context.Context, name string) (*store.Lease, error) {
	l, err := scanLease(s.pool.QueryRow(ctx, `SELECT `+leaseColumns+` FROM leases WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get lease %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get lease %s: %w", name, err)
	}
	return l, nil
}

// scanLease reads a lease from the columns leaseColumns names.
func scanLease(sc scanner) (*store.Lease, error) {
	var l store.Lease
	var acquired, renewed, expires int64
	if err := sc.Scan(&l.Name, &l.Holder, &l.Term, &acquired, &renewed, &expires); err != nil {
		return nil, err
	}
	l.AcquiredAt = time.Unix(0, acquired).UTC()
	l.RenewedAt = time.Unix(0, renewed).UTC()
	l.ExpiresAt = time.Unix(0, expires).UTC()
	return &l, nil
}

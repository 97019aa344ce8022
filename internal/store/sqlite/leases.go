package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

var (
	_ store.Leases = (*Store)(nil)
	_ store.Logs   = (*Store)(nil)
)

// leaseColumns are the columns scanLease reads, in its order.
const leaseColumns = `name, holder, term, acquired_at, renewed_at, expires_at`

// AcquireLease takes or renews the lease called name for holder. Only one
// process writes a SQLite store, so the fences of store.WithFence are not
// checked: there is no other leader to fence off.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (*store.Lease, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return nil, fmt.Errorf("acquire lease %q: %w: name, holder and a positive ttl are required", name, store.ErrInvalid)
	}
	var got *store.Lease
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		now := s.clock.Now()
		expires := now.Add(ttl)
		cur, err := scanLease(tx.QueryRow(`SELECT `+leaseColumns+` FROM leases WHERE name = ?`, name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			got, err = scanLease(tx.QueryRow(`
INSERT INTO leases (name, holder, term, acquired_at, renewed_at, expires_at) VALUES (?, ?, 1, ?, ?, ?)
RETURNING `+leaseColumns, name, holder, now.UnixNano(), now.UnixNano(), expires.UnixNano()))
		case err != nil:
			return false, fmt.Errorf("read: %w", err)
		case cur.Holder == holder && now.Before(cur.ExpiresAt):
			got, err = scanLease(tx.QueryRow(`
UPDATE leases SET renewed_at = ?, expires_at = ? WHERE name = ? RETURNING `+leaseColumns,
				now.UnixNano(), expires.UnixNano(), name))
		case now.Before(cur.ExpiresAt):
			got = cur
			return false, nil
		default:
			got, err = scanLease(tx.QueryRow(`
UPDATE leases SET holder = ?, term = term + 1, acquired_at = ?, renewed_at = ?, expires_at = ?
WHERE name = ? RETURNING `+leaseColumns, holder, now.UnixNano(), now.UnixNano(), expires.UnixNano(), name))
		}
		if err != nil {
			return false, fmt.Errorf("write: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return got, nil
}

// ReleaseLease ends the lease if holder holds it in term.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string, term int64) error {
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		res, err := tx.Exec(`UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND term = ?`,
			s.clock.Now().UnixNano(), name, holder, term)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n > 0, err
	})
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// GetLease returns the lease called name.
func (s *Store) GetLease(ctx context.Context, name string) (*store.Lease, error) {
	l, err := scanLease(s.read.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM leases WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
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

// AppendLog appends data to the log of run id at offset off.
func (s *Store) AppendLog(ctx context.Context, id run.ID, off int64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		var end int64
		if err := tx.QueryRow(`SELECT coalesce(max(off + length(data)), 0) FROM log_chunks WHERE run_id = ?`, int64(id)).Scan(&end); err != nil {
			return false, err
		}
		if end != off {
			return false, fmt.Errorf("%w: the log is %d bytes long", store.ErrConflict, end)
		}
		_, err := tx.Exec(`INSERT INTO log_chunks (run_id, off, data) VALUES (?, ?, ?)`, int64(id), off, data)
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("append to log of run %d at offset %d: %w", id, off, err)
	}
	return nil
}

// ReadLog returns up to limit bytes of the log of run id from offset off.
func (s *Store) ReadLog(ctx context.Context, id run.ID, off int64, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = store.DefaultLogRead
	}
	rows, err := s.read.QueryContext(ctx, `
SELECT off, data FROM log_chunks
WHERE run_id = ? AND off + length(data) > ? AND off < ?
ORDER BY off`, int64(id), off, off+int64(limit))
	if err != nil {
		return nil, fmt.Errorf("read log of run %d: %w", id, err)
	}
	defer rows.Close()
	out, err := store.JoinLogChunks(rows, off, limit)
	if err != nil {
		return nil, fmt.Errorf("read log of run %d: %w", id, err)
	}
	return out, nil
}

// LogLength returns how many bytes the log of run id holds.
func (s *Store) LogLength(ctx context.Context, id run.ID) (int64, error) {
	var n int64
	if err := s.read.QueryRowContext(ctx, `SELECT coalesce(max(off + length(data)), 0) FROM log_chunks WHERE run_id = ?`, int64(id)).Scan(&n); err != nil {
		return 0, fmt.Errorf("length of log of run %d: %w", id, err)
	}
	return n, nil
}

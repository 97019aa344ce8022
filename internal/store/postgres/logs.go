package postgres

import (
	"context"
	"fmt"

	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// AppendLog appends data to the log of run id at offset off. The chunks
// of a log are keyed by their offset; the append checks, in the same
// statement, that the log ends at off, so that a second writer or a
// replayed append conflicts rather than doubling bytes.
func (s *Store) AppendLog(ctx context.Context, id run.ID, off int64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	tag, err := s.pool.Exec(ctx, `
INSERT INTO log_chunks (run_id, off, data)
SELECT $1, $2, $3
WHERE $2 = (SELECT coalesce(max(off + length(data)), 0) FROM log_chunks WHERE run_id = $1)
ON CONFLICT (run_id, off) DO NOTHING`, int64(id), off, data)
	if err != nil {
		return fmt.Errorf("append to log of run %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("append to log of run %d at offset %d: %w: the log does not end there", id, off, store.ErrConflict)
	}
	return nil
}

// ReadLog returns up to limit bytes of the log of run id from offset off.
func (s *Store) ReadLog(ctx context.Context, id run.ID, off int64, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = store.DefaultLogRead
	}
	rows, err := s.pool.Query(ctx, `
SELECT off, data FROM log_chunks
WHERE run_id = $1 AND off + length(data) > $2 AND off < $2 + $3
ORDER BY off`, int64(id), off, limit)
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
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(off + length(data)), 0) FROM log_chunks WHERE run_id = $1`, int64(id)).Scan(&n); err != nil {
		return 0, fmt.Errorf("length of log of run %d: %w", id, err)
	}
	return n, nil
}

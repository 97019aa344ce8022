package store

import (
	"context"

	"github.com/lockstep-ci/lockstep/internal/run"
)

// Logs stores the logs of runs, so that any process sharing the store
// reads any run's log, live and complete, whichever process ran it. A log
// is a sequence of bytes written only by appending.
// Implementations are safe for concurrent use.
type Logs interface {
	// AppendLog appends data to the log of run id, which must be off bytes
	// long: an append at another offset (a second writer, or a retry of an
	// append that was stored) fails with ErrConflict and changes nothing.
	AppendLog(ctx context.Context, id run.ID, off int64, data []byte) error
	// ReadLog returns up to limit bytes (DefaultLogRead when limit is not
	// positive) of the log of run id from offset off; fewer, or none, when
	// the log is shorter. A run with no log has an empty one.
	ReadLog(ctx context.Context, id run.ID, off int64, limit int) ([]byte, error)
	// LogLength returns how many bytes the log of run id holds; zero for
	// a run with no log.
	LogLength(ctx context.Context, id run.ID) (int64, error)
}

// DefaultLogRead is how much ReadLog returns at most when not told.
const DefaultLogRead = 1 << 20

// LogChunkRows are the rows of a query for a log's chunks, (offset,
// data) ordered by offset: *sql.Rows and pgx.Rows both are.
type LogChunkRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// JoinLogChunks joins the chunks rows holds into the bytes of the log from
// offset off, at most limit of them; the first chunk may start before off.
// It is the common part of every backend's ReadLog.
func JoinLogChunks(rows LogChunkRows, off int64, limit int) ([]byte, error) {
	var out []byte
	for rows.Next() {
		var at int64
		var chunk []byte
		if err := rows.Scan(&at, &chunk); err != nil {
			return nil, err
		}
		if at < off {
			chunk = chunk[off-at:]
		}
		out = append(out, chunk...)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

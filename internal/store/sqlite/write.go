package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
)

// maxBatch caps how many writes share one transaction.
const maxBatch = 128

// writeTx is the write transaction one write runs in: the write connection
// between BEGIN IMMEDIATE and COMMIT, possibly shared with other writes of
// the same batch, each behind its own savepoint.
type writeTx struct {
	conn *sql.Conn
	// ctx carries the writer's values but no cancellation, so that no
	// statement is interrupted halfway and no goroutine is started to watch
	// for it.
	ctx context.Context
}

// QueryRow runs a query that returns at most one row.
func (t *writeTx) QueryRow(query string, args ...any) *sql.Row {
	return t.conn.QueryRowContext(t.ctx, query, args...)
}

// Exec runs a statement that returns no rows.
func (t *writeTx) Exec(query string, args ...any) (sql.Result, error) {
	return t.conn.ExecContext(t.ctx, query, args...)
}

// writeOp is one write waiting for, or running in, a batch.
type writeOp struct {
	ctx context.Context
	fn  func(*writeTx) (bool, error)
	// done receives the write's outcome once its batch has committed or
	// failed.
	done chan error
	// lead tells the writer that it now commits the next batch.
	lead chan struct{}
}

// inTx runs fn in a write transaction and wakes the watchers once it has
// committed. fn reports through wrote whether it changed anything; when it
// did not, or when it fails, what it did is rolled back.
//
// Writes are committed in batches (group commit): the writes that queue
// while a transaction commits share the next one, each behind a savepoint,
// so that a burst of writes costs a few commits rather than one each. A
// batch is run by one of its writers, the leader, on its own goroutine;
// when done, the leader hands the lead to the first waiting writer. A
// write whose ctx ends while it waits is not run, and returns ctx.Err();
// once running, it runs to its end.
//
// Transactions are driven with plain BEGIN IMMEDIATE, COMMIT and ROLLBACK
// statements rather than database/sql's Tx, which starts a goroutine per
// transaction and per query to watch the context.
func (s *Store) inTx(ctx context.Context, fn func(tx *writeTx) (wrote bool, err error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	s.wmu.Lock()
	s.pending = append(s.pending, op)
	lead := !s.leading
	s.leading = true
	s.wmu.Unlock()
	if !lead {
		// The writer cannot leave on ctx: it may be handed the lead, which
		// it must pass on.
		select {
		case err := <-op.done:
			return err
		case <-op.lead:
		}
	}

	s.wmu.Lock()
	n := min(len(s.pending), maxBatch)
	batch := s.pending[:n:n]
	s.pending = s.pending[n:]
	s.wmu.Unlock()

	s.commitBatch(batch)

	s.wmu.Lock()
	if len(s.pending) > 0 {
		s.pending[0].lead <- struct{}{}
	} else {
		s.leading = false
		s.pending = nil
	}
	s.wmu.Unlock()
	return <-op.done
}

// commitBatch runs the writes of batch in one transaction and tells each
// its outcome.
func (s *Store) commitBatch(batch []*writeOp) {
	errs := make([]error, len(batch))
	s.commitMu.Lock()
	wrote, err := s.runBatch(batch, errs)
	s.commitMu.Unlock()
	if wrote && err == nil {
		s.walDirty.Store(true)
		s.notify()
	}
	for i, op := range batch {
		if err != nil && errs[i] == nil {
			errs[i] = err
		}
		op.done <- errs[i]
	}
}

// runBatch runs the writes of batch in one transaction, storing each
// write's own error in errs. It reports whether the transaction committed
// a change, or the error that failed the whole batch.
func (s *Store) runBatch(batch []*writeOp, errs []error) (wrote bool, err error) {
	conn, err := s.write.Conn(context.Background())
	if err != nil {
		return false, fmt.Errorf("take the write connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `BEGIN IMMEDIATE`); err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	savepoints := len(batch) > 1
	for i, op := range batch {
		if errs[i] = op.ctx.Err(); errs[i] != nil {
			continue
		}
		t := &writeTx{conn: conn, ctx: context.WithoutCancel(op.ctx)}
		if savepoints {
			if _, err = t.Exec(`SAVEPOINT write`); err != nil {
				err = fmt.Errorf("savepoint: %w", err)
				break
			}
		}
		var changed bool
		changed, errs[i] = op.fn(t)
		if errs[i] == nil && changed {
			wrote = true
		}
		if !savepoints {
			break
		}
		if errs[i] != nil || !changed {
			if _, err = t.Exec(`ROLLBACK TO write`); err != nil {
				err = fmt.Errorf("roll back to savepoint: %w", err)
				break
			}
		}
		if _, err = t.Exec(`RELEASE write`); err != nil {
			err = fmt.Errorf("release savepoint: %w", err)
			break
		}
	}
	if err == nil && wrote {
		if _, err = conn.ExecContext(context.Background(), `COMMIT`); err == nil {
			return true, nil
		}
		err = fmt.Errorf("commit: %w", err)
	}
	if _, rerr := conn.ExecContext(context.Background(), `ROLLBACK`); rerr != nil {
		// The connection is in a state not worth guessing: discard it,
		// and the pool opens a new one for the next batch.
		conn.Raw(func(any) error { return driver.ErrBadConn })
		if err == nil {
			err = fmt.Errorf("roll back: %w", rerr)
		}
	}
	return false, err
}

// nextRevision advances the store's revision counter inside tx and returns
// the new revision, which the write in tx stamps on what it changes.
func nextRevision(tx *writeTx) (int64, error) {
	var rev int64
	if err := tx.QueryRow(`UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING rev`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("advance revision: %w", err)
	}
	return rev, nil
}

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/s2"
	"time"

	"github.com/lockstep-ci/lockstep/internal/store"
)

var (
	_ store.Deliveries = (*Store)(nil)
	_ store.Pulls      = (*Store)(nil)
	_ store.Effects    = (*Store)(nil)
	_ store.Refusals   = (*Store)(nil)
)

// deliveryColumns are the columns scanDelivery reads, body excluded.
const deliveryColumns = `seq, id, event, received_at, state, rv, outcome`

// AcceptDelivery stores d as pending; it is durable when AcceptDelivery
// returns. A delivery whose ID is stored already is left alone and
// reported as a duplicate. The body is stored compressed when that makes
// it smaller (see encodeBody).
func (s *Store) AcceptDelivery(ctx context.Context, d *store.Delivery) (duplicate bool, err error) {
	if d.ID == "" || d.Event == "" {
		return false, fmt.Errorf("accept delivery: %w: id and event are required", store.ErrInvalid)
	}
	outcome, err := json.Marshal(d.Outcome)
	if err != nil {
		return false, fmt.Errorf("accept delivery %s: encode outcome: %w", d.ID, err)
	}
	received := d.ReceivedAt
	if received.IsZero() {
		received = s.clock.Now()
	}
	// Compressed here, by the caller, rather than by the server: an S2
	// block is about a seventh of a webhook payload, which is that much
	// less to send and to write to the WAL.
	body, encoding := encodeBody(d.Body)
	// One statement, pipelined with the other writes of its batch: the
	// delivery takes the next revision, and the revision row moves to it
	// only when the row was inserted, so a duplicate writes nothing and
	// needs no savepoint to be undone. (The batch holds the revision row
	// locked from its start, so no other writer moves it meanwhile.)
	err = s.inStmt(ctx, stmtWrite{
		sql: `WITH ins AS (
	INSERT INTO deliveries (id, event, received_at, state, rv, outcome, body, body_encoding)
	SELECT ?, ?, ?, ?, rev + 1, ?, ?, ? FROM revision WHERE id = 1
	ON CONFLICT (id) DO NOTHING
	RETURNING rv
), bump AS (
	UPDATE revision SET rev = ins.rv FROM ins WHERE revision.id = 1 RETURNING revision.rev
)
SELECT rev FROM bump`,
		args: []any{d.ID, d.Event, received.UnixNano(), string(store.DeliveryPending), string(outcome), body, encoding},
		result: func(row pgx.Row) (bool, error) {
			var rev int64
			err := row.Scan(&rev)
			if errors.Is(err, pgx.ErrNoRows) {
				duplicate = true
				return false, nil
			}
			if err != nil {
				return false, fmt.Errorf("insert: %w", err)
			}
			duplicate = false
			return true, nil
		},
	})
	if err != nil {
		return false, fmt.Errorf("accept delivery %s: %w", d.ID, err)
	}
	return duplicate, nil
}

// GetDelivery returns the delivery with id, body included.
func (s *Store) GetDelivery(ctx context.Context, id string) (*store.Delivery, error) {
	var (
		body     []byte
		encoding string
	)
	d, err := scanDelivery(s.queryRow(ctx, `SELECT `+deliveryColumns+`, body, body_encoding FROM deliveries WHERE id = ?`, id), &body, &encoding)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("delivery %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get delivery %s: %w", id, err)
	}
	if d.Body, err = decodeBody(body, encoding); err != nil {
		return nil, fmt.Errorf("get delivery %s: %w", id, err)
	}
	return d, nil
}

// ListDeliveries returns deliveries newest first, without bodies.
func (s *Store) ListDeliveries(ctx context.Context, opts store.DeliveryListOptions) (store.DeliveryPage, error) {
	limit := opts.Limit
	switch {
	case limit <= 0:
		limit = store.DefaultLimit
	case limit > store.MaxLimit:
		limit = store.MaxLimit
	}
	query := `SELECT ` + deliveryColumns + ` FROM deliveries WHERE 1=1`
	var args []any
	if opts.Continue != "" {
		after, err := decodeContinue(opts.Continue)
		if err != nil {
			return store.DeliveryPage{}, fmt.Errorf("list deliveries: %w", err)
		}
		query += ` AND seq < ?`
		args = append(args, after)
	}
	if opts.State != "" {
		query += ` AND state = ?`
		args = append(args, string(opts.State))
	}
	if opts.Event != "" {
		query += ` AND event = ?`
		args = append(args, opts.Event)
	}
	query += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return store.DeliveryPage{}, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	var page store.DeliveryPage
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return store.DeliveryPage{}, fmt.Errorf("list deliveries: %w", err)
		}
		page.Deliveries = append(page.Deliveries, d)
	}
	if err := rows.Err(); err != nil {
		return store.DeliveryPage{}, fmt.Errorf("list deliveries: %w", err)
	}
	if len(page.Deliveries) > limit {
		page.Deliveries = page.Deliveries[:limit]
		page.Continue = encodeContinue(page.Deliveries[limit-1].Seq)
	}
	return page, nil
}

// FinishDelivery records the outcome of a pending delivery.
func (s *Store) FinishDelivery(ctx context.Context, id string, state store.DeliveryState, outcome store.Outcome) error {
	if state != store.DeliveryDone && state != store.DeliveryFailed {
		return fmt.Errorf("finish delivery %s: %w: state %q is not done or failed", id, store.ErrInvalid, state)
	}
	enc, err := json.Marshal(outcome)
	if err != nil {
		return fmt.Errorf("finish delivery %s: encode outcome: %w", id, err)
	}
	var found bool
	// One statement, pipelined with the other writes of its batch: the
	// delivery moves on, taking the next revision, only if it is pending;
	// the statement returns the state it was in (no row if there is no
	// such delivery).
	err = s.inStmt(ctx, stmtWrite{
		sql: `WITH cur AS (
	SELECT state FROM deliveries WHERE id = ?
), upd AS (
	UPDATE deliveries SET state = ?, outcome = ?, rv = (SELECT rev + 1 FROM revision WHERE id = 1)
	WHERE id = ? AND state = 'pending'
	RETURNING rv
), bump AS (
	UPDATE revision SET rev = upd.rv FROM upd WHERE revision.id = 1
)
SELECT cur.state, EXISTS (SELECT 1 FROM upd) FROM cur`,
		args: []any{id, string(state), string(enc), id},
		result: func(row pgx.Row) (bool, error) {
			var cur string
			var updated bool
			err := row.Scan(&cur, &updated)
			if errors.Is(err, pgx.ErrNoRows) {
				found = false
				return false, nil
			}
			if err != nil {
				return false, err
			}
			found = true
			if !updated {
				return false, fmt.Errorf("delivery is %s already: %w", cur, store.ErrConflict)
			}
			return true, nil
		},
	})
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("finish delivery %s: %w", id, err)
	}
	return nil
}

// WatchDeliveries calls fn with every delivery written after revision
// from, in revision order, without bodies.
func (s *Store) WatchDeliveries(ctx context.Context, from int64, fn func(*store.Delivery) error) error {
	return s.watch(ctx, from, func(from int64) (int64, int, error) {
		rows, err := s.query(ctx, `SELECT `+deliveryColumns+` FROM deliveries WHERE rv > ? ORDER BY rv LIMIT ?`, from, watchBatch)
		if err != nil {
			return from, 0, err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			d, err := scanDelivery(rows)
			if err != nil {
				return from, n, err
			}
			if err := fn(d); err != nil {
				return from, n, errStop{err}
			}
			from = d.ResourceVersion
			n++
		}
		return from, n, rows.Err()
	})
}

// errStop carries the error of a watch callback, which ends the watch as
// it is, unwrapped.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// watch runs one query after another, each reading up to watchBatch rows
// written after revision from and returning the last revision it passed
// on; when a query finds less than a batch, it waits for a write in this
// process, the poll interval, or ctx.
func (s *Store) watch(ctx context.Context, from int64, next func(from int64) (int64, int, error)) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		changed := s.changes()
		var (
			n   int
			err error
		)
		from, n, err = next(from)
		var stop errStop
		if errors.As(err, &stop) {
			return stop.err
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch after revision %d: %w", from, err)
		}
		if n == watchBatch {
			continue
		}
		timer := s.clock.NewTimer(s.poll)
		select {
		case <-ctx.Done():
		case <-changed:
		case <-timer.C():
		}
		timer.Stop()
	}
}

// scanDelivery reads the deliveryColumns of a row and, if dest is given,
// the columns that follow them into dest.
func scanDelivery(sc scanner, dest ...any) (*store.Delivery, error) {
	var (
		d        store.Delivery
		received int64
		state    string
		outcome  []byte
	)
	cols := append([]any{&d.Seq, &d.ID, &d.Event, &received, &state, &d.ResourceVersion, &outcome}, dest...)
	if err := sc.Scan(cols...); err != nil {
		return nil, err
	}
	d.ReceivedAt = time.Unix(0, received).UTC()
	d.State = store.DeliveryState(state)
	if err := json.Unmarshal(outcome, &d.Outcome); err != nil {
		return nil, fmt.Errorf("decode outcome of delivery %s: %w", d.ID, err)
	}
	return &d, nil
}

// GetPullState returns the stored state of a pull request.
func (s *Store) GetPullState(ctx context.Context, repo string, number int) (*store.PullState, error) {
	var (
		rv   int64
		data []byte
	)
	err := s.queryRow(ctx, `SELECT rv, data FROM pulls WHERE repo = ? AND number = ?`, repo, number).Scan(&rv, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("pull request %s#%d: %w", repo, number, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get pull request %s#%d: %w", repo, number, err)
	}
	var p store.PullState
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("decode pull request %s#%d: %w", repo, number, err)
	}
	p.ResourceVersion = rv
	return &p, nil
}

// PutPullState creates or replaces a pull request's state with CAS on its
// ResourceVersion.
func (s *Store) PutPullState(ctx context.Context, p *store.PullState) (*store.PullState, error) {
	if p.Repo == "" || p.Number <= 0 {
		return nil, fmt.Errorf("put pull request: %w: repo and number are required", store.ErrInvalid)
	}
	out := *p
	// The stored data leaves out the version, which the rv column holds
	// (and reads put back): the statement takes it.
	bare := *p
	bare.ResourceVersion = 0
	data, err := json.Marshal(bare)
	if err != nil {
		return nil, fmt.Errorf("put pull request %s#%d: encode: %w", p.Repo, p.Number, err)
	}
	var sentinel error
	// One statement, pipelined with the other writes of its batch: the
	// state is written, taking the next revision, only if the version
	// written is the stored one (0 for none); the statement returns the
	// stored version and the new one (NULL if it wrote nothing).
	err = s.inStmt(ctx, stmtWrite{
		sql: `WITH cur AS (
	SELECT rv FROM pulls WHERE repo = ? AND number = ?
), ok AS (
	SELECT 1 WHERE (?::bigint = 0 AND NOT EXISTS (SELECT 1 FROM cur))
		OR EXISTS (SELECT 1 FROM cur WHERE rv = ?::bigint AND rv <> 0)
), ins AS (
	INSERT INTO pulls (repo, number, rv, data)
	SELECT ?, ?, rev + 1, ? FROM revision, ok WHERE revision.id = 1
	ON CONFLICT (repo, number) DO UPDATE SET rv = excluded.rv, data = excluded.data
	RETURNING rv
), bump AS (
	UPDATE revision SET rev = ins.rv FROM ins WHERE revision.id = 1
)
SELECT (SELECT rv FROM cur), (SELECT rv FROM ins)`,
		args: []any{p.Repo, p.Number, p.ResourceVersion, p.ResourceVersion, p.Repo, p.Number, data},
		result: func(row pgx.Row) (bool, error) {
			var cur, rev *int64
			if err := row.Scan(&cur, &rev); err != nil {
				return false, err
			}
			switch {
			case rev != nil:
				out.ResourceVersion = *rev
				return true, nil
			case cur == nil:
				sentinel = store.ErrNotFound
			case p.ResourceVersion == 0:
				sentinel = store.ErrAlreadyExists
			default:
				sentinel = store.ErrConflict
			}
			return false, nil
		},
	})
	if err == nil {
		err = sentinel
	}
	if err != nil {
		return nil, fmt.Errorf("put pull request %s#%d: %w", p.Repo, p.Number, err)
	}
	return &out, nil
}

// ClaimEffect claims key for a side effect done once.
func (s *Store) ClaimEffect(ctx context.Context, key string) (store.EffectState, error) {
	var state store.EffectState
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		var cur string
		err := tx.QueryRow(`SELECT state FROM effects WHERE key = ?`, key).Scan(&cur)
		if err == nil {
			state = store.EffectState(cur)
			return false, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, err
		}
		state = store.EffectNew
		_, err = tx.Exec(`INSERT INTO effects (key, state, created_at) VALUES (?, ?, ?)`, key, string(store.EffectPending), s.clock.Now().UnixNano())
		return err == nil, err
	})
	if err != nil {
		return "", fmt.Errorf("claim effect %s: %w", key, err)
	}
	return state, nil
}

// CompleteEffect marks key done.
func (s *Store) CompleteEffect(ctx context.Context, key string) error {
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		res, err := tx.Exec(`UPDATE effects SET state = ? WHERE key = ?`, string(store.EffectDone), key)
		if err != nil {
			return false, err
		}
		return res.RowsAffected() > 0, nil
	})
	if err != nil {
		return fmt.Errorf("complete effect %s: %w", key, err)
	}
	return nil
}

// ReleaseEffect forgets key.
func (s *Store) ReleaseEffect(ctx context.Context, key string) error {
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		res, err := tx.Exec(`DELETE FROM effects WHERE key = ?`, key)
		if err != nil {
			return false, err
		}
		return res.RowsAffected() > 0, nil
	})
	if err != nil {
		return fmt.Errorf("release effect %s: %w", key, err)
	}
	return nil
}

// Encodings of a stored delivery body, the deliveries.body_encoding column.
const (
	bodyAsReceived = ""
	bodyS2         = "s2" // an S2 block (github.com/klauspost/compress/s2)
)

// minCompressed is the size below which a body is stored as received.
const minCompressed = 512

// encodeBody returns what to store of body and its encoding: an S2 block
// when that is smaller, or else body itself (an empty slice for nil, the
// column being NOT NULL).
func encodeBody(body []byte) ([]byte, string) {
	if len(body) < minCompressed {
		if body == nil {
			body = []byte{}
		}
		return body, bodyAsReceived
	}
	enc := s2.Encode(nil, body)
	if len(enc) >= len(body) {
		return body, bodyAsReceived
	}
	return enc, bodyS2
}

// decodeBody returns the body stored as data with encoding.
func decodeBody(data []byte, encoding string) ([]byte, error) {
	switch encoding {
	case bodyAsReceived:
		return data, nil
	case bodyS2:
		body, err := s2.Decode(nil, data)
		if err != nil {
			return nil, fmt.Errorf("decode %s body: %w", encoding, err)
		}
		return body, nil
	default:
		return nil, fmt.Errorf("body has unknown encoding %q", encoding)
	}
}

// ListPullStates returns the stored pull requests matching opts, the most
// recently written first.
func (s *Store) ListPullStates(ctx context.Context, opts store.PullListOptions) ([]*store.PullState, error) {
	limit := opts.Limit
	switch {
	case limit <= 0:
		limit = store.DefaultLimit
	case limit > store.MaxLimit:
		limit = store.MaxLimit
	}
	query := `SELECT rv, data FROM pulls WHERE 1=1`
	var args []any
	if opts.Repo != "" {
		query += ` AND repo = ?`
		args = append(args, opts.Repo)
	}
	if opts.State != "" {
		query += ` AND data::jsonb->>'state' = ?`
		args = append(args, opts.State)
	}
	query += ` ORDER BY rv DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list pull requests: %w", err)
	}
	defer rows.Close()
	var out []*store.PullState
	for rows.Next() {
		var (
			rv   int64
			data []byte
			p    store.PullState
		)
		if err := rows.Scan(&rv, &data); err != nil {
			return nil, fmt.Errorf("list pull requests: %w", err)
		}
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("list pull requests: decode: %w", err)
		}
		p.ResourceVersion = rv
		out = append(out, &p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pull requests: %w", err)
	}
	return out, nil
}

// RecordRefusals stores refused deliveries in one write, keeping the
// newest store.MaxRefusals.
func (s *Store) RecordRefusals(ctx context.Context, rs []store.Refusal) error {
	if len(rs) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *writeTx) (bool, error) {
		for _, r := range rs {
			received := r.ReceivedAt
			if received.IsZero() {
				received = s.clock.Now()
			}
			if _, err := tx.Exec(`INSERT INTO refusals (id, event, received_at, status, outcome, message, remote) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				r.ID, r.Event, received.UnixNano(), r.Status, r.Outcome, r.Message, r.Remote); err != nil {
				return false, fmt.Errorf("insert: %w", err)
			}
		}
		if _, err := tx.Exec(`DELETE FROM refusals WHERE seq <= (SELECT max(seq) FROM refusals) - ?`, store.MaxRefusals); err != nil {
			return false, fmt.Errorf("forget the oldest: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("record %d refused deliveries: %w", len(rs), err)
	}
	return nil
}

// ListRefusals returns refused deliveries, newest first.
func (s *Store) ListRefusals(ctx context.Context, limit int, continueToken string) (store.RefusalPage, error) {
	switch {
	case limit <= 0:
		limit = store.DefaultLimit
	case limit > store.MaxLimit:
		limit = store.MaxLimit
	}
	query := `SELECT seq, id, event, received_at, status, outcome, message, remote FROM refusals`
	var args []any
	if continueToken != "" {
		after, err := decodeContinue(continueToken)
		if err != nil {
			return store.RefusalPage{}, fmt.Errorf("list refused deliveries: %w", err)
		}
		query += ` WHERE seq < ?`
		args = append(args, after)
	}
	query += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return store.RefusalPage{}, fmt.Errorf("list refused deliveries: %w", err)
	}
	defer rows.Close()
	var page store.RefusalPage
	for rows.Next() {
		var (
			r        store.Refusal
			received int64
		)
		if err := rows.Scan(&r.Seq, &r.ID, &r.Event, &received, &r.Status, &r.Outcome, &r.Message, &r.Remote); err != nil {
			return store.RefusalPage{}, fmt.Errorf("list refused deliveries: %w", err)
		}
		r.ReceivedAt = time.Unix(0, received).UTC()
		page.Refusals = append(page.Refusals, &r)
	}
	if err := rows.Err(); err != nil {
		return store.RefusalPage{}, fmt.Errorf("list refused deliveries: %w", err)
	}
	if len(page.Refusals) > limit {
		page.Refusals = page.Refusals[:limit]
		page.Continue = encodeContinue(page.Refusals[limit-1].Seq)
	}
	return page, nil
}

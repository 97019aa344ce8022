// Package postgres is lockstep's store for several replicas: the store
// interfaces of package store kept in one PostgreSQL database, which every
// replica opens.
//
// # Ordering the change feed
//
// A watcher reads "every object written after revision N", so revisions
// must be handed out in commit order: a sequence would not do, because two
// transactions may take revisions 7 and 8 and commit 8 first, and a
// watcher that saw 8 would then never read 7 (TestSequenceRevisionsSkipWrites
// shows it). Every write transaction here therefore starts by locking one
// row, revision (SELECT ... FOR UPDATE), takes its revisions by
// incrementing it, and keeps it locked until it commits or rolls back: the
// next writer, in this process or another, waits for the lock, so it takes
// its revisions only after the previous transaction has committed, and
// revisions commit in the order they are handed out
// (TestWriteWaitsForEarlierRevision). A rolled-back write gives its
// revision back. Transactions thus commit one after the other, so the
// writes of a Store that queue meanwhile share the next transaction
// (group commit, as in the SQLite store), and one WAL flush serves them
// all. Since every writer waits for the revision row, the write path
// keeps it short: the hot writes (accepting a delivery, finishing it,
// creating a run, writing a pull request's state) are one statement each
// that checks and writes at once and cannot fail on its own, so a batch
// of them is sent as one pipeline whose Sync commits it: one round trip,
// no savepoint. Other writes follow behind a savepoint each. A pipelined
// batch that fails (a fence that moved on) is run again write by write.
// The conformance suite holds the feed to 32 concurrent writers
// (WatchOrderManyWriters).
//
// Watchers are woken by NOTIFY (sent by a trigger on the revision row, so
// once per committed write transaction) through one LISTEN connection per
// Store, and by the writes made through the same Store; they also poll
// (WithPollInterval), because a notification sent while the listening
// connection is down is lost.
//
// # Fencing
//
// A write whose context carries a store.Fence (store.WithFence) checks, in
// its transaction, that the fence's lease still has the fence's term,
// holding the lease row with FOR SHARE until it commits: a replica that
// takes the lease over waits for the write to end, and once it has taken
// it, a write of the old term fails with store.ErrFenced.
//
// # Schema
//
// The schema is migrated on Open, under an advisory lock so that replicas
// starting together apply each step once; a database whose schema is newer
// than this lockstep's is refused. Tables live in the connection's
// current schema (search_path), so one database can hold several
// independent stores, as the tests do.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/utils/clock"

	"github.com/lockstep-ci/lockstep/internal/store"
)

var (
	_ store.Runs       = (*Store)(nil)
	_ store.Deliveries = (*Store)(nil)
	_ store.Pulls      = (*Store)(nil)
	_ store.Effects    = (*Store)(nil)
	_ store.Schedules  = (*Store)(nil)
	_ store.Builds     = (*Store)(nil)
	_ store.Markers    = (*Store)(nil)
	_ store.Leases     = (*Store)(nil)
	_ store.Logs       = (*Store)(nil)
)

// Store is the store interfaces of package store kept in PostgreSQL. It
// is safe for concurrent use by many goroutines and by many processes
// sharing the database. Open it with Open and release it with Close.
type Store struct {
	pool  *pgxpool.Pool
	clock clock.Clock
	poll  time.Duration
	log   *slog.Logger
	// channel is the NOTIFY channel of the store's schema.
	channel string

	// stopListen ends the listener, which then closes listenDone.
	stopListen context.CancelFunc
	listenDone chan struct{}

	// wmu guards pending and leading.
	wmu sync.Mutex
	// pending holds the writes waiting for the next transaction.
	pending []*writeOp
	// leading is true while a caller commits a batch of writes or has been
	// told to.
	leading bool

	// mu guards changed.
	mu sync.Mutex
	// changed is closed, and replaced, after every committed write seen
	// by this Store (its own, or another's through NOTIFY).
	changed chan struct{}
}

// Option changes how Open sets up a Store.
type Option func(*options)

type options struct {
	clock        clock.Clock
	pollInterval time.Duration
	logger       *slog.Logger
	maxConns     int32
	tracer       pgx.QueryTracer
}

// WithClock sets the clock that stamps CreatedAt, expires leases and times
// the watchers' polls. The default is the real clock.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithPollInterval sets how often a caught-up watcher reads the database
// even when no notification woke it. The default is DefaultPollInterval.
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.pollInterval = d } }

// WithLogger sets the logger told about a lost LISTEN connection. The
// default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMaxConns caps the connection pool, the LISTEN connection included.
// The default is DefaultMaxConns.
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

// WithTracer sets a tracer told about every query and batch the Store's
// connections send (pgx.QueryTracer, and pgx.BatchTracer if it is one):
// a benchmark counts round trips with it. The default is none.
func WithTracer(t pgx.QueryTracer) Option { return func(o *options) { o.tracer = t } }

// Defaults of the options.
const (
	DefaultPollInterval = time.Second
	DefaultMaxConns     = 16
	// idleInTxTimeout is how long the server lets a write transaction
	// wait for its client before ending it; below the shortest lease a
	// replica is given, so that a stopped leader's locks are released
	// before its lease expires.
	idleInTxTimeout = 2 * time.Second
	// connectTimeout bounds the first connection, so that an unreachable
	// server is an error at start rather than a hang.
	connectTimeout = 10 * time.Second
)

// Open connects to the PostgreSQL database at url (postgres://…) and
// brings its schema up to date. It fails with a one-line error saying what
// is wrong when the server cannot be reached, refuses the credentials, or
// holds a schema newer than this lockstep knows.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{
		clock:        clock.RealClock{},
		pollInterval: DefaultPollInterval,
		logger:       slog.Default(),
		maxConns:     DefaultMaxConns,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.pollInterval <= 0 {
		return nil, fmt.Errorf("open store: poll interval %v is not positive", o.pollInterval)
	}
	if o.maxConns < 2 {
		return nil, fmt.Errorf("open store: %d connections are too few: a store needs one to listen and one to work", o.maxConns)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open store: %s is not a PostgreSQL URL: %w", Redact(url), unwrapParse(err))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > connectTimeout {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cfg.MaxConns = o.maxConns
	// A replica stopped in the middle of a write transaction (SIGSTOP, a
	// long pause) would hold the revision row, which every replica's
	// writes wait for, and the lease row, which a new leader waits for,
	// until it runs again: the server ends such a transaction instead.
	// A URL may set another value.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.Itoa(int(idleInTxTimeout.Milliseconds()))
	}
	if o.tracer != nil {
		cfg.ConnConfig.Tracer = o.tracer
	}
	where := fmt.Sprintf("%s@%s:%d/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, connectError(where, err)
	}
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: read current schema: %w", where, err)
	}
	if schema == "" {
		pool.Close()
		return nil, fmt.Errorf("open store %s: no schema of the search_path exists: create it or fix search_path", where)
	}
	if err := migrate(ctx, pool, schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	stop, cancelListen := context.WithCancel(context.Background())
	s := &Store{
		pool:       pool,
		clock:      o.clock,
		poll:       o.pollInterval,
		log:        o.logger.With("store", where, "schema", schema),
		channel:    channelName(schema),
		stopListen: cancelListen,
		listenDone: make(chan struct{}),
		changed:    make(chan struct{}),
	}
	go s.listen(stop)
	return s, nil
}

// channelName returns the NOTIFY channel of the store in schema.
func channelName(schema string) string { return "lockstep_changes_" + schema }

// connectError turns the failure of the first connection into a one-line
// error that says what to fix.
func connectError(where string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return fmt.Errorf("open store %s: PostgreSQL refused the credentials (%s): check the user and password in the store URL", where, pgErr.Message)
		case "3D000":
			return fmt.Errorf("open store %s: the database does not exist (%s): create it first", where, pgErr.Message)
		}
		return fmt.Errorf("open store %s: %s (SQLSTATE %s)", where, pgErr.Message, pgErr.Code)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "connect") {
		return fmt.Errorf("open store %s: cannot reach PostgreSQL: %s", where, oneLine(err))
	}
	return fmt.Errorf("open store %s: %s", where, oneLine(err))
}

// oneLine returns err's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// unwrapParse returns the reason of a URL parse error, without the URL
// (and its password) pgx puts in it.
func unwrapParse(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return pe.Unwrap()
	}
	return errors.New("cannot parse it")
}

// Redact returns url with its password replaced by "xxxxx", to be logged.
func Redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return url
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// Close stops the listener and closes the pool. Watchers still running
// fail; close a Store after its users are done with it.
func (s *Store) Close() error {
	s.stopListen()
	<-s.listenDone
	s.pool.Close()
	return nil
}

// listen wakes the watchers of s at every NOTIFY of its channel, until
// ctx ends. A lost connection is taken again after a pause; meanwhile the
// watchers poll.
func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("store change notifications lost; watchers poll until they are back", "err", err, "retry_in", backoff)
		// A write may have been missed while the connection was down.
		s.notify()
		t := s.clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C():
		}
		t.Stop()
		backoff = min(2*backoff, 10*time.Second)
	}
}

// listenOnce listens on one connection until it fails or ctx ends.
func (s *Store) listenOnce(ctx context.Context) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection gets session state (LISTEN): never hand it back.
	conn := pooled.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	// Writes committed before LISTEN took effect sent nothing to us.
	s.notify()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		s.notify()
	}
}

// notify wakes every watcher waiting on the current changed channel.
func (s *Store) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// changes returns a channel closed at the next write seen. Taking it
// before reading guarantees that a write committed after the read wakes
// the reader.
func (s *Store) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.pool.QueryRow(ctx, `SELECT rev FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

// writeTx is a write transaction: it holds the revision row from its
// start, so that write transactions commit in revision order. Its queries
// take '?' placeholders, as the SQLite store's do.
type writeTx struct {
	q   querier
	ctx context.Context
}

// querier is the connection a write transaction runs on.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// QueryRow runs a query that returns at most one row.
func (t *writeTx) QueryRow(query string, args ...any) pgx.Row {
	return t.q.QueryRow(t.ctx, rebind(query), args...)
}

// Exec runs a statement that returns no rows.
func (t *writeTx) Exec(query string, args ...any) (pgconn.CommandTag, error) {
	return t.q.Exec(t.ctx, rebind(query), args...)
}

// queryRow runs a read query outside any write transaction.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) pgx.Row {
	return s.pool.QueryRow(ctx, rebind(query), args...)
}

// query runs a read query outside any write transaction.
func (s *Store) query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	return s.pool.Query(ctx, rebind(query), args...)
}

// rebind returns query with its '?' placeholders numbered as PostgreSQL
// wants them ($1, $2…). No query of this package has a '?' elsewhere.
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// nextRevision advances the store's revision counter inside tx and
// returns the new revision, which the write in tx stamps on what it
// changes. (AcceptDelivery does the same inside its INSERT, to save a
// round trip: nextRevisionSQL.)
func nextRevision(tx *writeTx) (int64, error) {
	var rev int64
	if err := tx.QueryRow(nextRevisionSQL + `SELECT rev FROM next_rev`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("advance revision: %w", err)
	}
	return rev, nil
}

// nextRevisionSQL starts a statement with the common table next_rev,
// holding the next revision, taken as the statement runs.
const nextRevisionSQL = `WITH next_rev AS (UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING rev) `

// maxBatch caps how many writes share one transaction.
const maxBatch = 128

// lockRevisionSQL takes the revision row until the transaction ends:
// batches commit in the order of their revisions.
const lockRevisionSQL = `SELECT rev FROM revision WHERE id = 1 FOR UPDATE`

// writeOp is one write waiting for, or running in, a batch.
type writeOp struct {
	ctx context.Context
	fn  func(*writeTx) (bool, error)
	// stmt, if not nil, is the write as one statement, which the batch may
	// send pipelined with the others' instead of calling fn.
	stmt *stmtWrite
	// done receives the write's outcome once its batch has committed or
	// failed.
	done chan error
	// lead tells the writer that it now commits the next batch.
	lead chan struct{}
}

// stmtWrite is a write done by one statement that cannot fail but for a
// broken connection or server, so that it needs no savepoint: its outcome
// (inserted, or found a duplicate) is in the row it returns. Such writes
// are pipelined: a batch of them costs one round trip.
type stmtWrite struct {
	// sql takes '?' placeholders.
	sql  string
	args []any
	// result reads the statement's row (Scan returns pgx.ErrNoRows if it
	// returned none) and reports, as the function given to inTx does,
	// whether the write changed anything and its error (such as
	// store.ErrConflict), which it may only report of a statement that
	// changed nothing, there being no savepoint to undo it. When the
	// statement itself failed (Scan returned
	// another error), its transaction is lost: the whole batch fails.
	result func(pgx.Row) (changed bool, err error)
}

// failedRow is a row that keeps the error of its statement, if the
// statement failed.
type failedRow struct {
	row pgx.Row
	err error
}

func (r *failedRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && r.err == nil {
		r.err = err
	}
	return err
}

// fenceSQL fails (division by zero) unless the lease named $1 is at term
// $2, and holds the lease row until the transaction ends, as checkFence
// does, for a pipelined write: the batch then fails, and is run again
// write by write (see runBatch), where checkFence says what was wrong.
const fenceSQL = `SELECT 1 / count(*) FROM (SELECT 1 FROM leases WHERE name = $1 AND term = $2 FOR SHARE) AS held`

// inStmt runs w in a write transaction, as inTx does, pipelined with the
// other such writes of its batch.
func (s *Store) inStmt(ctx context.Context, w stmtWrite) error {
	w.sql = rebind(w.sql)
	fn := func(tx *writeTx) (bool, error) {
		return w.result(tx.q.QueryRow(tx.ctx, w.sql, w.args...))
	}
	return s.write(ctx, &writeOp{ctx: ctx, fn: fn, stmt: &w})
}

// inTx runs fn in a write transaction and wakes the watchers once it has
// committed. fn reports through wrote whether it changed anything; when it
// did not, or when it fails, what it did is rolled back, the revision it
// took included. A store.Fence in ctx is checked in the transaction (see
// the package doc).
//
// Writes are committed in batches (group commit), as in the SQLite store:
// the writes that queue while a transaction commits share the next one,
// so that a burst of writes costs one commit (one WAL flush) rather than
// one each. A batch is run by one of its writers, the leader, on its own
// goroutine; when done, it hands the lead to the first waiting writer,
// who takes every write queued meanwhile. A write whose ctx ends while it
// waits is not run. How a batch is sent is runBatch's.
func (s *Store) inTx(ctx context.Context, fn func(tx *writeTx) (wrote bool, err error)) error {
	return s.write(ctx, &writeOp{ctx: ctx, fn: fn})
}

// write queues op for the next batch, runs the batch if op leads it, and
// returns op's outcome.
func (s *Store) write(ctx context.Context, op *writeOp) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op.done = make(chan error, 1)
	op.lead = make(chan struct{}, 1)
	s.wmu.Lock()
	s.pending = append(s.pending, op)
	lead := !s.leading
	s.leading = true
	s.wmu.Unlock()
	if !lead {
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
	wrote, err := s.runBatch(batch, errs)
	if wrote && err == nil {
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
//
// The revision lock and every pipelined write (stmtWrite) go to the server
// in one pgx.Batch. When the batch holds nothing else, that is the whole
// transaction, an implicit one that the pipeline's Sync commits: one
// round trip and one commit for the batch. Otherwise the pgx.Batch opens
// the transaction, and each other write follows behind a savepoint, which
// is rolled back when the write fails or changes nothing (and then serves
// the next write), so that one write's failure is its own.
//
// A pipelined write whose statement fails, or whose fence has moved on,
// fails the transaction, and so its whole batch: the batch is then run
// again with every write behind its own savepoint, so that the failure is
// only that write's.
func (s *Store) runBatch(batch []*writeOp, errs []error) (wrote bool, err error) {
	wrote, err = s.sendBatch(batch, errs, true)
	var pgErr *pgconn.PgError
	if err != nil && errors.As(err, &pgErr) {
		clear(errs)
		return s.sendBatch(batch, errs, false)
	}
	return wrote, err
}

// sendBatch runs the writes of batch in one transaction, as runBatch
// says, the writes that can be pipelined pipelined if pipeline is true.
func (s *Store) sendBatch(batch []*writeOp, errs []error, pipeline bool) (wrote bool, err error) {
	var piped, others []int
	for i, op := range batch {
		if errs[i] = op.ctx.Err(); errs[i] != nil {
			continue
		}
		if pipeline && op.stmt != nil {
			piped = append(piped, i)
		} else {
			others = append(others, i)
		}
	}
	if len(piped)+len(others) == 0 {
		return false, nil
	}
	bg := context.Background()
	conn, err := s.pool.Acquire(bg)
	if err != nil {
		return false, fmt.Errorf("acquire connection: %w", err)
	}
	// A connection released inside a transaction is closed by the pool.
	defer conn.Release()

	savepoints := len(others) > 1 || (len(others) == 1 && len(piped) > 0)
	b := &pgx.Batch{}
	if len(others) > 0 {
		b.Queue(`BEGIN`)
	}
	b.Queue(lockRevisionSQL)
	for _, i := range piped {
		op := batch[i]
		if f, ok := store.FenceFrom(op.ctx); ok {
			b.Queue(fenceSQL, f.Lease, f.Term)
		}
		b.Queue(op.stmt.sql, op.stmt.args...).QueryRow(func(row pgx.Row) error {
			fr := &failedRow{row: row}
			changed, err := op.stmt.result(fr)
			if fr.err != nil {
				return fr.err
			}
			errs[i] = err
			wrote = wrote || (changed && err == nil)
			return nil
		})
	}
	if savepoints {
		b.Queue(`SAVEPOINT write`)
	}
	if err := conn.SendBatch(bg, b).Close(); err != nil {
		return false, fmt.Errorf("write %d pipelined: %w", len(piped), err)
	}
	if len(others) == 0 {
		return wrote, nil
	}
	done := false
	defer func() {
		if !done {
			// On failure the connection is closed on release instead.
			_, _ = conn.Exec(bg, `ROLLBACK`)
		}
	}()
	// fresh is true while the savepoint open holds nothing since it was
	// set.
	fresh := true
	for _, i := range others {
		op := batch[i]
		ctx := context.WithoutCancel(op.ctx)
		if savepoints && !fresh {
			if _, err := conn.Exec(bg, `RELEASE SAVEPOINT write; SAVEPOINT write`); err != nil {
				return false, fmt.Errorf("savepoint: %w", err)
			}
		}
		fresh = false
		var changed bool
		if errs[i] = checkFence(ctx, conn); errs[i] == nil {
			changed, errs[i] = op.fn(&writeTx{q: conn, ctx: ctx})
		}
		if errs[i] == nil && changed {
			wrote = true
			continue
		}
		if !savepoints {
			// The only write: roll the transaction back.
			return false, nil
		}
		// Rolling back to a savepoint keeps it, for the next write.
		if _, err := conn.Exec(bg, `ROLLBACK TO SAVEPOINT write`); err != nil {
			return false, fmt.Errorf("roll back to savepoint: %w", err)
		}
		fresh = true
	}
	if !wrote {
		return false, nil
	}
	done = true
	if _, err := conn.Exec(bg, `COMMIT`); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

// checkFence fails with store.ErrFenced when ctx carries a fence whose
// lease has moved on to another term, and otherwise holds the lease row
// until tx ends.
func checkFence(ctx context.Context, tx querier) error {
	f, ok := store.FenceFrom(ctx)
	if !ok {
		return nil
	}
	var term int64
	err := tx.QueryRow(ctx, `SELECT term FROM leases WHERE name = $1 FOR SHARE`, f.Lease).Scan(&term)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: lease %s is not held by anyone", store.ErrFenced, f.Lease)
	}
	if err != nil {
		return fmt.Errorf("check lease %s: %w", f.Lease, err)
	}
	if term != f.Term {
		return fmt.Errorf("%w: lease %s is at term %d, the write was made under term %d", store.ErrFenced, f.Lease, term, f.Term)
	}
	return nil
}

// scanner is a pgx.Row or pgx.Rows.
type scanner interface {
	Scan(dest ...any) error
}

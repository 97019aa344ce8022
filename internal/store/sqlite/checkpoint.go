package sqlite

import (
	"context"
	"fmt"
	"time"
)

// Checkpoints. The write connection never checkpoints: a commit that did
// would copy the write-ahead log into the database file and sync both
// while every writer queued behind it. Instead a goroutine of the Store,
// the checkpointer, checkpoints through a connection of its own every
// checkpointInterval after writes, beside the writers (PASSIVE).
//
// The log restarts at its beginning only when a write transaction starts
// with the whole log copied, which a checkpoint beside busy writers never
// achieves: they add to the log while it copies. So once the log is
// walRestartFrames long, the checkpointer holds this Store's writers while
// it copies what they wrote during its last checkpoint, and the next write
// restarts the log. A reader still using the log's end can stop that
// copy; if the log reaches walMaxFrames all the same, the checkpointer
// holds the writers until the readers are done (RESTART), up to
// restartBusyTimeout, and if they are not, it does not wait for readers
// again before restartBackoff, so that a reader that stays cannot make the
// writers wait most of the time. Writers of other processes sharing the
// file are not held: when they write meanwhile, a later try restarts the
// log.
//
// Durability is that of every write in WAL mode with synchronous=NORMAL: a
// commit is in the log when it returns, and a checkpoint syncs the log
// before copying it and the database file before the log restarts.

const (
	// checkpointInterval is how often the log is checkpointed while there
	// are writes.
	checkpointInterval = 100 * time.Millisecond
	// walRestartFrames is the log length, in frames (pages), from which
	// the checkpointer makes the log restart: 64 MiB with 4 KiB pages.
	walRestartFrames = 16000
	// walMaxFrames is the log length from which the checkpointer waits
	// for readers to make the log restart.
	walMaxFrames = 4 * walRestartFrames
	// walSizeLimit is the size, in bytes, to which the write connection
	// truncates the log file when the log restarts (journal_size_limit):
	// twice the size at which it restarts, so that a log that restarts
	// as it should is never truncated and grown again.
	walSizeLimit = 2 * walRestartFrames * 4096
	// maxCatchUps is how many more checkpoints the checkpointer runs
	// beside the writers, each copying what they wrote during the one
	// before, before it holds them to make the log restart.
	maxCatchUps = 3
	// catchUpFrames is a length of log that the checkpointer copies while
	// holding the writers rather than run another checkpoint beside them.
	catchUpFrames = 256
	// restartBusyTimeout is how long a RESTART checkpoint waits for
	// readers before it gives up.
	restartBusyTimeout = 250 * time.Millisecond
	// restartBackoff is how long, after a RESTART checkpoint gave up, the
	// checkpointer goes without waiting for readers.
	restartBackoff = 10 * time.Second
)

// checkpointLoop checkpoints the log until ctx ends, then closes done.
func (s *Store) checkpointLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	failing := false
	for {
		t := s.clock.NewTimer(checkpointInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if !s.walDirty.Swap(false) {
			continue
		}
		err := s.checkpoint(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && !failing:
			s.log.Warn("checkpoint the write-ahead log; trying again", "err", err)
		case err == nil && failing:
			s.log.Info("checkpointed the write-ahead log again")
		}
		failing = err != nil
		if err != nil {
			s.walDirty.Store(true)
		}
	}
}

// walStatus is the outcome of a checkpoint.
type walStatus struct {
	// busy is true when the checkpoint could not finish.
	busy bool
	// frames is the length of the log when the checkpoint started, and
	// copied how much of it is now in the database file.
	frames, copied int64
}

// checkpoint copies the log into the database file, making the log
// restart when it is long. It marks the log dirty again if part of it is
// left to copy.
func (s *Store) checkpoint(ctx context.Context) error {
	st, err := s.walCheckpoint(ctx, "PASSIVE")
	if err != nil {
		return err
	}
	for range maxCatchUps {
		if st.frames < s.walRestart {
			break
		}
		prev := st.frames
		if st, err = s.walCheckpoint(ctx, "PASSIVE"); err != nil {
			return err
		}
		if st.frames-prev <= catchUpFrames {
			break
		}
	}
	if st.frames >= s.walRestart {
		if st, err = s.restartCheckpoint(ctx, st.frames); err != nil {
			return err
		}
	}
	if st.busy || st.copied < st.frames {
		s.walDirty.Store(true)
	}
	return nil
}

// restartCheckpoint copies the rest of a log of frames frames while this
// Store's writers wait, so that the next write restarts the log.
func (s *Store) restartCheckpoint(ctx context.Context, frames int64) (walStatus, error) {
	mode := "PASSIVE"
	if frames >= s.walMax && !s.clock.Now().Before(s.restartAfter) {
		mode = "RESTART"
	}
	s.commitMu.Lock()
	st, err := s.walCheckpoint(ctx, mode)
	s.commitMu.Unlock()
	if mode == "RESTART" && err == nil && st.busy {
		s.restartAfter = s.clock.Now().Add(restartBackoff)
	}
	return st, err
}

// walCheckpoint runs a checkpoint of mode through the checkpointer's
// connection.
func (s *Store) walCheckpoint(ctx context.Context, mode string) (walStatus, error) {
	var (
		st   walStatus
		busy int
	)
	err := s.ckpt.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &st.frames, &st.copied)
	if err != nil {
		return walStatus{}, fmt.Errorf("%s checkpoint: %w", mode, err)
	}
	st.busy = busy != 0
	return st, nil
}

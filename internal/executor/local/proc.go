package local

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// handle names an execution's process group so that it can be found again
// by a later lockstep process. Its text form, recorded as the run's
// Status.Handle, is "pgid=<pgid> start=<ticks> boot=<boot id>".
type handle struct {
	// pgid is the process group's ID, which is also the PID of its leader.
	pgid int
	// start is the leader's start time in clock ticks after boot
	// (/proc/<pid>/stat field 22). With pgid it tells the leader apart
	// from a later process that was given the same PID.
	start uint64
	// boot is the kernel's boot ID when the group was started; empty when
	// it could not be read. Start times count from boot, so a handle from
	// before a reboot never matches anything.
	boot string
}

// String returns the handle's text form.
func (h handle) String() string {
	s := fmt.Sprintf("pgid=%d start=%d", h.pgid, h.start)
	if h.boot != "" {
		s += " boot=" + h.boot
	}
	return s
}

// parseHandle parses the text form of a handle.
func parseHandle(s string) (handle, error) {
	var h handle
	var havePgid, haveStart bool
	for _, field := range strings.Fields(s) {
		key, value, ok := strings.Cut(field, "=")
		if !ok {
			return handle{}, fmt.Errorf("parse handle %q: field %q is not key=value", s, field)
		}
		switch key {
		case "pgid":
			n, err := strconv.Atoi(value)
			if err != nil || n <= 1 {
				return handle{}, fmt.Errorf("parse handle %q: invalid pgid %q", s, value)
			}
			h.pgid, havePgid = n, true
		case "start":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return handle{}, fmt.Errorf("parse handle %q: invalid start %q", s, value)
			}
			h.start, haveStart = n, true
		case "boot":
			h.boot = value
		default:
			return handle{}, fmt.Errorf("parse handle %q: unknown field %q", s, key)
		}
	}
	if !havePgid || !haveStart {
		return handle{}, fmt.Errorf("parse handle %q: want pgid and start", s)
	}
	return h, nil
}

// procStat is what lockstep reads from /proc/<pid>/stat.
type procStat struct {
	pid   int
	state byte   // field 3: R, S, D, Z…
	pgrp  int    // field 5
	start uint64 // field 22, clock ticks after boot
}

// readStat reads /proc/<pid>/stat. The error wraps fs.ErrNotExist when no
// process has that PID.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	st.pid = pid
	return st, nil
}

// parseStat parses the content of a /proc/<pid>/stat file. The command
// name (field 2) is in parentheses and may itself hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3, so field n is f[n-3].
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	pgrp, err := strconv.Atoi(f[5-3])
	if err != nil {
		return procStat{}, fmt.Errorf("invalid pgrp %q", f[5-3])
	}
	start, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("invalid start time %q", f[22-3])
	}
	return procStat{state: f[0][0], pgrp: pgrp, start: start}, nil
}

// groupMembers returns the processes whose process group is pgid.
func groupMembers(pgid int) ([]procStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var members []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // gone meanwhile, or not readable
		}
		if st.pgrp == pgid {
			members = append(members, st)
		}
	}
	return members, nil
}

// hasEnv reports whether the environment of process pid holds the entry
// kv ("NAME=value"). It reports false when the environment cannot be read
// (another user's process, or a zombie).
func hasEnv(pid int, kv string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for entry := range bytes.SplitSeq(b, []byte{0}) {
		if string(entry) == kv {
			return true
		}
	}
	return false
}

// bootID returns the kernel's boot ID, or "" when it cannot be read.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// killGroup sends SIGKILL to every process of group pgid. A group that is
// gone is not an error.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	return nil
}

// waitExited blocks until child pid has exited, without reaping it: the
// exited leader stays a zombie, which keeps its PID, and so its process
// group's ID, from being given to another process until it is reaped.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			if err != nil {
				return fmt.Errorf("wait for process %d: %w", pid, err)
			}
			return nil
		}
	}
}

// killByHandle kills the process group that h names, if it still exists
// and belongs to run runID, for an execution this process did not start.
//
// While the group's leader lives (or is an unreaped zombie), the PID h.pgid
// is its own and its start time must equal h.start; a different start time
// means the group is long gone and the PID was given to another process,
// which is left alone. When the leader is gone (lockstep's death kills it
// through Pdeathsig, so after a restart this is the usual case), the
// group's ID stays reserved for as long as any member lives, but a member
// cannot prove it belongs to this group rather than to a later group that
// reused the ID; lockstep kills the group only when a member started no
// earlier than the leader and carries LOCKSTEP_RUN_ID of runID in its
// environment.
func killByHandle(h handle, runID string, boot string) error {
	if h.boot != "" && boot != "" && h.boot != boot {
		return nil // started before a reboot: nothing of it is left
	}
	leader, err := readStat(h.pgid)
	switch {
	case err == nil:
		if leader.start != h.start {
			return nil
		}
		return killGroup(h.pgid)
	case errors.Is(err, fs.ErrNotExist):
		members, err := groupMembers(h.pgid)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.start >= h.start && hasEnv(m.pid, envRunID+"="+runID) {
				return killGroup(h.pgid)
			}
		}
		return nil
	default:
		return fmt.Errorf("find process group %d: %w", h.pgid, err)
	}
}

// Alive reports whether any process of the execution named by handle is
// still alive (zombies not counted). Operators and tests use it to check
// that nothing of a run survived.
func Alive(handle string) (bool, error) {
	h, err := parseHandle(handle)
	if err != nil {
		return false, err
	}
	members, err := groupMembers(h.pgid)
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if m.state != 'Z' && m.state != 'X' {
			return true, nil
		}
	}
	return false, nil
}

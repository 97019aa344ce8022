package local

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// executionNice is the nice value executions run at: lower than
// lockstep's own, so that however busy the jobs keep the CPUs, the
// webhook intake, the delivery processor and the controllers get CPU
// first. An idle machine still gives jobs all of it.
const executionNice = 10

// lowerPriority sets the nice value of the process group's leader pid,
// which every process it starts inherits. It is called right after the
// leader starts, before it has had the time to start anything: the
// leader's first child is forked only after its shell has read its
// script.
func lowerPriority(pid int) error {
	if err := unix.Setpriority(unix.PRIO_PROCESS, pid, executionNice); err != nil {
		return fmt.Errorf("lower the CPU priority of process %d: %w", pid, err)
	}
	return nil
}

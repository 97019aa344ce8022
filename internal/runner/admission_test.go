package runner

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/run"
)

func noJobCap(jobKey) int { return 0 }

// drain grants one slot at a time and releases it, returning the order
// in which the runs were served.
func drain(a *admission, l limits) []run.ID {
	var order []run.ID
	woken := a.pump(l)
	for len(woken) > 0 {
		id := woken[0]
		order = append(order, id)
		a.running(id, a.granted[id])
		woken = append(woken[1:], a.release(id, l)...)
	}
	return order
}

func TestAdmissionFairAndFIFO(t *testing.T) {
	t.Parallel()
	a := newAdmission()
	r1a, r1b, r2c := jobKey{"acme/one", "a", true}, jobKey{"acme/one", "b", true}, jobKey{"acme/two", "c", true}
	// A burst of job a, then two runs of b and of c; they join in a
	// scrambled order, and the queues sort them.
	for _, w := range []struct {
		id run.ID
		k  jobKey
	}{{3, r1a}, {1, r1a}, {2, r1a}, {7, r1b}, {4, r1a}, {9, r2c}, {5, r1a}, {8, r1b}, {6, r1a}, {10, r2c}} {
		a.wait(w.id, w.k)
	}
	a.wait(1, r1a) // twice is once
	got := drain(a, limits{slots: 1, jobMax: noJobCap})
	// Repositories take turns, then the jobs of a repository; oldest
	// first within a job.
	want := []run.ID{1, 9, 7, 10, 2, 8, 3, 4, 5, 6}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestAdmissionLimits(t *testing.T) {
	t.Parallel()
	a := newAdmission()
	capped, free := jobKey{"acme/one", "capped", true}, jobKey{"acme/one", "free", true}
	l := limits{slots: 3, jobMax: func(k jobKey) int {
		if k == capped {
			return 1
		}
		return 0
	}}
	a.running(100, free) // under way since before a restart
	for id := run.ID(1); id <= 4; id++ {
		a.wait(id, capped)
	}
	a.wait(5, free)
	a.wait(6, free)
	ok, woken := a.admit(2, capped, l)
	if ok {
		t.Errorf("run 2 admitted before run 1 of its job")
	}
	// Two free slots: one for capped (its cap is 1), one for free.
	if diff := cmp.Diff([]run.ID{1, 5}, woken); diff != "" {
		t.Errorf("granted (-want +got):\n%s", diff)
	}
	if full, busy := a.waitingFor(capped, l); !full || busy != 1 {
		t.Errorf("waitingFor(capped) = %v, %d; want full with 1 under way", full, busy)
	}
	if full, _ := a.waitingFor(free, l); full {
		t.Errorf("waitingFor(free) says its job is full; it is the machine that is")
	}
	if ok, _ := a.admit(1, capped, l); !ok {
		t.Errorf("run 1 holds a slot but admit says no")
	}
	a.running(1, capped)
	a.running(5, free)
	// The run from before the restart ends: its slot goes to free (the
	// capped job is at its cap).
	if diff := cmp.Diff([]run.ID{6}, a.release(100, l)); diff != "" {
		t.Errorf("granted after release (-want +got):\n%s", diff)
	}
	// A waiting run aborted while pending leaves the queue.
	a.release(3, l)
	a.running(6, free)
	if diff := cmp.Diff([]run.ID{2}, a.release(1, l)); diff != "" {
		t.Errorf("granted after run 1 ended (-want +got):\n%s", diff)
	}
	a.running(2, capped)
	if diff := cmp.Diff([]run.ID{4}, a.release(2, l)); diff != "" {
		t.Errorf("granted after run 2 ended (-want +got):\n%s", diff)
	}
	// Raising the limit grants at once; no limit grants everything.
	a.wait(7, free)
	a.wait(8, free)
	if got := a.pump(limits{slots: 0, jobMax: noJobCap}); len(got) != 2 {
		t.Errorf("no limit granted %v, want both waiting runs", got)
	}
}

// Runs of other executors (GitLab pipelines) take no slot of this
// machine, and wait only for their job's own cap.
func TestAdmissionRemoteRunsTakeNoSlot(t *testing.T) {
	t.Parallel()
	a := newAdmission()
	local, remote := jobKey{"acme/one", "unit", true}, jobKey{"acme/one", "gl", false}
	l := limits{slots: 1, jobMax: noJobCap}
	a.running(100, local) // the only slot is taken
	for id := run.ID(1); id <= 3; id++ {
		a.wait(id, remote)
	}
	a.wait(4, local)
	got := a.pump(l)
	if diff := cmp.Diff([]run.ID{1, 2, 3}, got); diff != "" {
		t.Errorf("granted (-want +got):\n%s", diff)
	}
	for _, id := range got {
		a.running(id, remote)
	}
	if diff := cmp.Diff([]run.ID{4}, a.release(100, l)); diff != "" {
		t.Errorf("granted after the local run ended (-want +got):\n%s", diff)
	}
}

package runner

import (
	"cmp"
	"slices"
	"sync"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
)

// jobKey names a job across repositories, and says whether its runs
// execute on this machine (the local executor) and so take a slot.
type jobKey struct {
	repo, job string
	local     bool
}

func keyOf(rn *run.Run) jobKey {
	e := rn.Spec.Executor
	return jobKey{rn.Spec.Refs.Repo, rn.Spec.Job, e == "" || e == config.ExecutorLocal}
}

// limits are the caps admission works under: slots local executions at
// once in all (0: no cap), and jobMax(k) runs at once of job k (0: no
// cap). Runs of other executors (GitLab pipelines) take no slot.
type limits struct {
	slots  int
	jobMax func(jobKey) int
}

// admission decides which pending runs may start. It holds, in memory,
// the runs under way (scheduled or running) and the pending runs waiting
// for one, by job in the order they were created. When a slot is free, it
// grants it to the oldest waiting run of the next job in turn: repositories
// take turns, then the jobs of a repository, so that a burst of one job
// cannot starve another; a job at its own max_concurrency is passed over.
//
// A granted run is admitted by its next reconcile, which moves it to
// scheduled and calls started. admission is only correct with one runner
// per store, which is how lockstep runs (on the elected leader at scale):
// the runner seeds it from the store when it starts.
//
// It is safe for concurrent use.
type admission struct {
	mu sync.Mutex
	// mu guards every field below.
	active  map[run.ID]jobKey // scheduled or running
	granted map[run.ID]jobKey // chosen to start, not yet scheduled
	waiting map[jobKey][]run.ID
	queued  map[run.ID]jobKey // the runs in waiting
	busy    map[jobKey]int    // active and granted runs of each job
	// local counts the active and granted runs that take a slot.
	local int
	// lastRepo and lastJob are the repository and, per repository, the
	// job that were granted a slot last: the turn passes to the next ones.
	lastRepo string
	lastJob  map[string]string
}

func newAdmission() *admission {
	return &admission{
		active:  map[run.ID]jobKey{},
		granted: map[run.ID]jobKey{},
		waiting: map[jobKey][]run.ID{},
		queued:  map[run.ID]jobKey{},
		busy:    map[jobKey]int{},
		lastJob: map[string]string{},
	}
}

// wait records a pending run as waiting for a slot, in creation order
// (run IDs increase with creation) among its job's waiting runs. It does
// nothing for a run already waiting, granted or under way. It reports
// whether the run is waiting (not granted a slot, nor under way).
func (a *admission) wait(id run.ID, k jobKey) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.waitLocked(id, k)
}

func (a *admission) waitLocked(id run.ID, k jobKey) bool {
	if _, ok := a.queued[id]; ok {
		return true
	}
	if _, ok := a.granted[id]; ok {
		return false
	}
	if _, ok := a.active[id]; ok {
		return false
	}
	q := a.waiting[k]
	i, _ := slices.BinarySearch(q, id)
	a.waiting[k] = slices.Insert(q, i, id)
	a.queued[id] = k
	return true
}

// running records a run under way (found scheduled or running).
func (a *admission) running(id run.ID, k jobKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.active[id]; ok {
		return
	}
	a.unqueueLocked(id)
	if g, ok := a.granted[id]; ok {
		delete(a.granted, id)
		k = g
	} else {
		a.busy[k]++
		if k.local {
			a.local++
		}
	}
	a.active[id] = k
}

// admit asks for a slot for pending run id of job k. It grants free slots
// to waiting runs in turn (rn's included, if not yet waiting) and returns
// whether id holds one, and the other runs granted one now, to be
// reconciled.
func (a *admission) admit(id run.ID, k jobKey, l limits) (bool, []run.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waitLocked(id, k)
	woken := a.grantLocked(l)
	_, ok := a.granted[id]
	if ok {
		woken = slices.DeleteFunc(woken, func(w run.ID) bool { return w == id })
	}
	return ok, woken
}

// release forgets a run that ended, or that is no longer pending without
// having been started here, and returns the runs granted the slots this
// frees.
func (a *admission) release(id run.ID, l limits) []run.ID {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unqueueLocked(id)
	for _, m := range []map[run.ID]jobKey{a.active, a.granted} {
		if k, ok := m[id]; ok {
			delete(m, id)
			if a.busy[k]--; a.busy[k] <= 0 {
				delete(a.busy, k)
			}
			if k.local {
				a.local--
			}
		}
	}
	return a.grantLocked(l)
}

// pump grants the slots that are free, for instance after the limits were
// raised, and returns the runs granted one.
func (a *admission) pump(l limits) []run.ID {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grantLocked(l)
}

// waitingFor says why waiting run id of job k has no slot: its job is at
// its own cap (the job's count of runs under way is returned), or the
// machine is.
func (a *admission) waitingFor(k jobKey, l limits) (jobFull bool, busy int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	max := l.jobMax(k)
	return max > 0 && a.busy[k] >= max, a.busy[k]
}

func (a *admission) unqueueLocked(id run.ID) {
	k, ok := a.queued[id]
	if !ok {
		return
	}
	delete(a.queued, id)
	q := a.waiting[k]
	if i, found := slices.BinarySearch(q, id); found {
		q = slices.Delete(q, i, i+1)
	}
	if len(q) == 0 {
		delete(a.waiting, k)
	} else {
		a.waiting[k] = q
	}
}

func (a *admission) grantLocked(l limits) []run.ID {
	var woken []run.ID
	for {
		k, ok := a.nextLocked(l)
		if !ok {
			break
		}
		id := a.waiting[k][0]
		a.unqueueLocked(id)
		a.granted[id] = k
		a.busy[k]++
		if k.local {
			a.local++
		}
		a.lastRepo, a.lastJob[k.repo] = k.repo, k.job
		woken = append(woken, id)
	}
	return woken
}

// nextLocked returns the job whose turn it is: the first eligible job
// (waiting runs, under its own cap, and a free slot if it is local) after
// the last one served, repository
// by repository, job by job, in name order and round.
func (a *admission) nextLocked(l limits) (jobKey, bool) {
	if len(a.waiting) == 0 {
		return jobKey{}, false
	}
	slotFree := l.slots <= 0 || a.local < l.slots
	var eligible []jobKey
	for k := range a.waiting {
		if max := l.jobMax(k); (max <= 0 || a.busy[k] < max) && (slotFree || !k.local) {
			eligible = append(eligible, k)
		}
	}
	if len(eligible) == 0 {
		return jobKey{}, false
	}
	slices.SortFunc(eligible, func(x, y jobKey) int {
		return cmp.Or(cmp.Compare(x.repo, y.repo), cmp.Compare(x.job, y.job))
	})
	// The repository after the last one served, cyclically.
	repo := eligible[0].repo
	for _, k := range eligible {
		if k.repo > a.lastRepo {
			repo = k.repo
			break
		}
	}
	// Within it, the job after the last one served there, cyclically.
	var first *jobKey
	last := a.lastJob[repo]
	for i, k := range eligible {
		if k.repo != repo {
			continue
		}
		if first == nil {
			first = &eligible[i]
		}
		if k.job > last {
			return k, true
		}
	}
	return *first, true
}

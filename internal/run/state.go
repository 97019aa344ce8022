package run

import "fmt"

// State is where a run is in its life.
type State string

// The states of a run. Success, Failure, Error and Aborted are terminal.
const (
	Pending   State = "pending"   // created, waiting for admission
	Scheduled State = "scheduled" // admitted under max_concurrency, being started
	Running   State = "running"   // started on an executor
	Success   State = "success"   // the job's script exited 0
	Failure   State = "failure"   // the job's script exited non-zero
	Error     State = "error"     // lockstep or its infrastructure failed; Reason says how
	Aborted   State = "aborted"   // stopped on purpose: superseded, timed out, or by a person
)

// States lists every state in life order.
var States = []State{Pending, Scheduled, Running, Success, Failure, Error, Aborted}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// Terminal reports whether s is a final state: a run in it never changes
// state again.
func (s State) Terminal() bool {
	switch s {
	case Success, Failure, Error, Aborted:
		return true
	}
	return false
}

// Active reports whether a run in s counts against its job's
// max_concurrency.
func (s State) Active() bool { return s == Scheduled || s == Running }

// CanTransition reports whether a run may go from state from to state to.
// Staying in the same non-terminal state is allowed (a status update that
// changes only conditions); terminal states never change.
func CanTransition(from, to State) bool {
	if !from.Valid() || !to.Valid() || from.Terminal() {
		return false
	}
	if from == to {
		return true
	}
	switch from {
	case Pending:
		// A pending run can be admitted, or end before it starts: aborted,
		// or an error found while admitting it.
		return to == Scheduled || to == Aborted || to == Error
	case Scheduled:
		return to == Running || to == Aborted || to == Error
	case Running:
		return to.Terminal()
	}
	return false
}

// TransitionError is returned when a caller asks for a transition that
// CanTransition forbids.
type TransitionError struct {
	From, To State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("run state cannot go from %s to %s", e.From, e.To)
}

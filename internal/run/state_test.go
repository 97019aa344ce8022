package run

import "testing"

func TestCanTransition(t *testing.T) {
	t.Parallel()
	// allowed lists every permitted (from, to) pair; everything else is
	// forbidden.
	allowed := map[[2]State]bool{
		{Pending, Pending}:     true,
		{Pending, Scheduled}:   true,
		{Pending, Aborted}:     true,
		{Pending, Error}:       true,
		{Scheduled, Scheduled}: true,
		{Scheduled, Running}:   true,
		{Scheduled, Aborted}:   true,
		{Scheduled, Error}:     true,
		{Running, Running}:     true,
		{Running, Success}:     true,
		{Running, Failure}:     true,
		{Running, Error}:       true,
		{Running, Aborted}:     true,
	}
	all := append(append([]State{}, States...), "", "bogus")
	for _, from := range all {
		for _, to := range all {
			want := allowed[[2]State{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%q, %q) = %v, want %v", from, to, got, want)
			}
		}
	}
}

func TestTerminalStatesNeverChange(t *testing.T) {
	t.Parallel()
	for _, from := range States {
		if !from.Terminal() {
			continue
		}
		for _, to := range States {
			if CanTransition(from, to) {
				t.Errorf("terminal state %s may go to %s", from, to)
			}
		}
	}
}

func TestStateClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s                       State
		valid, terminal, active bool
	}{
		{Pending, true, false, false},
		{Scheduled, true, false, true},
		{Running, true, false, true},
		{Success, true, true, false},
		{Failure, true, true, false},
		{Error, true, true, false},
		{Aborted, true, true, false},
		{"weird", false, false, false},
	}
	for _, tt := range tests {
		if got := tt.s.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %v, want %v", tt.s, got, tt.valid)
		}
		if got := tt.s.Terminal(); got != tt.terminal {
			t.Errorf("%q.Terminal() = %v, want %v", tt.s, got, tt.terminal)
		}
		if got := tt.s.Active(); got != tt.active {
			t.Errorf("%q.Active() = %v, want %v", tt.s, got, tt.active)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	tests := []struct{ got, want string }{
		{AutoKey("acme/widget", 7, "abc", "unit"), "acme/widget#7@abc/unit/auto"},
		{RequestKey("acme/widget", 7, "abc", "unit", "c123"), "acme/widget#7@abc/unit/c123"},
		{PostsubmitKey("acme/widget", "abc", "unit"), "acme/widget@abc/unit"},
		{RerunKey(42, "r1"), "rerun/42/r1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestSetCondition(t *testing.T) {
	t.Parallel()
	var s Status
	if !s.SetCondition(Condition{Type: "Admitted", Status: true, Reason: "Capacity"}) {
		t.Fatal("adding a condition reported no change")
	}
	if s.SetCondition(Condition{Type: "Admitted", Status: true, Reason: "Capacity"}) {
		t.Error("setting an identical condition reported a change")
	}
	if !s.SetCondition(Condition{Type: "Admitted", Status: false, Reason: "AtCapacity"}) {
		t.Error("changing a condition reported no change")
	}
	if c, ok := s.Condition("Admitted"); !ok || c.Reason != "AtCapacity" || len(s.Conditions) != 1 {
		t.Errorf("Condition = %+v, %v; conditions %v", c, ok, s.Conditions)
	}
}

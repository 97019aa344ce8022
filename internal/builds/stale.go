package builds

import (
	"fmt"
	"strings"
	"time"

	"github.com/lockstep-ci/lockstep/internal/config"
	"github.com/lockstep-ci/lockstep/internal/run"
	"github.com/lockstep-ci/lockstep/internal/store"
)

// observation is what a marker's staleness depends on besides the clock.
type observation struct {
	// build is the build the marker names; nil when it names none.
	build *store.Build
	// newer counts the builds of the branch newer than build; newest is
	// the newest of them.
	newer  int
	newest *store.Build
	// gateFailures counts the gate's finished runs that failed since its
	// last success, among the gateRuns looked at; gateFailingSince is
	// when the first of them was created.
	gateRuns         int
	gateFailures     int
	gateFailingSince *time.Time
}

// evaluation is what evaluate concluded about a marker.
type evaluation struct {
	stale   bool
	reason  string
	message string
	obs     observation
	buildID int64
	// recheck is when the conclusion changes by itself, as the marker
	// ages past max_age; zero when it does not.
	recheck time.Duration
}

// evaluate decides whether marker m, configured as mc, is stale at now.
// It is stale when it has named its build for longer than max_age, or
// when newer builds exist and the gate's last max_gate_failures finished
// runs all failed.
func evaluate(mc config.Marker, m *store.Marker, obs observation, now time.Time) evaluation {
	ev := evaluation{obs: obs, buildID: m.BuildID}
	age := m.Age(now)
	maxAge := mc.MaxAge.Duration
	byAge := maxAge > 0 && age > maxAge
	maxFail := mc.EffectiveMaxGateFailures()
	byGate := maxFail > 0 && obs.newer > 0 && obs.gateFailures >= maxFail
	ev.stale = byAge || byGate
	switch {
	case byAge:
		ev.reason = ReasonMaxAgeExceeded
	case byGate:
		ev.reason = ReasonGateFailing
	case m.BuildID == 0:
		ev.reason = ReasonNoBuild
	default:
		ev.reason = ReasonFresh
	}
	if maxAge > 0 && !byAge {
		ev.recheck = maxAge - age + time.Millisecond
	}

	var parts []string
	switch {
	case m.BuildID == 0:
		parts = append(parts, fmt.Sprintf("marker %s names no build yet (created %s ago)", mc.Name, human(age)))
	case byAge:
		parts = append(parts, fmt.Sprintf("marker %s has named build %s for %s, longer than its max_age of %s",
			mc.Name, m.Version, human(age), maxAge))
	default:
		parts = append(parts, fmt.Sprintf("marker %s has named build %s for %s", mc.Name, m.Version, human(age)))
	}
	switch {
	case obs.gateFailures > 0:
		parts = append(parts, fmt.Sprintf("gate job %s failed %d %s since %s", mc.Gate, obs.gateFailures,
			plural(obs.gateFailures, "time", "times"), obs.gateFailingSince.UTC().Format(time.DateOnly)))
	case obs.gateRuns == 0:
		parts = append(parts, fmt.Sprintf("gate job %s has no finished runs", mc.Gate))
	}
	if obs.newest != nil {
		newer := fmt.Sprintf("%d newer %s", obs.newer, plural(obs.newer, "build", "builds"))
		if obs.build != nil {
			parts = append(parts, fmt.Sprintf("newest build %s is %s newer (%s)",
				obs.newest.Version, human(obs.newest.CreatedAt.Sub(obs.build.CreatedAt)), newer))
		} else {
			parts = append(parts, fmt.Sprintf("newest build %s was made %s ago (%s)",
				obs.newest.Version, human(now.Sub(obs.newest.CreatedAt)), newer))
		}
	} else if m.BuildID != 0 {
		parts = append(parts, "no newer build")
	}
	ev.message = strings.Join(parts, "; ")
	return ev
}

// status returns old with the conclusions of ev: the Stale condition
// (its time kept while nothing about it changes) and the observations.
func (ev evaluation) status(old store.MarkerStatus, now time.Time) store.MarkerStatus {
	st := run.Status{Conditions: append([]run.Condition(nil), old.Conditions...)}
	since := now
	if was, ok := st.Condition(ConditionStale); ok && was.Status == ev.stale {
		since = was.Time // the time of the last transition
	}
	st.SetCondition(run.Condition{Type: ConditionStale, Status: ev.stale, Reason: ev.reason, Message: ev.message, Time: since})
	out := store.MarkerStatus{
		ObservedBuildID: ev.buildID,
		Conditions:      st.Conditions,
		NewerBuilds:     ev.obs.newer,
		GateFailures:    ev.obs.gateFailures,
	}
	if ev.obs.gateFailingSince != nil {
		t := *ev.obs.gateFailingSince
		out.GateFailingSince = &t
	}
	if b := ev.obs.newest; b != nil {
		t := b.CreatedAt
		out.NewestBuildID, out.NewestVersion, out.NewestAt = b.ID, b.Version, &t
	}
	return out
}

// Staleness is whether a marker is stale at some time, and why.
type Staleness struct {
	Stale   bool
	Reason  string
	Message string
	Age     time.Duration
}

// MarkerStaleness returns whether m, configured as mc, is stale at now
// for a consumer whose max_age is maxAge (zero: the marker's own). It
// combines the age, checked against the clock, with the Stale condition
// the Controller recorded, when that condition was observed for the
// build m names.
func MarkerStaleness(mc config.Marker, m *store.Marker, maxAge time.Duration, now time.Time) Staleness {
	s := Staleness{Age: m.Age(now), Reason: ReasonFresh}
	if m.BuildID == 0 {
		s.Reason = ReasonNoBuild
	}
	if cond, ok := (&run.Status{Conditions: m.Status.Conditions}).Condition(ConditionStale); ok && m.Status.ObservedBuildID == m.BuildID {
		s.Message = cond.Message
		if cond.Status {
			s.Stale, s.Reason = true, cond.Reason
		}
	}
	if maxAge <= 0 {
		maxAge = mc.MaxAge.Duration
	}
	if maxAge > 0 && s.Age > maxAge && !(s.Stale && s.Reason == ReasonMaxAgeExceeded) {
		what := "no build"
		if m.BuildID != 0 {
			what = "build " + m.Version
		}
		msg := fmt.Sprintf("marker %s has named %s for %s, longer than the max_age of %s", mc.Name, what, human(s.Age), maxAge)
		s.Stale, s.Reason = true, ReasonMaxAgeExceeded
		s.Message = strings.TrimSuffix(msg+"; "+s.Message, "; ")
	}
	return s
}

// human writes d in the largest whole unit that fits: "18 days",
// "5 hours", "1 minute".
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d >= 48*time.Hour:
		n := int(d / (24 * time.Hour))
		return fmt.Sprintf("%d days", n)
	case d >= 24*time.Hour:
		return "1 day"
	case d >= time.Hour:
		n := int(d / time.Hour)
		return fmt.Sprintf("%d %s", n, plural(n, "hour", "hours"))
	case d >= time.Minute:
		n := int(d / time.Minute)
		return fmt.Sprintf("%d %s", n, plural(n, "minute", "minutes"))
	}
	n := int(d / time.Second)
	return fmt.Sprintf("%d %s", n, plural(n, "second", "seconds"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

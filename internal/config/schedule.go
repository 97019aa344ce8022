package config

import (
	"errors"
	"fmt"
	"time"
)

// The concurrency policies of a periodic: what to do when its schedule
// fires while a previous run is unfinished.
const (
	// ConcurrencyForbid skips the new run (the default).
	ConcurrencyForbid = "forbid"
	// ConcurrencyAllow starts the new run beside the old one.
	ConcurrencyAllow = "allow"
	// ConcurrencyReplace aborts the old run and starts the new one.
	ConcurrencyReplace = "replace"
)

// Schedule tells when a periodic fires next. Next returns the first fire
// time strictly after t, in t's location. robfig/cron's Schedule has the
// same shape.
type Schedule interface {
	Next(t time.Time) time.Time
}

// intervalSchedule fires every period, counted from the previous fire.
type intervalSchedule time.Duration

// Next returns t plus the interval.
func (s intervalSchedule) Next(t time.Time) time.Time { return t.Add(time.Duration(s)) }

// Schedule returns when p fires: for an interval, the previous fire time
// plus the interval; for a cron expression, its next match in TimeZone
// (UTC by default). On a validated Config it returns the schedule
// compiled by Validate and never fails.
func (p Periodic) Schedule() (Schedule, error) {
	if p.schedule != nil {
		return p.schedule, nil
	}
	switch {
	case p.Cron != "" && (p.Interval.bad || p.Interval.Duration != 0):
		return nil, fmt.Errorf("periodic %s: interval and cron are mutually exclusive", p.Name)
	case p.Cron != "":
		loc := time.UTC
		if p.TimeZone != "" {
			l, err := time.LoadLocation(p.TimeZone)
			if err != nil {
				return nil, fmt.Errorf("periodic %s: %w", p.Name, err)
			}
			loc = l
		}
		s, err := parseCron(p.Cron)
		if err != nil {
			return nil, fmt.Errorf("periodic %s: %w", p.Name, err)
		}
		s.Location = loc
		return s, nil
	case p.Interval.bad:
		return nil, fmt.Errorf("periodic %s: %s", p.Name, p.Interval.problem())
	case p.Interval.Duration > 0:
		return intervalSchedule(p.Interval.Duration), nil
	}
	return nil, errors.New("periodic " + p.Name + ": no positive interval and no cron")
}

// EffectiveConcurrencyPolicy returns ConcurrencyPolicy, or
// ConcurrencyForbid when it is empty.
func (p Periodic) EffectiveConcurrencyPolicy() string {
	if p.ConcurrencyPolicy == "" {
		return ConcurrencyForbid
	}
	return p.ConcurrencyPolicy
}

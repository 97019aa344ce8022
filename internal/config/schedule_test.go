package config

import (
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	t.Parallel()
	in := repo(`    periodics:
      - {name: hourly, run: x, interval: 1h}
      - {name: ninety, run: x, interval: 1h30m}
      - {name: utc-3am, run: x, cron: "0 3 * * *"}
      - {name: paris-3am, run: x, cron: "0 3 * * *", time_zone: Europe/Paris}
      - {name: ny-weekdays, run: x, cron: "30 9 * * 1-5", time_zone: America/New_York}
      - {name: daily, run: x, cron: "@daily"}
      - {name: every-15, run: x, cron: "*/15 * * * *"}
`)
	utc := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		job        string
		prev, want time.Time
	}{
		{"hourly", utc("2026-03-01T10:17:05Z"), utc("2026-03-01T11:17:05Z")},
		{"ninety", utc("2026-03-01T23:00:00Z"), utc("2026-03-02T00:30:00Z")},
		{"utc-3am", utc("2026-03-01T02:59:59Z"), utc("2026-03-01T03:00:00Z")},
		{"utc-3am", utc("2026-03-01T03:00:00Z"), utc("2026-03-02T03:00:00Z")}, // strictly after
		// Paris is UTC+1 in winter, UTC+2 in summer (from 2026-03-29).
		{"paris-3am", utc("2026-03-01T00:00:00Z"), utc("2026-03-01T02:00:00Z")},
		{"paris-3am", utc("2026-07-01T00:00:00Z"), utc("2026-07-01T01:00:00Z")},
		// 2026-03-06 is a Friday: the next weekday 9:30 in New York (UTC-5)
		// is Monday 2026-03-09, after the DST change (UTC-4).
		{"ny-weekdays", utc("2026-03-06T15:00:00Z"), utc("2026-03-09T13:30:00Z")},
		{"ny-weekdays", utc("2026-03-04T12:00:00Z"), utc("2026-03-04T14:30:00Z")},
		{"daily", utc("2026-03-01T12:00:00Z"), utc("2026-03-02T00:00:00Z")},
		{"every-15", utc("2026-03-01T12:14:59Z"), utc("2026-03-01T12:15:00Z")},
	}
	for how, r := range bothWays(t, in) {
		for _, tt := range tests {
			p, ok := r.Periodic(tt.job)
			if !ok {
				t.Fatalf("no job %s", tt.job)
			}
			s, err := p.Schedule()
			if err != nil {
				t.Fatalf("%s: %s.Schedule(): %v", how, tt.job, err)
			}
			if got := s.Next(tt.prev); !got.Equal(tt.want) {
				t.Errorf("%s: %s.Next(%v) = %v, want %v", how, tt.job, tt.prev, got.UTC(), tt.want)
			}
		}
	}
}

func TestScheduleKeepsLocation(t *testing.T) {
	t.Parallel()
	c := mustLoad(t, repo("    periodics:\n      - {name: p, run: x, cron: '0 3 * * *', time_zone: Asia/Tokyo}\n"))
	p, _ := c.Repos["acme/widget"].Periodic("p")
	s, err := p.Schedule()
	if err != nil {
		t.Fatal(err)
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	prev := time.Date(2026, 3, 1, 12, 0, 0, 0, paris) // 20:00 in Tokyo
	got := s.Next(prev)
	if got.Location() != paris {
		t.Errorf("Next returned a time in %v, want %v", got.Location(), paris)
	}
	if want := time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC); !got.Equal(want) { // 03:00 JST
		t.Errorf("Next(%v) = %v, want %v", prev, got, want)
	}
}

func TestScheduleErrorsWithoutValidate(t *testing.T) {
	t.Parallel()
	tests := []Periodic{
		{JobBase: JobBase{Name: "none"}},
		{JobBase: JobBase{Name: "both"}, Interval: Duration{Duration: time.Hour}, Cron: "@daily"},
		{JobBase: JobBase{Name: "bad-cron"}, Cron: "nope"},
		{JobBase: JobBase{Name: "bad-zone"}, Cron: "@daily", TimeZone: "Nowhere/Land"},
		{JobBase: JobBase{Name: "bad-interval"}, Interval: Duration{raw: "1d", bad: true}},
	}
	for _, p := range tests {
		if s, err := p.Schedule(); err == nil {
			t.Errorf("%s.Schedule() = %v, nil; want an error", p.Name, s)
		}
	}
}

func TestEffectiveConcurrencyPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ConcurrencyForbid},
		{ConcurrencyForbid, ConcurrencyForbid},
		{ConcurrencyAllow, ConcurrencyAllow},
		{ConcurrencyReplace, ConcurrencyReplace},
	}
	for _, tt := range tests {
		if got := (Periodic{ConcurrencyPolicy: tt.in}).EffectiveConcurrencyPolicy(); got != tt.want {
			t.Errorf("EffectiveConcurrencyPolicy(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

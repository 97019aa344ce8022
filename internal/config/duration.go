package config

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// UnmarshalYAML reads a Go duration string. A string that does not parse
// is kept, not refused, so that Validate reports it with its path along
// with every other problem; a mapping or a list is a type error.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: expected a duration such as \"30m\", got %s", n.Line, kindName(n))}}
	}
	if n.ShortTag() == "!!null" {
		*d = Duration{}
		return nil
	}
	return d.UnmarshalText([]byte(n.Value))
}

// UnmarshalText reads a Go duration string, keeping one that does not
// parse for Validate to report. It never fails.
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	v, err := time.ParseDuration(s)
	if err != nil {
		*d = Duration{raw: s, bad: true}
		return nil
	}
	*d = Duration{Duration: v}
	return nil
}

// MarshalText writes d as a Go duration string, or as written when it did
// not parse.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// String returns d as a Go duration string ("1h30m0s"), or as written
// when it did not parse.
func (d Duration) String() string {
	if d.bad {
		return d.raw
	}
	return d.Duration.String()
}

// Valid reports whether d parsed.
func (d Duration) Valid() bool { return !d.bad }

// problem returns what Validate reports about d, or "" when it parsed.
func (d Duration) problem() string {
	if !d.bad {
		return ""
	}
	msg := fmt.Sprintf("invalid duration %q", d.raw)
	if isDigits(d.raw) {
		msg += fmt.Sprintf(" (a number needs a unit: %q or %q)", d.raw+"s", d.raw+"m")
	}
	return msg
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

package config

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one problem with a configuration. Parse, Validate and Load
// return several of them joined with errors.Join; Problems splits them
// again.
type Error struct {
	// File is the name of the configuration file; empty when the problem
	// was found by Validate on a Config that was not read from a file.
	File string
	// Line and Column locate the problem in File, both 1-based; zero
	// when unknown.
	Line, Column int
	// Path names the field, as in repos["acme/widget"].presubmits[2].timeout;
	// empty for problems with the file as a whole, such as YAML syntax.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error formats e as "FILE:LINE:COLUMN: PATH: MSG", leaving out the parts
// that are not known.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Problems returns the individual problems in err, as joined by Parse,
// Validate or Load; an error that joins nothing is returned alone, and a
// nil err gives nil.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	return []error{err}
}

// problemList collects problems in the order they are found.
type problemList []error

func (l *problemList) addf(path, format string, args ...any) {
	*l = append(*l, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (l problemList) err() error { return errors.Join(l...) }

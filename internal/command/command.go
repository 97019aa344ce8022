// Package command reads the chat commands lockstep acts on (/ok-to-test,
// /test, /retest, /retest-required, /test-manual-required) from the body of a pull-request comment. It is pure: it
// knows nothing of jobs, trust or the forge, and only says what a comment
// asks for.
//
// A command is a line of the comment that starts, in its first column, with
// the command's name; spaces, tabs and carriage returns at the end of the
// line are ignored. A line is never a command when it is
//
//   - inside a fenced code block (``` or ~~~, the fence indented by at most
//     three spaces, or opened after a list marker such as "- ```"); the
//     block ends at a closing fence of the same character at least as long
//     as the opening one, and an unterminated block runs to the end of the
//     comment;
//   - a block quote line, which starts with '>' (after at most three
//     spaces), so is never a command; a fence opened inside a quote ends
//     with the quote.
//
// These are the CommonMark rules GitHub renders with, so a command is a
// line the reader sees as plain text starting with '/'. Two
// simplifications: a line that does not itself start with '>' is outside
// any quote, even where CommonMark would continue the quote's paragraph
// lazily (as in "> could someone\n/ok-to-test", where the commenter typed
// the command), and fences nested deeper than one list item are not
// tracked (their lines are indented, so never commands anyway).
//
// Like Prow's trigger, a command must start the line: "  /retest" is not a
// command, names are case-sensitive, and unknown commands such as /lgtm
// or /hold are left to whatever else reads the comment.
package command

import (
	"iter"
	"slices"
	"strings"
)

// The commands lockstep acts on.
const (
	OKToTest = "/ok-to-test"
	Test     = "/test"
	Retest   = "/retest"
	// RetestRequired reruns failed required jobs only.
	RetestRequired = "/retest-required"
	// TestManualRequired starts the required jobs that never start by
	// themselves and have no run on the head.
	TestManualRequired = "/test-manual-required"
	// All is the /test argument that asks for the automatic set.
	All = "all"
)

// Request is everything one comment asks for. Several commands in one
// comment make one request: "/lgtm\n/ok-to-test\n/test lint" is one
// request with OKToTest and Tests set.
type Request struct {
	// OKToTest is set by /ok-to-test.
	OKToTest bool
	// TestAll is set by /test all (all may appear among other names).
	TestAll bool
	// Tests holds the job names given to /test, in order of first
	// appearance, without duplicates and without "all". Names are
	// separated by spaces, tabs or commas: "/test a b", "/test a, b" and
	// two lines "/test a" and "/test b" all name a and b. Whether a name
	// is a job is for the caller to decide.
	Tests []string
	// Retest is set by /retest.
	Retest bool
	// RetestRequired is set by /retest-required.
	RetestRequired bool
	// TestManualRequired is set by /test-manual-required.
	TestManualRequired bool
	// Problems describes, in order and without duplicates, commands that
	// were recognized but malformed ("/retest lint", a bare "/test"). Each
	// is a sentence meant for a reply to the commenter.
	Problems []string
}

// Problems Parse reports.
const (
	ProblemTestNeedsName              = "/test needs a job name, or all for the automatic set."
	ProblemRetestArgument             = "/retest takes no argument: it reruns failed jobs. To run one job, use /test JOB."
	ProblemOKToTestArgs               = "/ok-to-test takes no argument."
	ProblemRetestRequiredArgument     = "/retest-required takes no argument: it reruns failed required jobs. To run one job, use /test JOB."
	ProblemTestManualRequiredArgument = "/test-manual-required takes no argument: it starts the required jobs that do not start by themselves. To run one job, use /test JOB."
)

// Empty reports whether r asks for nothing at all: no command, not even a
// malformed one that deserves a reply.
func (r Request) Empty() bool {
	return !r.OKToTest && !r.TestAll && len(r.Tests) == 0 && !r.Retest &&
		!r.RetestRequired && !r.TestManualRequired && len(r.Problems) == 0
}

// Parse returns the request made by a comment body.
func Parse(body string) Request {
	var r Request
	var f fence
	for line := range lines(body) {
		if f.open {
			if f.contains(line) {
				continue
			}
			// The line closes the fence, or ends the list item holding it
			// and is read like any other.
			f.open = false
			if f.closedBy(line) {
				continue
			}
		}
		if f.opens(line) {
			continue
		}
		// A block quote line starts with '>' after at most three spaces,
		// so add never takes it for a command.
		r.add(strings.TrimRight(line, spaces))
	}
	return r
}

// spaces are the characters Prow's \s matches that can occur inside a line.
const spaces = " \t\f"

// add records the command on line, if it is one.
func (r *Request) add(line string) {
	if !strings.HasPrefix(line, "/") {
		return
	}
	name, rest := line, ""
	if i := strings.IndexAny(line, spaces); i >= 0 {
		name, rest = line[:i], line[i:]
	}
	args := strings.FieldsFunc(rest, func(c rune) bool {
		return c == ',' || strings.ContainsRune(spaces, c)
	})
	switch name {
	case OKToTest:
		if len(args) > 0 {
			r.problem(ProblemOKToTestArgs)
			return
		}
		r.OKToTest = true
	case Test:
		if len(args) == 0 {
			r.problem(ProblemTestNeedsName)
			return
		}
		for _, a := range args {
			if a == All {
				r.TestAll = true
			} else if !slices.Contains(r.Tests, a) {
				r.Tests = append(r.Tests, a)
			}
		}
	case Retest:
		if len(args) > 0 {
			r.problem(ProblemRetestArgument)
			return
		}
		r.Retest = true
	case RetestRequired:
		if len(args) > 0 {
			r.problem(ProblemRetestRequiredArgument)
			return
		}
		r.RetestRequired = true
	case TestManualRequired:
		if len(args) > 0 {
			r.problem(ProblemTestManualRequiredArgument)
			return
		}
		r.TestManualRequired = true
	}
}

func (r *Request) problem(p string) {
	if !slices.Contains(r.Problems, p) {
		r.Problems = append(r.Problems, p)
	}
}

// lines yields the lines of s, split at "\r\n", "\n" or a lone "\r" (the
// CommonMark line endings), without their endings.
func lines(s string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for len(s) > 0 {
			i := strings.IndexAny(s, "\r\n")
			if i < 0 {
				yield(s)
				return
			}
			if !yield(s[:i]) {
				return
			}
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			s = s[i+1:]
		}
	}
}

// indent returns the width of line's leading spaces and tabs (a tab
// advances to the next multiple of four columns) and the rest of the line.
func indent(line string) (int, string) {
	w := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case ' ':
			w++
		case '\t':
			w += 4 - w%4
		default:
			return w, line[i:]
		}
	}
	return w, ""
}

// fence is the state of the fenced code block the scan is in, if any.
type fence struct {
	open bool
	char byte // '`' or '~'
	size int  // length of the opening fence
	// column is where the list item's content starts for a fence opened
	// after a list marker; 0 for a top-level fence.
	column int
}

// run returns the length of the fence at the start of s, or 0 if s does
// not start with a fence. A backtick fence's info string may not contain a
// backtick (CommonMark 4.5).
func run(s string) (byte, int) {
	if len(s) == 0 || (s[0] != '`' && s[0] != '~') {
		return 0, 0
	}
	c, n := s[0], 0
	for n < len(s) && s[n] == c {
		n++
	}
	if n < 3 || (c == '`' && strings.IndexByte(s[n:], '`') >= 0) {
		return 0, 0
	}
	return c, n
}

// opens reports whether line opens a fenced code block, and if so records it.
func (f *fence) opens(line string) bool {
	w, rest := indent(line)
	if w > 3 {
		return false
	}
	column := 0
	if m := listMarker(rest); m > 0 {
		pad, content := indent(rest[m:])
		if pad == 0 || pad > 4 {
			return false
		}
		column, rest = w+m+pad, content
	}
	c, n := run(rest)
	if n == 0 {
		return false
	}
	*f = fence{open: true, char: c, size: n, column: column}
	return true
}

// listMarker returns the length of the bullet ("-", "+", "*") or ordered
// ("1.", "12)") list marker at the start of s, or 0.
func listMarker(s string) int {
	if s == "" {
		return 0
	}
	if s[0] == '-' || s[0] == '+' || s[0] == '*' {
		return 1
	}
	n := 0
	for n < len(s) && n < 9 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	if n > 0 && n < len(s) && (s[n] == '.' || s[n] == ')') {
		return n + 1
	}
	return 0
}

// contains reports whether line, read while f is open, is part of the
// code block: neither its closing fence nor, for a fence in a list item,
// a line outdented out of the item.
func (f *fence) contains(line string) bool {
	w, rest := indent(line)
	if rest == "" {
		return true // blank lines never end a fence
	}
	if w < f.column {
		return false
	}
	return !f.closedBy(line)
}

// closedBy reports whether line is a closing fence for f.
func (f *fence) closedBy(line string) bool {
	w, rest := indent(line)
	if w < f.column || w > f.column+3 {
		return false
	}
	n := 0
	for n < len(rest) && rest[n] == f.char {
		n++
	}
	return n >= f.size && strings.Trim(rest[n:], " \t") == ""
}

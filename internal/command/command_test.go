package command

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want Request
	}{
		// Nothing to do.
		{name: "empty", body: "", want: Request{}},
		{name: "prose", body: "Looks good to me, thanks!", want: Request{}},
		{name: "fixture comment", body: "You are totally right! I'll get this fixed right away.", want: Request{}},
		{name: "slash mid line", body: "please /ok-to-test", want: Request{}},
		{name: "slash mid line test", body: "could you /test lint?", want: Request{}},
		{name: "other plugins", body: "/lgtm\n/approve\n/hold\n/assign @me\n/test-all\n/retest-required-now", want: Request{}},
		{name: "case sensitive", body: "/OK-TO-TEST\n/Test lint\n/RETEST", want: Request{}},
		{name: "leading space", body: " /ok-to-test\n  /retest\n\t/test lint", want: Request{}},
		{name: "no separator", body: "/testlint\n/ok-to-test!\n/retest.", want: Request{}},

		// Rule 4: a command starts a line; trailing spaces and \r are fine.
		{name: "ok-to-test", body: "/ok-to-test", want: Request{OKToTest: true}},
		{name: "ok-to-test trailing spaces", body: "/ok-to-test   \t ", want: Request{OKToTest: true}},
		{name: "ok-to-test CRLF", body: "thanks\r\n/ok-to-test\r\n", want: Request{OKToTest: true}},
		{name: "lone CR line ending", body: "thanks\r/ok-to-test\r", want: Request{OKToTest: true}},
		{name: "any line", body: "first line\n\nsecond paragraph\n/retest\nlast line", want: Request{Retest: true}},
		{name: "retest CRLF trailing space", body: "/retest \r\n", want: Request{Retest: true}},

		// Rule 8: /test.
		{name: "test one", body: "/test lint", want: Request{Tests: []string{"lint"}}},
		{name: "test several", body: "/test lint unit e2e", want: Request{Tests: []string{"lint", "unit", "e2e"}}},
		{name: "test commas", body: "/test lint, unit,e2e,", want: Request{Tests: []string{"lint", "unit", "e2e"}}},
		{name: "test tabs", body: "/test\tlint\t\tunit", want: Request{Tests: []string{"lint", "unit"}}},
		{name: "test CRLF", body: "/test lint\r\n/test unit\r\n", want: Request{Tests: []string{"lint", "unit"}}},
		{name: "test duplicates", body: "/test lint unit lint\n/test unit\n/test e2e lint", want: Request{Tests: []string{"lint", "unit", "e2e"}}},
		{name: "test all", body: "/test all", want: Request{TestAll: true}},
		{name: "test all comma", body: "/test all,", want: Request{TestAll: true}},
		{name: "test all and names", body: "/test lint all unit", want: Request{TestAll: true, Tests: []string{"lint", "unit"}}},
		{name: "test all twice", body: "/test all\n/test all", want: Request{TestAll: true}},
		{name: "test without name", body: "/test", want: Request{Problems: []string{ProblemTestNeedsName}}},
		{name: "test without name trailing space", body: "/test   \r\n", want: Request{Problems: []string{ProblemTestNeedsName}}},
		{name: "test only commas", body: "/test ,,", want: Request{Problems: []string{ProblemTestNeedsName}}},
		{name: "test unicode name", body: "/test lint-ü", want: Request{Tests: []string{"lint-ü"}}},

		// Rule 9: /retest.
		{name: "retest", body: "/retest", want: Request{Retest: true}},
		{name: "retest twice", body: "/retest\n/retest", want: Request{Retest: true}},
		{name: "retest with argument", body: "/retest lint", want: Request{Problems: []string{ProblemRetestArgument}}},
		{name: "retest with argument twice", body: "/retest lint\n/retest unit", want: Request{Problems: []string{ProblemRetestArgument}}},
		{name: "retest good and bad", body: "/retest lint\n/retest", want: Request{Retest: true, Problems: []string{ProblemRetestArgument}}},
		{name: "retest-required", body: "/retest-required", want: Request{RetestRequired: true}},
		{name: "retest-required CRLF", body: "/retest-required \r\n", want: Request{RetestRequired: true}},
		{name: "retest-required with argument", body: "/retest-required lint", want: Request{Problems: []string{ProblemRetestRequiredArgument}}},
		{name: "retest and retest-required", body: "/retest\n/retest-required", want: Request{Retest: true, RetestRequired: true}},
		{name: "test-manual-required", body: "/test-manual-required", want: Request{TestManualRequired: true}},
		{name: "test-manual-required with argument", body: "/test-manual-required e2e", want: Request{Problems: []string{ProblemTestManualRequiredArgument}}},
		{name: "test-manual-required quoted", body: "> /test-manual-required", want: Request{}},
		{name: "ok-to-test with argument", body: "/ok-to-test please", want: Request{Problems: []string{ProblemOKToTestArgs}}},

		// Rule 10: several commands are one request.
		{name: "lgtm then ok-to-test", body: "/lgtm\n/ok-to-test", want: Request{OKToTest: true}},
		{name: "lgtm then ok-to-test CRLF", body: "/lgtm\r\n/ok-to-test\r\n", want: Request{OKToTest: true}},
		{name: "everything", body: "/ok-to-test\n/test lint\n/retest\n/test all\n/test", want: Request{
			OKToTest: true, TestAll: true, Tests: []string{"lint"}, Retest: true, Problems: []string{ProblemTestNeedsName},
		}},
		{name: "problems in order", body: "/test\n/retest x\n/ok-to-test y\n/test", want: Request{
			Problems: []string{ProblemTestNeedsName, ProblemRetestArgument, ProblemOKToTestArgs},
		}},

		// Code fences.
		{name: "backtick fence", body: "```\n/ok-to-test\n/test lint\n```", want: Request{}},
		{name: "tilde fence", body: "~~~\n/ok-to-test\n~~~", want: Request{}},
		{name: "fence with info string", body: "```sh\n/retest\n```\n/test lint", want: Request{Tests: []string{"lint"}}},
		{name: "command after fence", body: "```\n/test a\n```\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "fence CRLF", body: "```\r\n/test a\r\n```\r\n/test b\r\n", want: Request{Tests: []string{"b"}}},
		{name: "fence indented 3", body: "   ```\n/test a\n   ```\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "indented 4 is not a fence", body: "    ```\n/test a\n    ```", want: Request{Tests: []string{"a"}}},
		{name: "closing fence indented", body: "```\n/test a\n  ```  \n/test b", want: Request{Tests: []string{"b"}}},
		{name: "closing fence longer", body: "```\n/test a\n`````\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "closing fence shorter", body: "````\n/test a\n```\n/test b\n````\n/test c", want: Request{Tests: []string{"c"}}},
		{name: "closing fence other char", body: "```\n/test a\n~~~\n/test b\n```\n/test c", want: Request{Tests: []string{"c"}}},
		{name: "closing fence with text", body: "```\n/test a\n``` x\n/test b\n```\n/test c", want: Request{Tests: []string{"c"}}},
		{name: "unterminated fence", body: "/test a\n```\n/test b\n/retest", want: Request{Tests: []string{"a"}}},
		{name: "unterminated tilde fence", body: "~~~~\n/ok-to-test\n~~~", want: Request{}},
		{name: "two fences", body: "```\n/test a\n```\n/test b\n~~~\n/test c\n~~~\n/test d", want: Request{Tests: []string{"b", "d"}}},
		{name: "blank lines in fence", body: "```\n\n/test a\n\n```\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "inline code span is not a fence", body: "```/test a```\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "two backticks are not a fence", body: "``\n/test a\n``", want: Request{Tests: []string{"a"}}},
		{name: "tilde info with backtick", body: "~~~ a`b\n/test a\n~~~\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "fence in list item", body: "- ```\n  /test a\n  ```\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "fence in ordered list item", body: "1. ```\n   code\n   ```\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "list item ended by outdent", body: "- ```\n  code\n/test b\n", want: Request{Tests: []string{"b"}}},
		{name: "outdented fence opens a new block", body: "- ```\n  code\n```\n/test a", want: Request{}},
		{name: "list fence closer indented", body: "- ```\n  code\n     ```\n/test a", want: Request{Tests: []string{"a"}}},
		{name: "list fence blank line", body: "* ~~~\n\n  code\n  ~~~\n/test a", want: Request{Tests: []string{"a"}}},
		{name: "list marker without space", body: "-```\n/test a", want: Request{Tests: []string{"a"}}},

		// Block quotes.
		{name: "quoted", body: "> /ok-to-test", want: Request{}},
		{name: "quoted no space", body: ">/retest", want: Request{}},
		{name: "quoted indented", body: "   > /test a", want: Request{}},
		{name: "nested quote", body: "> > /test a", want: Request{}},
		{name: "reply after quote", body: "> can someone /ok-to-test?\n> /ok-to-test\n\n/test lint", want: Request{Tests: []string{"lint"}}},
		{name: "quote then command next line", body: "> quoted\n/retest", want: Request{Retest: true}},
		{name: "fence inside quote ends with quote", body: "> ```\n> /test a\n/test b", want: Request{Tests: []string{"b"}}},
		{name: "quote CRLF", body: "> /ok-to-test\r\n>/retest\r\n", want: Request{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Parse(tt.body)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.body, diff)
			}
			if got.Empty() != cmp.Equal(tt.want, Request{}, cmpopts.EquateEmpty()) {
				t.Errorf("Parse(%q).Empty() = %v, want %v", tt.body, got.Empty(), !got.Empty())
			}
		})
	}
}

func TestEmpty(t *testing.T) {
	t.Parallel()
	tests := []struct {
		req  Request
		want bool
	}{
		{Request{}, true},
		{Request{Tests: []string{}}, true},
		{Request{OKToTest: true}, false},
		{Request{TestAll: true}, false},
		{Request{Tests: []string{"a"}}, false},
		{Request{Retest: true}, false},
		{Request{RetestRequired: true}, false},
		{Request{TestManualRequired: true}, false},
		{Request{Problems: []string{ProblemTestNeedsName}}, false},
	}
	for _, tt := range tests {
		if got := tt.req.Empty(); got != tt.want {
			t.Errorf("%+v.Empty() = %v, want %v", tt.req, got, tt.want)
		}
	}
}

func TestLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"a\n", []string{"a"}},
		{"a\nb", []string{"a", "b"}},
		{"a\r\nb\r\n", []string{"a", "b"}},
		{"a\rb", []string{"a", "b"}},
		{"a\r\r\nb", []string{"a", "", "b"}},
		{"\n\n", []string{"", ""}},
		{"a\n\rb", []string{"a", "", "b"}},
	}
	for _, tt := range tests {
		var got []string
		for l := range lines(tt.in) {
			got = append(got, l)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("lines(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
	// Stopping early must not panic or yield again.
	n := 0
	for range lines(strings.Repeat("x\n", 10)) {
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("got %d lines before break, want 3", n)
	}
}

package command

import (
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

var update = flag.Bool("update", false, "rewrite the fixture seeds under testdata/fuzz")

// FuzzParse checks that Parse never panics and keeps its invariants on any
// comment body.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/ok-to-test",
		"/lgtm\n/ok-to-test",
		"/test a b, c\r\n/test all\r\n/retest\r\n",
		"```\n/test a\n```\n/test b",
		"~~~~\n/retest\n~~~\n",
		"- ```\n  /test a\n  ```\n/test b",
		"> /ok-to-test\n/retest x",
		"/test\n/retest\r/ok-to-test y",
	} {
		f.Add(s)
	}
	// testdata/fuzz/FuzzParse also holds the comment bodies of the
	// issue_comment fixtures (see TestFuzzParseSeeds).
	f.Fuzz(func(t *testing.T, body string) {
		r := Parse(body)
		checkRequest(t, body, r)

		// A body whose every line is quoted asks for nothing.
		plain := strings.ReplaceAll(body, "\r", "")
		quotedBody := "> " + strings.ReplaceAll(plain, "\n", "\n> ")
		if q := Parse(quotedBody); !q.Empty() {
			t.Errorf("Parse(%q) = %+v, want an empty request for a quoted body", quotedBody, q)
		}

		// A body inside a fence that nothing in it can close asks for nothing.
		if !strings.Contains(body, "~") {
			fenced := "~~~\n" + body
			if q := Parse(fenced); !q.Empty() {
				t.Errorf("Parse(%q) = %+v, want an empty request for a fenced body", fenced, q)
			}
		}

		// Line endings do not matter.
		if !strings.Contains(body, "\r") {
			crlf := strings.ReplaceAll(body, "\n", "\r\n")
			if diff := cmp.Diff(r, Parse(crlf), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%q) and Parse(%q) differ (-LF +CRLF):\n%s", body, crlf, diff)
			}
		}

		// Commands are whole lines: prose before the body cannot change them.
		if diff := cmp.Diff(r, Parse("thanks!\n"+body), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("a leading prose line changed the request (-without +with):\n%s", diff)
		}
	})
}

func checkRequest(t *testing.T, body string, r Request) {
	t.Helper()
	seen := map[string]bool{}
	for _, name := range r.Tests {
		if name == "" || name == All || strings.ContainsAny(name, " \t\f\r\n,") {
			t.Errorf("Parse(%q).Tests holds %q, want a job name", body, name)
		}
		if seen[name] {
			t.Errorf("Parse(%q).Tests holds %q twice", body, name)
		}
		seen[name] = true
	}
	for _, p := range r.Problems {
		if !slices.Contains([]string{ProblemTestNeedsName, ProblemRetestArgument, ProblemOKToTestArgs}, p) {
			t.Errorf("Parse(%q).Problems holds unknown problem %q", body, p)
		}
	}
	if len(r.Problems) != len(slices.Compact(slices.Clone(r.Problems))) {
		t.Errorf("Parse(%q).Problems = %q, want no duplicates", body, r.Problems)
	}
	if !r.Empty() && !strings.Contains(body, "/") {
		t.Errorf("Parse(%q) = %+v from a body without '/'", body, r)
	}
}

// fixtureSeeds returns the fuzz seed files made from the comment bodies of
// the issue_comment fixtures, by file name.
func fixtureSeeds(t *testing.T) map[string]string {
	t.Helper()
	seeds := map[string]string{}
	for _, p := range testfixtures.GitHubPayloads(t, "issue_comment") {
		var payload struct {
			Comment struct {
				Body *string `json:"body"`
			} `json:"comment"`
		}
		if err := json.Unmarshal(p.Body, &payload); err != nil {
			t.Fatalf("decode issue_comment/%s: %v", p.Name, err)
		}
		if payload.Comment.Body == nil {
			t.Fatalf("issue_comment/%s has no comment.body", p.Name)
		}
		name := "fixture-issue_comment-" + strings.TrimSuffix(p.Name, ".json")
		seeds[name] = fmt.Sprintf("go test fuzz v1\nstring(%q)\n", *payload.Comment.Body)
	}
	return seeds
}

// TestFuzzParseSeeds checks that testdata/fuzz/FuzzParse holds the comment
// bodies of the issue_comment fixtures; go test -run TestFuzzParseSeeds
// -update rewrites them.
func TestFuzzParseSeeds(t *testing.T) {
	testfixtures.CheckFuzzSeeds(t, filepath.Join("testdata", "fuzz", "FuzzParse"), fixtureSeeds(t), *update, "TestFuzzParseSeeds")
}

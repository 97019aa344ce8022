package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-github/v89/github"

	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

// fixtureEvents are the fixture directories of the events lockstep acts on.
func fixtureEvents() []string { return knownEvents() }

// otherFixtureEvents are fixture directories of events lockstep ignores.
func otherFixtureEvents() []string {
	return []string{"create", "delete", "installation", "label", "member", "merge_group", "pull_request_review", "status", "workflow_job"}
}

func TestFixturesValidateAndDecode(t *testing.T) {
	t.Parallel()
	for _, event := range fixtureEvents() {
		for _, p := range testfixtures.GitHubPayloads(t, event) {
			t.Run(event+"/"+p.Name, func(t *testing.T) {
				t.Parallel()
				got, err := Validate(event, p.Body)
				if err != nil {
					t.Fatalf("Validate: got error %v, want none", err)
				}
				decoded, err := Decode(event, p.Body)
				if err != nil {
					t.Fatalf("Decode: got error %v, want none", err)
				}
				want, err := SubjectOf(decoded)
				if err != nil {
					t.Fatalf("SubjectOf: got error %v, want none", err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Validate's subject differs from the decoded event's (-decoded +validated):\n%s", diff)
				}
				if got.Repo == "" || (event != "push" && got.Action == "") {
					t.Errorf("got subject %+v, want action and repo set", got)
				}
			})
		}
	}
}

func TestFixtureSubjects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		event, file string
		want        Subject
	}{
		{"pull_request", "synchronize.payload.json", Subject{Action: "synchronize", Repo: "Codertocat/Hello-World", Number: 2, SHA: "ec26c3e57ca3a959ca5aad62de7213c562f8c821"}},
		{"issue_comment", "created.payload.json", Subject{Action: "created", Repo: "Codertocat/Hello-World", Number: 1, CommentID: 492700400}},
		{"push", "with-new-branch.payload.json", Subject{Repo: "Codertocat/Hello-World", Ref: "refs/heads/master", SHA: "6113728f27ae82c7b1a177c8d03f9e96e0adf246"}},
		{"push", "payload.json", Subject{Repo: "Codertocat/Hello-World", Ref: "refs/tags/simple-tag", SHA: "0000000000000000000000000000000000000000"}},
		{"check_run", "rerequested.payload.json", Subject{Action: "rerequested", Repo: "github/hello-world"}},
		{"check_suite", "requested.payload.json", Subject{Action: "requested", Repo: "Codertocat/Hello-World"}},
	}
	for _, tt := range tests {
		p := testfixtures.GitHubPayload(t, tt.event, tt.file)
		got, err := Validate(tt.event, p.Body)
		if err != nil {
			t.Errorf("Validate(%s/%s): got error %v, want none", tt.event, tt.file, err)
			continue
		}
		// The checks' SHAs are long; compare them as present.
		if tt.want.SHA == "" && strings.HasPrefix(tt.event, "check_") {
			if got.SHA == "" {
				t.Errorf("Validate(%s/%s): got no SHA, want head_sha", tt.event, tt.file)
			}
			got.SHA = ""
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Validate(%s/%s) mismatch (-want +got):\n%s", tt.event, tt.file, diff)
		}
	}
}

// TestOtherEventsBody checks that a payload of one event sent as another
// is refused.
func TestOtherEventsBody(t *testing.T) {
	t.Parallel()
	for _, as := range fixtureEvents() {
		for _, from := range append(fixtureEvents(), otherFixtureEvents()...) {
			if from == as {
				continue
			}
			for _, p := range testfixtures.GitHubPayloads(t, from) {
				if _, err := Validate(as, p.Body); err == nil {
					t.Errorf("Validate(%s, %s/%s): got no error, want one", as, from, p.Name)
				} else if !strings.HasPrefix(err.Error(), as+" payload") {
					t.Errorf("Validate(%s, %s/%s): got error %q, want it to start with %q", as, from, p.Name, err, as+" payload")
				}
			}
		}
	}
	push := testfixtures.GitHubPayload(t, "push", "with-new-branch.payload.json")
	_, err := Validate("pull_request", push.Body)
	if want := "pull_request payload has no pull_request object"; err == nil || err.Error() != want {
		t.Errorf("Validate(pull_request, push payload): got error %v, want %q", err, want)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	const pr = `{"action":"opened","number":2,"pull_request":{"head":{"sha":"abc"}},"repository":{"full_name":"o/r"}}`
	prSubject := Subject{Action: "opened", Number: 2, SHA: "abc", Repo: "o/r"}
	tests := []struct {
		name    string
		event   string
		body    string
		want    Subject
		wantErr string // a substring; empty means no error
	}{
		{name: "minimal pull_request", event: "pull_request", body: pr, want: prSubject},
		{name: "whitespace", event: "pull_request", body: " \r\n\t" + pr + "\n ", want: prSubject},
		{name: "unknown event", event: "status", body: pr, wantErr: `"status" is not an event lockstep acts on`},
		{name: "ping", event: "ping", body: `{"zen":"x"}`, wantErr: "not an event lockstep acts on"},

		// Syntax.
		{name: "empty", event: "pull_request", body: "", wantErr: "body is not valid JSON: unexpected end of JSON input"},
		{name: "truncated", event: "pull_request", body: pr[:len(pr)-1], wantErr: "body is not valid JSON: unexpected end of JSON input"},
		{name: "truncated in string", event: "pull_request", body: pr[:20], wantErr: "body is not valid JSON: unexpected end of JSON input"},
		{name: "trailing garbage", event: "pull_request", body: pr + "x", wantErr: fmt.Sprintf("body is not valid JSON: invalid character 'x' after top-level value at offset %d", len(pr))},
		{name: "two values", event: "pull_request", body: pr + pr, wantErr: "after top-level value"},
		{name: "trailing comma", event: "pull_request", body: `{"action":"x",}`, wantErr: "looking for beginning of object key string"},
		{name: "single quotes", event: "pull_request", body: `{'action':1}`, wantErr: "invalid character '\\'' looking for beginning of object key string at offset 1"},
		{name: "control char in string", event: "pull_request", body: "{\"action\":\"a\nb\"}", wantErr: "in string literal"},
		{name: "bad escape", event: "pull_request", body: `{"a":"\x"}`, wantErr: "in string escape code"},
		{name: "bad unicode escape", event: "pull_request", body: `{"a":"\u12g4"}`, wantErr: "hexadecimal"},
		{name: "leading zero", event: "pull_request", body: `{"a":01}`, wantErr: "after object key:value pair"},
		{name: "bare minus", event: "pull_request", body: `{"a":-}`, wantErr: "in numeric literal"},
		{name: "dot without digits", event: "pull_request", body: `{"a":1.}`, wantErr: "after decimal point"},
		{name: "exponent without digits", event: "pull_request", body: `{"a":1e+}`, wantErr: "in exponent"},
		{name: "bad literal", event: "pull_request", body: `{"a":nul}`, wantErr: "in literal null"},
		{name: "NaN", event: "pull_request", body: `{"a":NaN}`, wantErr: "looking for beginning of value"},
		{name: "missing colon", event: "pull_request", body: `{"a" 1}`, wantErr: "after object key"},
		{name: "array not closed", event: "pull_request", body: `{"a":[1 2]}`, wantErr: "after array element"},
		{name: "BOM", event: "pull_request", body: "\xef\xbb\xbf" + pr, wantErr: "looking for beginning of value"},
		{name: "too deep", event: "pull_request", body: `{"a":` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + "}", wantErr: "deeper than 1000 levels"},
		{name: "deep but fine", event: "pull_request", body: `{"x":` + strings.Repeat("[", 998) + strings.Repeat("]", 998) + "," + pr[1:], want: prSubject},

		// Shape.
		{name: "array", event: "pull_request", body: `[1]`, wantErr: "pull_request payload is an array, not a JSON object"},
		{name: "null", event: "pull_request", body: `null`, wantErr: "pull_request payload is null, not a JSON object"},
		{name: "string", event: "push", body: `"x"`, wantErr: "push payload is a string, not a JSON object"},
		{name: "syntax error beats shape", event: "push", body: `[1,]`, wantErr: "body is not valid JSON"},
		{name: "no pull_request", event: "pull_request", body: `{"action":"opened","number":2,"repository":{"full_name":"o/r"}}`, wantErr: "pull_request payload has no pull_request object"},
		{name: "no head", event: "pull_request", body: `{"action":"opened","number":2,"pull_request":{},"repository":{"full_name":"o/r"}}`, wantErr: "pull_request payload has no pull_request.head object"},
		{name: "no sha", event: "pull_request", body: `{"action":"opened","number":2,"pull_request":{"head":{"ref":"x"}},"repository":{"full_name":"o/r"}}`, wantErr: "pull_request payload has no pull_request.head.sha string"},
		{name: "no action", event: "pull_request", body: `{"number":2,"pull_request":{"head":{"sha":"abc"}},"repository":{"full_name":"o/r"}}`, wantErr: "pull_request payload has no action string"},
		{name: "empty action", event: "pull_request", body: `{"action":"","number":2,"pull_request":{"head":{"sha":"abc"}},"repository":{"full_name":"o/r"}}`, wantErr: "pull_request payload has an empty action"},
		{name: "no number", event: "pull_request", body: `{"action":"x","pull_request":{"head":{"sha":"abc"}},"repository":{"full_name":"o/r"}}`, wantErr: "pull_request payload has no number"},
		{name: "zero number", event: "pull_request", body: strings.Replace(pr, `"number":2`, `"number":0`, 1), wantErr: "number is 0, not a positive integer"},
		{name: "float number", event: "pull_request", body: strings.Replace(pr, `"number":2`, `"number":2.0`, 1), wantErr: "number is 2.0, not a positive integer"},
		{name: "exponent number", event: "pull_request", body: strings.Replace(pr, `"number":2`, `"number":2e0`, 1), wantErr: "not a positive integer"},
		{name: "huge number", event: "pull_request", body: strings.Replace(pr, `"number":2`, `"number":99999999999999999999`, 1), wantErr: "not a positive integer"},
		{name: "string number", event: "pull_request", body: strings.Replace(pr, `"number":2`, `"number":"2"`, 1), wantErr: "pull_request payload: number is a string, not a number"},
		{name: "object action", event: "pull_request", body: strings.Replace(pr, `"action":"opened"`, `"action":{}`, 1), wantErr: "pull_request payload: action is an object, not a string"},
		{name: "bool head", event: "pull_request", body: strings.Replace(pr, `"head":{"sha":"abc"}`, `"head":true`, 1), wantErr: "pull_request.head is a boolean, not an object"},
		{name: "array repository", event: "pull_request", body: strings.Replace(pr, `{"full_name":"o/r"}`, `[]`, 1), wantErr: "repository is an array, not an object"},
		{name: "pull_request body as issue_comment", event: "issue_comment", body: pr, wantErr: "issue_comment payload has no comment object"},
		{name: "no comment id", event: "issue_comment", body: `{"action":"created","issue":{"number":1},"comment":{"body":"/retest"},"repository":{"full_name":"o/r"}}`, wantErr: "issue_comment payload has no comment.id"},
		{name: "no repository", event: "push", body: `{"ref":"refs/heads/main","after":"abc"}`, wantErr: "push payload has no repository object"},
		{name: "no full_name", event: "push", body: `{"ref":"refs/heads/main","after":"abc","repository":{"name":"r"}}`, wantErr: "push payload has no repository.full_name string"},
		{name: "nested fields do not count", event: "push", body: `{"x":{"ref":"r","after":"a"},"repository":{"full_name":"o/r"}}`, wantErr: "push payload has no ref string"},

		// encoding/json's rules.
		{name: "case-insensitive keys", event: "pull_request", body: `{"ACTION":"opened","Number":2,"Pull_Request":{"HEAD":{"Sha":"abc"}},"repository":{"FULL_NAME":"o/r"}}`, want: prSubject},
		{name: "unicode folding", event: "push", body: `{"ref":"r","after":"a","repoſitory":{"full_name":"o/r"}}`, want: Subject{Ref: "r", SHA: "a", Repo: "o/r"}},
		{name: "escaped key", event: "push", body: `{"r\u0065f":"r","after":"a","repository":{"full_name":"o/r"}}`, want: Subject{Ref: "r", SHA: "a", Repo: "o/r"}},
		{name: "escaped value", event: "push", body: `{"ref":"refs\/heads\/m\u00e9","after":"a","repository":{"full_name":"o/r"}}`, want: Subject{Ref: "refs/heads/mé", SHA: "a", Repo: "o/r"}},
		{name: "invalid UTF-8 value", event: "push", body: "{\"ref\":\"r\xff\",\"after\":\"a\",\"repository\":{\"full_name\":\"o/r\"}}", want: Subject{Ref: "r\ufffd", SHA: "a", Repo: "o/r"}},
		{name: "last key wins", event: "push", body: `{"ref":"a","ref":"b","after":"a","repository":{"full_name":"o/r"}}`, want: Subject{Ref: "b", SHA: "a", Repo: "o/r"}},
		{name: "last key wins folded", event: "push", body: `{"ref":"a","REF":"b","after":"a","repository":{"full_name":"o/r"}}`, want: Subject{Ref: "b", SHA: "a", Repo: "o/r"}},
		{name: "null clears", event: "push", body: `{"ref":"a","ref":null,"after":"a","repository":{"full_name":"o/r"}}`, wantErr: "push payload has no ref string"},
		{name: "null object clears", event: "push", body: `{"ref":"a","after":"a","repository":{"full_name":"o/r"},"repository":null}`, wantErr: "push payload has no repository object"},
		{name: "null then object", event: "push", body: `{"ref":"a","after":"a","repository":null,"repository":{"full_name":"o/r"}}`, want: Subject{Ref: "a", SHA: "a", Repo: "o/r"}},
		{name: "objects merge", event: "push", body: `{"ref":"a","after":"a","repository":{"full_name":"o/r"},"repository":{"name":"r"}}`, want: Subject{Ref: "a", SHA: "a", Repo: "o/r"}},
		{name: "null clears nested", event: "pull_request", body: `{"action":"opened","number":2,"pull_request":{"head":{"sha":"abc"}},"pull_request":{"head":null},"pull_request":{"head":{}},"repository":{"full_name":"o/r"}}`, wantErr: "pull_request payload has no pull_request.head.sha string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Validate(tt.event, []byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate: got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: got error %v, want none", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate mismatch (-want +got):\n%s", diff)
			}
			// encoding/json, through go-github, must read the same.
			decoded, err := Decode(tt.event, []byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: got error %v, want none", err)
			}
			fromDecode, err := SubjectOf(decoded)
			if err != nil {
				t.Fatalf("SubjectOf: got error %v, want none", err)
			}
			if diff := cmp.Diff(fromDecode, got); diff != "" {
				t.Errorf("Validate and Decode disagree (-decoded +validated):\n%s", diff)
			}
		})
	}
}

// TestSyntaxAgreesWithEncodingJSON checks the validator's JSON grammar
// against json.Valid on inputs that exercise every production.
func TestSyntaxAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	values := []string{
		`0`, `-0`, `1`, `-1`, `10`, `01`, `-01`, `1.5`, `1.`, `.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-`, `+1`, `0x1`, `1.5e3`, `1.e3`,
		`""`, `"a"`, `"\""`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u00e"`, `"\x"`, `"\'"`, "\"\t\"", "\"\x7f\"", "\"\xff\"", `"\ud800"`,
		`true`, `false`, `null`, `tru`, `True`, `nul`, `nulll`,
		`[]`, `[1]`, `[1,]`, `[,1]`, `[1 2]`, `[[]]`, `[`, `]`,
		`{}`, `{"a":1}`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`, `{"a":1 "b":2}`, `{"a":{"b":[1,{"c":null}]}}`, `{`, `}`,
		" \t\r\n1 ", "\v1", "\u00a01",
	}
	for _, v := range values {
		body := `{"x":` + v + `}`
		wantValid := json.Valid([]byte(body))
		_, err := Validate("push", []byte(body))
		var se *syntaxError
		gotValid := !errors.As(err, &se)
		if gotValid != wantValid {
			t.Errorf("Validate(%q): got error %v, want valid %v as json.Valid says", body, err, wantValid)
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	pr := testfixtures.GitHubPayload(t, "pull_request", "opened.payload.json")
	got, err := Decode("pull_request", pr.Body)
	if err != nil {
		t.Fatalf("Decode: got error %v, want none", err)
	}
	e, ok := got.(*github.PullRequestEvent)
	if !ok {
		t.Fatalf("Decode: got %T, want *github.PullRequestEvent", got)
	}
	if e.GetPullRequest().GetHead().GetSHA() != "ec26c3e57ca3a959ca5aad62de7213c562f8c821" || e.GetRepo().GetFullName() != "Codertocat/Hello-World" {
		t.Errorf("Decode: got head %q repo %q, want the fixture's", e.GetPullRequest().GetHead().GetSHA(), e.GetRepo().GetFullName())
	}

	types := map[string]any{
		"pull_request":  &github.PullRequestEvent{},
		"issue_comment": &github.IssueCommentEvent{},
		"push":          &github.PushEvent{},
		"check_run":     &github.CheckRunEvent{},
		"check_suite":   &github.CheckSuiteEvent{},
	}
	for event, want := range types {
		p := testfixtures.GitHubPayloads(t, event)[0]
		got, err := Decode(event, p.Body)
		if err != nil {
			t.Errorf("Decode(%s): got error %v, want none", event, err)
			continue
		}
		if gotType, wantType := fmt.Sprintf("%T", got), fmt.Sprintf("%T", want); gotType != wantType {
			t.Errorf("Decode(%s): got %s, want %s", event, gotType, wantType)
		}
	}

	errs := []struct {
		name, event, body, want string
	}{
		{"unknown event", "status", `{}`, "decode status payload: not an event lockstep acts on"},
		{"ping", "ping", `{"zen":"x"}`, "not an event lockstep acts on"},
		{"truncated", "pull_request", `{"action":`, "decode pull_request payload: unexpected end of JSON input"},
		{"null", "pull_request", `null`, "decode pull_request payload: payload is null"},
		{"array", "push", `[]`, "decode push payload: json: cannot unmarshal array"},
		{"wrong type", "pull_request", `{"number":"2"}`, "decode pull_request payload: json: cannot unmarshal string"},
		{"missing head", "pull_request", `{"action":"opened","number":2,"pull_request":{},"repository":{"full_name":"o/r"}}`, "decode pull_request payload: payload has no pull_request.head.sha"},
		{"missing comment", "issue_comment", `{"action":"created","issue":{"number":1},"repository":{"full_name":"o/r"}}`, "decode issue_comment payload: payload has no positive comment.id"},
		{"other event's body", "check_suite", string(testfixtures.GitHubPayloads(t, "check_run")[0].Body), "decode check_suite payload: payload has no check_suite.head_sha"},
	}
	for _, tt := range errs {
		if _, err := Decode(tt.event, []byte(tt.body)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Decode(%s): got error %v, want one containing %q", tt.name, tt.event, err, tt.want)
		}
	}
	if _, err := SubjectOf(&github.StatusEvent{}); err == nil {
		t.Errorf("SubjectOf(*github.StatusEvent): got no error, want one")
	}
	if _, err := SubjectOf((*github.PushEvent)(nil)); err == nil {
		t.Errorf("SubjectOf(nil *github.PushEvent): got no error, want one")
	}
}

func TestKeyMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key, name string
		want      bool
	}{
		{"ref", "ref", true},
		{"REF", "ref", true},
		{"Ref", "ref", true},
		{"refs", "ref", false},
		{"re", "ref", false},
		{"full_name", "full_name", true},
		{"FULL_NAME", "full_name", true},
		{"full-name", "full_name", false},
		{`r\u0065f`, "ref", true},
		{`\u0052EF`, "ref", true},
		{"head_ſha", "head_sha", true},
		{"\u212a", "k", true},
		{"\u0130", "i", false}, // İ does not fold to i
		{"r\xffef", "ref", false},
		{`r\"ef`, "ref", false},
		{`\u017fha`, "sha", true},
		{"SHA", "sha", true},
		{"s\u0068a", "sha", true},
		{"sh\u00e1", "sha", false},
	}
	for _, tt := range tests {
		if got := keyMatches([]byte(tt.key), tt.name); got != tt.want {
			t.Errorf("keyMatches(%q, %q) = %v, want %v", tt.key, tt.name, got, tt.want)
		}
		// The claim is about encoding/json: check it.
		var v map[string]any
		body := `{"` + tt.key + `":1}`
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("bad test key %q: %v", tt.key, err)
		}
		var ref struct {
			Ref *int `json:"ref"`
			Sha *int `json:"sha"`
			K   *int `json:"k"`
			I   *int `json:"i"`
			FN  *int `json:"full_name"`
			HS  *int `json:"head_sha"`
		}
		if err := json.Unmarshal([]byte(body), &ref); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		fields := map[string]*int{"ref": ref.Ref, "sha": ref.Sha, "k": ref.K, "i": ref.I, "full_name": ref.FN, "head_sha": ref.HS}
		if jsonMatches := fields[tt.name] != nil; jsonMatches != tt.want {
			t.Errorf("encoding/json stores key %q in field %q: %v, want %v", tt.key, tt.name, jsonMatches, tt.want)
		}
	}
}

func TestSchemas(t *testing.T) {
	t.Parallel()
	for _, event := range knownEvents() {
		s, ok := schemaFor(event)
		if !ok {
			t.Errorf("schemaFor(%s): got no schema, want one", event)
			continue
		}
		for i := 0; i < s.n; i++ {
			if f := s.fields[i]; f.parent < root || f.parent >= i {
				t.Errorf("schemaFor(%s): field %s has parent %d, want an earlier field or root", event, f.path, f.parent)
			}
		}
	}
	if _, ok := schemaFor("ping"); ok {
		t.Errorf("schemaFor(ping): got a schema, want none")
	}
}

func TestRFC3339Timestamps(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`{"created_at":"2018-04-25 20:42:10"}`, `{"created_at":"2018-04-25T20:42:10Z"}`},
		{`{"created_at" : "2018-04-25 20:42:10", "updated_at":"2018-04-25T20:42:10Z"}`, `{"created_at" : "2018-04-25T20:42:10Z", "updated_at":"2018-04-25T20:42:10Z"}`},
		{`{"title":"2018-04-25 20:42:10"}`, `{"title":"2018-04-25 20:42:10"}`},
		{`{"2018-04-25 20:42:10_at":"x"}`, `{"2018-04-25 20:42:10_at":"x"}`},
		{`{"body":"a \"created_at\": \"2018-04-25 20:42:10\""}`, `{"body":"a \"created_at\": \"2018-04-25 20:42:10\""}`},
		{`{"created_at":"2018-04-25 20:42:1"}`, `{"created_at":"2018-04-25 20:42:1"}`},
		{`{"a":{"created_at":"2018-04-25 20:42:10"},"b":[1]}`, `{"a":{"created_at":"2018-04-25T20:42:10Z"},"b":[1]}`},
	}
	for _, tt := range tests {
		if got := string(rfc3339Timestamps([]byte(tt.in))); got != tt.want {
			t.Errorf("rfc3339Timestamps(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	// A payload with such times decodes, with the times read as UTC.
	p := testfixtures.GitHubPayload(t, "check_run", "rerequested.payload.json")
	got, err := Decode("check_run", p.Body)
	if err != nil {
		t.Fatalf("Decode(check_run/%s): got error %v, want none", p.Name, err)
	}
	created := got.(*github.CheckRunEvent).GetCheckRun().GetApp().GetCreatedAt().Time
	if want := time.Date(2018, 4, 25, 20, 42, 10, 0, time.UTC); !created.Equal(want) {
		t.Errorf("app.created_at = %v, want %v", created, want)
	}
	// Other bad times are still errors.
	bad := strings.Replace(string(p.Body), `"created_at": "2018-04-25 20:42:10"`, `"created_at": "yesterday"`, 1)
	if _, err := Decode("check_run", []byte(bad)); err == nil {
		t.Errorf("Decode with created_at \"yesterday\": got no error, want one")
	}
}

// TestStringScan checks skipString's eight-byte scan against json.Valid
// with every special byte at every position of strings around the word
// size.
func TestStringScan(t *testing.T) {
	t.Parallel()
	specials := []string{`"`, `\`, `\"`, `\\`, `\n`, `\u00e9`, `\u00`, `\x`, "\x00", "\x1f", " ", "\x7f", "\x80", "\xff", "é"}
	for n := 0; n <= 20; n++ {
		for pos := 0; pos <= n; pos++ {
			for _, sp := range specials {
				content := strings.Repeat("a", pos) + sp + strings.Repeat("b", n-pos)
				for _, body := range []string{`{"x":"` + content + `"}`, `{"` + content + `":1}`} {
					_, err := Validate("push", []byte(body))
					var se *syntaxError
					if gotValid, wantValid := !errors.As(err, &se), json.Valid([]byte(body)); gotValid != wantValid {
						t.Errorf("Validate(%q): got error %v, want valid %v as json.Valid says", body, err, wantValid)
					}
				}
			}
		}
	}
	// The string's value is read whole, wherever its escapes are.
	for n := 0; n <= 20; n++ {
		ref := strings.Repeat("r", n) + `\"` + strings.Repeat("s", n)
		body := `{"ref":"` + ref + `","after":"a","repository":{"full_name":"o/r"}}`
		got, err := Validate("push", []byte(body))
		if want := strings.Repeat("r", n) + `"` + strings.Repeat("s", n); err != nil || got.Ref != want {
			t.Errorf("Validate(%s): got ref %q, error %v, want %q", body, got.Ref, err, want)
		}
	}
}

package webhook

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lockstep-ci/lockstep/internal/testfixtures"
)

var update = flag.Bool("update", false, "rewrite the fixture seeds under testdata/fuzz")

// handSeeds are small payloads that reach the corners of Validate.
func handSeeds() [][2]string {
	return [][2]string{
		{"pull_request", `{"action":"opened","number":2,"pull_request":{"head":{"sha":"abc"}},"repository":{"full_name":"o/r"}}`},
		{"pull_request", `{"ACTION":"opened","Number":2,"pull_requeſt":{"head":{"sha":"a"}},"pull_request":{"head":null},"repository":{"full_name":"o/r"}}`},
		{"push", `{"r\u0065f":"refs/heads/m\u00e9","after":"a","after":null,"after":"b","repository":{"full_name":"o/r"},"x":[1,-2.5e+3,true,false,null,""]}`},
		{"issue_comment", `{"action":"created","issue":{"number":1},"comment":{"id":9223372036854775807},"repository":{"full_name":"o/r"}}`},
		{"check_run", `{"action":"rerequested","check_run":{"head_sha":"a","app":{"created_at":"2018-04-25 20:42:10"}},"repository":{"full_name":"o/r"}}`},
		{"check_suite", `[{"action":"x"}]`},
		{"ping", `{"zen":"x"}`},
		{"status", `{}`},
	}
}

// FuzzDecode checks Validate against Decode, that is, against
// encoding/json through go-github: neither panics, Validate's JSON grammar
// is encoding/json's, a body Validate accepts decodes to an event with the
// same subject (unless some other field has the wrong type), and a body
// that decodes is accepted.
func FuzzDecode(f *testing.F) {
	for _, s := range handSeeds() {
		f.Add(s[0], []byte(s[1]))
	}
	// testdata/fuzz/FuzzDecode holds the fixtures (see TestFuzzSeeds).
	f.Fuzz(fuzzDecodeOnce)
}

// fuzzDecodeOnce is FuzzDecode's check of one input.
func fuzzDecodeOnce(t *testing.T, event string, body []byte) {
	t.Helper()
	subject, verr := Validate(event, body)
	decoded, derr := Decode(event, body)
	if !Known(event) {
		if verr == nil || derr == nil {
			t.Fatalf("event %q: got Validate error %v and Decode error %v, want both", event, verr, derr)
		}
		return
	}
	var se *syntaxError
	switch {
	case verr == nil:
		if !json.Valid(body) {
			t.Fatalf("Validate accepted a body json.Valid refuses: %q", body)
		}
	case errors.As(verr, &se):
		if json.Valid(body) {
			t.Fatalf("Validate says %v of a body json.Valid accepts: %q", verr, body)
		}
	}
	if derr == nil {
		if decoded == nil {
			t.Fatalf("Decode returned a nil event and no error")
		}
		fromDecode, err := SubjectOf(decoded)
		if err != nil {
			t.Fatalf("SubjectOf(Decode()): %v", err)
		}
		if verr != nil {
			if errors.Is(verr, errTooDeep) {
				return
			}
			t.Fatalf("Decode accepted what Validate refused (%v): %q", verr, body)
		}
		if diff := cmp.Diff(fromDecode, subject); diff != "" {
			t.Fatalf("Validate and Decode disagree on %q (-decoded +validated):\n%s", body, diff)
		}
		return
	}
	if verr == nil {
		// Validate does not read every field: another one may have a
		// type go-github cannot hold. Nothing else may go wrong.
		var typeErr *json.UnmarshalTypeError
		if !errors.As(derr, &typeErr) && !strings.Contains(derr.Error(), "parsing time") {
			t.Fatalf("Validate accepted %q but Decode failed: %v", body, derr)
		}
	}
}

// FuzzHandler sends any body, signed, as any event: the handler never
// panics, answers with one of its statuses, and stores exactly the bodies
// it accepts.
func FuzzHandler(f *testing.F) {
	for _, s := range handSeeds() {
		f.Add(s[0], []byte(s[1]))
	}
	// testdata/fuzz/FuzzHandler holds a fixture of each event.
	f.Fuzz(func(t *testing.T, event string, body []byte) {
		th := newTestHandler(t, 1<<20)
		r := signedRequest(event, "fuzz", body)
		if !validHeaderValue(event) {
			return // net/http would refuse to send it
		}
		w := th.serve(r)
		stored := th.sink.all()
		switch w.Code {
		case http.StatusAccepted:
			if Known(event) {
				if len(stored) != 1 || string(stored[0].Body) != string(body) {
					t.Fatalf("202 for %s: got %d stored deliveries, want the body", event, len(stored))
				}
				if _, err := Validate(event, body); err != nil {
					t.Fatalf("202 for a body Validate refuses: %v", err)
				}
				return
			}
		case http.StatusOK, http.StatusBadRequest:
		default:
			t.Fatalf("got status %d (%s), want 200, 202 or 400", w.Code, w.Body)
		}
		if len(stored) != 0 {
			t.Fatalf("status %d: got %d stored deliveries, want none", w.Code, len(stored))
		}
		if !strings.HasPrefix(w.Body.String(), "delivery fuzz: ") {
			t.Fatalf("got body %q, want it to name the delivery", w.Body)
		}
	})
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

// fuzzSeeds returns the seed files made from the fixtures, by fuzz target
// and file name: every payload of the events lockstep acts on, a ping and
// a status for FuzzDecode; the first payload of each for FuzzHandler.
func fuzzSeeds(t *testing.T) map[string]map[string]string {
	t.Helper()
	seeds := map[string]map[string]string{"FuzzDecode": {}, "FuzzHandler": {}}
	add := func(target string, p testfixtures.Payload) {
		name := "fixture-" + p.Event + "-" + strings.TrimSuffix(p.Name, ".json")
		seeds[target][name] = fmt.Sprintf("go test fuzz v1\nstring(%q)\n[]byte(%q)\n", p.Event, p.Body)
	}
	for _, event := range append(knownEvents(), "ping", "status") {
		payloads := testfixtures.GitHubPayloads(t, event)
		if slices.Contains(knownEvents(), event) {
			for _, p := range payloads {
				add("FuzzDecode", p)
			}
		} else {
			add("FuzzDecode", payloads[0])
		}
		add("FuzzHandler", payloads[0])
	}
	return seeds
}

// TestFuzzSeeds checks that testdata/fuzz holds the fixture seeds; go test
// -run TestFuzzSeeds -update rewrites them.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
		testfixtures.CheckFuzzSeeds(t, filepath.Join("testdata", "fuzz", target), seeds, *update, "TestFuzzSeeds")
	}
}

package webhook

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-github/v89/github"
)

// Decode decodes a stored delivery's payload into its go-github event:
// *github.PullRequestEvent, *github.IssueCommentEvent, *github.PushEvent,
// *github.CheckRunEvent or *github.CheckSuiteEvent. It is the full,
// costly decoding the intake skips; the trigger calls it after the
// delivery is durable.
//
// Times written "2006-01-02 15:04:05", which go-github refuses, are read
// as UTC when nothing else is wrong with the payload.
//
// Beyond go-github's decoding, it checks what Validate checks, so the
// fields Subject describes are present in the returned event: a nil event
// is never returned with a nil error.
func Decode(event string, body []byte) (any, error) {
	if !Known(event) {
		return nil, fmt.Errorf("decode %s payload: not an event lockstep acts on (%s)", event, strings.Join(knownEvents(), ", "))
	}
	v, err := github.ParseWebHook(event, body)
	if pe, ok := errors.AsType[*time.ParseError](err); ok && spaceTimestamp(pe.Value) {
		// go-github reads only RFC 3339 times; GitHub's own example
		// check_run payload has apps with "2018-04-25 20:42:10".
		v, err = github.ParseWebHook(event, rfc3339Timestamps(body))
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s payload: %w", event, err)
	}
	if v == nil {
		return nil, fmt.Errorf("decode %s payload: payload is null", event)
	}
	if _, err := SubjectOf(v); err != nil {
		return nil, fmt.Errorf("decode %s payload: %w", event, err)
	}
	return v, nil
}

// SubjectOf returns what a decoded event (one Decode returns) is about,
// with the checks Validate makes: every field it reads is present,
// strings are non-empty and numbers positive.
func SubjectOf(event any) (Subject, error) {
	var s Subject
	var fields []namedValue
	switch e := event.(type) {
	case *github.PullRequestEvent:
		if e == nil {
			break
		}
		s = Subject{Action: e.GetAction(), Repo: e.GetRepo().GetFullName(), Number: e.GetNumber(), SHA: e.GetPullRequest().GetHead().GetSHA()}
		fields = []namedValue{{"pull_request.head.sha", s.SHA}, {"action", s.Action}, {"number", s.Number}, {"repository.full_name", s.Repo}}
	case *github.IssueCommentEvent:
		if e == nil {
			break
		}
		s = Subject{Action: e.GetAction(), Repo: e.GetRepo().GetFullName(), Number: e.GetIssue().GetNumber(), CommentID: e.GetComment().GetID()}
		fields = []namedValue{{"comment.id", s.CommentID}, {"issue.number", s.Number}, {"action", s.Action}, {"repository.full_name", s.Repo}}
	case *github.PushEvent:
		if e == nil {
			break
		}
		s = Subject{Ref: e.GetRef(), SHA: e.GetAfter(), Repo: e.GetRepo().GetFullName()}
		fields = []namedValue{{"ref", s.Ref}, {"after", s.SHA}, {"repository.full_name", s.Repo}}
	case *github.CheckRunEvent:
		if e == nil {
			break
		}
		s = Subject{Action: e.GetAction(), Repo: e.GetRepo().GetFullName(), SHA: e.GetCheckRun().GetHeadSHA()}
		fields = []namedValue{{"check_run.head_sha", s.SHA}, {"action", s.Action}, {"repository.full_name", s.Repo}}
	case *github.CheckSuiteEvent:
		if e == nil {
			break
		}
		s = Subject{Action: e.GetAction(), Repo: e.GetRepo().GetFullName(), SHA: e.GetCheckSuite().GetHeadSHA()}
		fields = []namedValue{{"check_suite.head_sha", s.SHA}, {"action", s.Action}, {"repository.full_name", s.Repo}}
	default:
		return Subject{}, fmt.Errorf("%T is not an event lockstep acts on", event)
	}
	if fields == nil {
		return Subject{}, fmt.Errorf("payload is null")
	}
	for _, f := range fields {
		switch v := f.value.(type) {
		case string:
			if v == "" {
				return Subject{}, fmt.Errorf("payload has no %s", f.name)
			}
		case int:
			if v <= 0 {
				return Subject{}, fmt.Errorf("payload has no positive %s", f.name)
			}
		case int64:
			if v <= 0 {
				return Subject{}, fmt.Errorf("payload has no positive %s", f.name)
			}
		}
	}
	return s, nil
}

type namedValue struct {
	name  string
	value any
}

// spaceTimestamp reports whether s (a JSON string with its quotes, or its
// content) is a time written "2006-01-02 15:04:05".
func spaceTimestamp(s string) bool {
	s = strings.Trim(s, `"`)
	if len(s) != len("2006-01-02 15:04:05") {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 4, 7:
			if s[i] != '-' {
				return false
			}
		case 10:
			if s[i] != ' ' {
				return false
			}
		case 13, 16:
			if s[i] != ':' {
				return false
			}
		default:
			if !isDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

// rfc3339Timestamps returns a copy of body, well-formed JSON, in which
// every string value of a key ending in "_at" that is a time written
// "2006-01-02 15:04:05" is rewritten "2006-01-02T15:04:05Z".
func rfc3339Timestamps(body []byte) []byte {
	out := make([]byte, 0, len(body)+64)
	key := ""
	for i := 0; i < len(body); {
		if body[i] != '"' {
			out = append(out, body[i])
			i++
			continue
		}
		j := i + 1
		for j < len(body) && body[j] != '"' {
			if body[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(body) {
			return append(out, body[i:]...)
		}
		str := body[i : j+1]
		i = j + 1
		k := i
		for k < len(body) && (body[k] == ' ' || body[k] == '\t' || body[k] == '\n' || body[k] == '\r') {
			k++
		}
		if k < len(body) && body[k] == ':' {
			key = string(str)
			out = append(out, str...)
			continue
		}
		if strings.HasSuffix(key, `_at"`) && spaceTimestamp(string(str)) {
			out = append(out, str[:11]...)
			out = append(out, 'T')
			out = append(out, str[12:20]...)
			out = append(out, 'Z', '"')
		} else {
			out = append(out, str...)
		}
		key = ""
	}
	return out
}

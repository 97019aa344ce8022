package webhook

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Subject is what a delivery is about, as read by Validate: enough for the
// store to index a delivery and for the trigger to route it without
// decoding the whole payload.
type Subject struct {
	// Action is the payload's action ("opened", "created"); empty for push.
	Action string
	// Repo is repository.full_name, "owner/name".
	Repo string
	// Number is the pull request number (pull_request) or the issue or
	// pull request number (issue_comment); 0 for the other events.
	Number int
	// SHA is pull_request.head.sha, push's after, or check_run.head_sha
	// and check_suite.head_sha; empty for issue_comment.
	SHA string
	// Ref is push's ref ("refs/heads/main"); empty for the other events.
	Ref string
	// CommentID is issue_comment's comment.id; 0 for the other events.
	CommentID int64
}

// Validate checks, cheaply, that body is the JSON payload event promises,
// and returns what it is about. event must be one of the events lockstep
// acts on (pull_request, issue_comment, push, check_run, check_suite).
//
// The whole body must be well-formed JSON (RFC 8259, as encoding/json
// reads it), a JSON object, nested at most 1000 levels deep, holding
// these fields, each non-empty (strings) or positive (numbers):
//
//	pull_request   action, number, pull_request.head.sha, repository.full_name
//	issue_comment  action, issue.number, comment.id, repository.full_name
//	push           ref, after, repository.full_name
//	check_run      action, check_run.head_sha, repository.full_name
//	check_suite    action, check_suite.head_sha, repository.full_name
//
// Fields are read with encoding/json's rules, which Decode applies through
// go-github: keys match case-insensitively, the last of repeated keys
// wins, repeated objects merge, null means absent and escapes are decoded.
// So a body Validate accepts decodes with Decode to an event holding the
// same values, unless some field Validate does not read has the wrong JSON
// type for go-github. Validate reads the body once and allocates only the
// returned strings: over 1 GB/s, where json.Valid alone reads 300 MB/s and
// encoding/json into a struct of these fields 170 MB/s.
func Validate(event string, body []byte) (Subject, error) {
	s, ok := schemaFor(event)
	if !ok {
		return Subject{}, fmt.Errorf("validate payload: %q is not an event lockstep acts on (%s)", event, strings.Join(knownEvents(), ", "))
	}
	v := validator{data: body, schema: s}
	if err := v.run(); err != nil {
		return Subject{}, err
	}
	return v.subject()
}

// kind is the JSON type of a field Validate reads.
type kind uint8

const (
	kindObject kind = iota + 1
	kindString
	kindInt
)

func (k kind) String() string {
	switch k {
	case kindObject:
		return "an object"
	case kindString:
		return "a string"
	default:
		return "a number"
	}
}

// target is the Subject field a schema field is stored in.
type target uint8

const (
	toNone target = iota
	toAction
	toRepo
	toNumber
	toSHA
	toRef
	toCommentID
)

// Slots of the validator: root is the payload object, none a value whose
// content is not read.
const (
	root = -1
	none = -2
)

const (
	maxFields = 8
	maxDepth  = 1000
)

// field is one value of a payload that Validate reads.
type field struct {
	path   string // "pull_request.head.sha"
	name   string // the last element of path: the JSON key
	parent int    // index of the enclosing object's field, or root
	kind   kind
	target target
}

// schema lists the fields an event's payload must hold, every object
// before the fields inside it.
type schema struct {
	event  string
	n      int
	fields [maxFields]field
}

// schemaFor returns the schema of event's payload.
func schemaFor(event string) (schema, bool) {
	s := schema{event: event}
	// The object that tells an event's payload from another's comes
	// first, so that a payload of another event is refused for lacking it.
	switch event {
	case "pull_request":
		s.add("pull_request", kindObject, toNone)
		s.add("pull_request.head", kindObject, toNone)
		s.add("pull_request.head.sha", kindString, toSHA)
		s.add("action", kindString, toAction)
		s.add("number", kindInt, toNumber)
	case "issue_comment":
		s.add("comment", kindObject, toNone)
		s.add("comment.id", kindInt, toCommentID)
		s.add("issue", kindObject, toNone)
		s.add("issue.number", kindInt, toNumber)
		s.add("action", kindString, toAction)
	case "push":
		s.add("ref", kindString, toRef)
		s.add("after", kindString, toSHA)
	case "check_run":
		s.add("check_run", kindObject, toNone)
		s.add("check_run.head_sha", kindString, toSHA)
		s.add("action", kindString, toAction)
	case "check_suite":
		s.add("check_suite", kindObject, toNone)
		s.add("check_suite.head_sha", kindString, toSHA)
		s.add("action", kindString, toAction)
	default:
		return schema{}, false
	}
	s.add("repository", kindObject, toNone)
	s.add("repository.full_name", kindString, toRepo)
	return s, true
}

// add appends a field; its enclosing object must already be in s.
func (s *schema) add(path string, k kind, t target) {
	f := field{path: path, name: path, parent: root, kind: k, target: t}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		f.name = path[i+1:]
		j := 0
		for j < s.n && s.fields[j].path != path[:i] {
			j++
		}
		if j == s.n {
			panic("webhook: schema field " + path + " comes before its object")
		}
		f.parent = j
	}
	s.fields[s.n] = f
	s.n++
}

// value is what the validator holds for a field.
type value struct {
	set bool
	raw []byte // a string with its quotes, or a number literal
}

// validator reads one body against one schema.
type validator struct {
	data   []byte
	pos    int
	depth  int
	schema schema
	values [maxFields]value
}

// syntaxError says that a body is not well-formed JSON.
type syntaxError struct {
	msg    string
	offset int
}

func (e *syntaxError) Error() string {
	if e.offset < 0 {
		return "body is not valid JSON: " + e.msg
	}
	return fmt.Sprintf("body is not valid JSON: %s at offset %d", e.msg, e.offset)
}

// errTooDeep says that a body nests deeper than maxDepth (encoding/json
// allows 10000 levels).
var errTooDeep = errors.New("body nests objects and arrays deeper than 1000 levels")

func (v *validator) eof() error {
	return &syntaxError{msg: "unexpected end of JSON input", offset: -1}
}

func (v *validator) invalid(context string) error {
	if v.pos >= len(v.data) {
		return v.eof()
	}
	return &syntaxError{msg: fmt.Sprintf("invalid character %s %s", quoteChar(v.data[v.pos]), context), offset: v.pos}
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	return strconv.QuoteRune(rune(c))
}

// run reads the whole body.
func (v *validator) run() error {
	v.skipSpace()
	if v.pos >= len(v.data) {
		return v.eof()
	}
	if c := v.data[v.pos]; c != '{' {
		// Report a syntax error first, as encoding/json would.
		if err := v.value(none); err != nil {
			return err
		}
		if err := v.end(); err != nil {
			return err
		}
		return fmt.Errorf("%s payload is %s, not a JSON object", v.schema.event, jsonType(c))
	}
	if err := v.object(root); err != nil {
		return err
	}
	return v.end()
}

func (v *validator) end() error {
	v.skipSpace()
	if v.pos < len(v.data) {
		return v.invalid("after top-level value")
	}
	return nil
}

// kindOf returns the kind of the value c starts, or 0 for an array, a
// boolean or null.
func kindOf(c byte) kind {
	switch {
	case c == '{':
		return kindObject
	case c == '"':
		return kindString
	case c == '-' || isDigit(c):
		return kindInt
	}
	return 0
}

// jsonType names the type of the value c starts.
func jsonType(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func (v *validator) skipSpace() {
	for v.pos < len(v.data) {
		switch v.data[v.pos] {
		case ' ', '\n', '\t', '\r':
			v.pos++
		default:
			return
		}
	}
}

// value reads the value at v.pos into slot.
func (v *validator) value(slot int) error {
	v.skipSpace()
	if v.pos >= len(v.data) {
		return v.eof()
	}
	c := v.data[v.pos]
	if slot >= 0 {
		f := &v.schema.fields[slot]
		switch {
		case c == 'n':
			if err := v.literal("null"); err != nil {
				return err
			}
			v.clear(slot)
			return nil
		case strings.IndexByte(`{["tf-0123456789`, c) < 0:
			// Not a value at all: the syntax error below.
		case kindOf(c) != f.kind:
			return fmt.Errorf("%s payload: %s is %s, not %s", v.schema.event, f.path, jsonType(c), f.kind)
		}
	}
	switch {
	case c == '{':
		if slot >= 0 && !v.values[slot].set {
			v.clear(slot)
			v.values[slot].set = true
		}
		return v.object(slot)
	case c == '[':
		return v.array()
	case c == '"':
		start := v.pos
		if err := v.skipString(); err != nil {
			return err
		}
		if slot >= 0 {
			v.values[slot] = value{set: true, raw: v.data[start:v.pos]}
		}
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		start := v.pos
		if err := v.skipNumber(); err != nil {
			return err
		}
		if slot >= 0 {
			v.values[slot] = value{set: true, raw: v.data[start:v.pos]}
		}
		return nil
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	default:
		return v.invalid("looking for beginning of value")
	}
}

// clear forgets slot and every field inside it, as a JSON null does.
func (v *validator) clear(slot int) {
	var cleared [maxFields]bool
	cleared[slot] = true
	v.values[slot] = value{}
	for i := slot + 1; i < v.schema.n; i++ {
		if p := v.schema.fields[i].parent; p >= 0 && cleared[p] {
			cleared[i] = true
			v.values[i] = value{}
		}
	}
}

func (v *validator) literal(lit string) error {
	rest := v.data[v.pos:]
	for i := 0; i < len(lit); i++ {
		if i >= len(rest) {
			return v.eof()
		}
		if rest[i] != lit[i] {
			v.pos += i
			return v.invalid("in literal " + lit)
		}
	}
	v.pos += len(lit)
	return nil
}

func (v *validator) enter() error {
	v.depth++
	if v.depth > maxDepth {
		return errTooDeep
	}
	return nil
}

// object reads the object at v.pos; slot is its field, root, or none.
func (v *validator) object(slot int) error {
	if err := v.enter(); err != nil {
		return err
	}
	v.pos++ // '{'
	v.skipSpace()
	if v.pos < len(v.data) && v.data[v.pos] == '}' {
		v.pos++
		v.depth--
		return nil
	}
	for {
		v.skipSpace()
		if v.pos >= len(v.data) {
			return v.eof()
		}
		if v.data[v.pos] != '"' {
			return v.invalid("looking for beginning of object key string")
		}
		start := v.pos
		if err := v.skipString(); err != nil {
			return err
		}
		child := none
		if slot != none {
			child = v.match(slot, v.data[start+1:v.pos-1])
		}
		v.skipSpace()
		if v.pos >= len(v.data) {
			return v.eof()
		}
		if v.data[v.pos] != ':' {
			return v.invalid("after object key")
		}
		v.pos++
		if err := v.value(child); err != nil {
			return err
		}
		v.skipSpace()
		if v.pos >= len(v.data) {
			return v.eof()
		}
		switch v.data[v.pos] {
		case ',':
			v.pos++
		case '}':
			v.pos++
			v.depth--
			return nil
		default:
			return v.invalid("after object key:value pair")
		}
	}
}

func (v *validator) array() error {
	if err := v.enter(); err != nil {
		return err
	}
	v.pos++ // '['
	v.skipSpace()
	if v.pos < len(v.data) && v.data[v.pos] == ']' {
		v.pos++
		v.depth--
		return nil
	}
	for {
		if err := v.value(none); err != nil {
			return err
		}
		v.skipSpace()
		if v.pos >= len(v.data) {
			return v.eof()
		}
		switch v.data[v.pos] {
		case ',':
			v.pos++
		case ']':
			v.pos++
			v.depth--
			return nil
		default:
			return v.invalid("after array element")
		}
	}
}

// match returns the field of object slot that key (raw, still escaped)
// names, or none.
func (v *validator) match(slot int, key []byte) int {
	for i := 0; i < v.schema.n; i++ {
		if f := &v.schema.fields[i]; f.parent == slot && keyMatches(key, f.name) {
			return i
		}
	}
	return none
}

// keyMatches reports whether encoding/json would store the object key
// raw (escaped JSON string content) in the struct field tagged name, a
// lower-case ASCII name: the unescaped key equals name, or equals it under
// Unicode case folding as encoding/json compares names ('ſ' matches 's'
// and the Kelvin sign 'k').
func keyMatches(raw []byte, name string) bool {
	if string(raw) == name {
		return true
	}
	simple := true
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			simple = false
			break
		}
	}
	if simple {
		if len(raw) != len(name) {
			return false
		}
		for i, c := range raw {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != name[i] {
				return false
			}
		}
		return true
	}
	var key string
	if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &key); err != nil {
		return false
	}
	return foldName(key) == foldName(name)
}

// foldName folds s the way encoding/json does to match object keys to
// struct fields case-insensitively: ASCII letters to upper case, other
// runes to the smallest rune of their case-folding orbit, so that
// foldName(x) == foldName(y) exactly when bytes.EqualFold(x, y).
func foldName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteByte(byte(r))
			continue
		}
		for {
			f := unicode.SimpleFold(r)
			if f <= r {
				r = f
				break
			}
			r = f
		}
		b.WriteRune(r)
	}
	return b.String()
}

// subject checks that every field is present and returns their values.
func (v *validator) subject() (Subject, error) {
	var s Subject
	event := v.schema.event
	for i := 0; i < v.schema.n; i++ {
		f := &v.schema.fields[i]
		val := v.values[i]
		if !val.set {
			switch f.kind {
			case kindObject:
				return Subject{}, fmt.Errorf("%s payload has no %s object", event, f.path)
			case kindString:
				return Subject{}, fmt.Errorf("%s payload has no %s string", event, f.path)
			default:
				return Subject{}, fmt.Errorf("%s payload has no %s", event, f.path)
			}
		}
		switch f.kind {
		case kindString:
			str, err := unquote(val.raw)
			if err != nil {
				return Subject{}, fmt.Errorf("%s payload: %s: %w", event, f.path, err)
			}
			if str == "" {
				return Subject{}, fmt.Errorf("%s payload has an empty %s", event, f.path)
			}
			switch f.target {
			case toAction:
				s.Action = str
			case toRepo:
				s.Repo = str
			case toSHA:
				s.SHA = str
			case toRef:
				s.Ref = str
			}
		case kindInt:
			n, err := strconv.ParseInt(string(val.raw), 10, 64)
			if err != nil || n <= 0 {
				return Subject{}, fmt.Errorf("%s payload: %s is %s, not a positive integer", event, f.path, val.raw)
			}
			switch f.target {
			case toNumber:
				if int64(int(n)) != n {
					return Subject{}, fmt.Errorf("%s payload: %s is %s, out of range", event, f.path, val.raw)
				}
				s.Number = int(n)
			case toCommentID:
				s.CommentID = n
			}
		}
	}
	return s, nil
}

// unquote returns the value of the JSON string raw (with its quotes) as
// encoding/json decodes it.
func unquote(raw []byte) (string, error) {
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' || c >= utf8.RuneSelf {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", fmt.Errorf("decode string: %w", err)
			}
			return s, nil
		}
	}
	return string(inner), nil
}

// skipString reads the string at v.pos, checking its escapes and that it
// holds no control character.
func (v *validator) skipString() error {
	d := v.data
	i := v.pos + 1
	for {
		// Eight bytes at a time while none is '"', '\\' or below 0x20: in
		// each byte of the masks, the high bit is set where the byte
		// matches (or, above a match, may be set by the borrow; the lowest
		// set bit is always exact).
		for i+8 <= len(d) {
			x := binary.LittleEndian.Uint64(d[i:])
			q := x ^ (ones * '"')
			bs := x ^ (ones * '\\')
			m := ((q - ones) &^ q) | ((bs - ones) &^ bs) | ((x - ones*0x20) &^ x)
			if m &= highs; m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(d) {
			c := d[i]
			if c == '"' || c == '\\' || c < 0x20 {
				break
			}
			i++
		}
		if i >= len(d) {
			return v.eof()
		}
		switch c := d[i]; {
		case c == '"':
			v.pos = i + 1
			return nil
		case c == '\\':
			if i+1 >= len(d) {
				return v.eof()
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for j := i + 2; j < i+6; j++ {
					if j >= len(d) {
						return v.eof()
					}
					if !isHex(d[j]) {
						v.pos = j
						return v.invalid("in \\u hexadecimal character escape")
					}
				}
				i += 6
			default:
				v.pos = i + 1
				return v.invalid("in string escape code")
			}
		default:
			v.pos = i
			return v.invalid("in string literal")
		}
	}
}

// Masks of skipString's eight-byte scan.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipNumber reads the number at v.pos:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (v *validator) skipNumber() error {
	d := v.data
	i := v.pos
	if d[i] == '-' {
		i++
	}
	digits := func(context string) error {
		if i >= len(d) {
			v.pos = i
			return v.eof()
		}
		if !isDigit(d[i]) {
			v.pos = i
			return v.invalid(context)
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
		return nil
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	default:
		if err := digits("in numeric literal"); err != nil {
			return err
		}
	}
	if i < len(d) && d[i] == '.' {
		i++
		if err := digits("after decimal point in numeric literal"); err != nil {
			return err
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if err := digits("in exponent of numeric literal"); err != nil {
			return err
		}
	}
	v.pos = i
	return nil
}

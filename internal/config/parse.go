package config

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Default returns the configuration lockstep uses before any file is read:
// no repositories. Parse starts from it.
func Default() *Config {
	return &Config{Repos: map[string]*Repo{}}
}

// Load reads the file at path, parses it strictly and validates it. Every
// problem is returned at once, joined with errors.Join, each prefixed with
// path and the line it is on. Every file the configuration names (the
// *_file fields) must exist and hold what the field needs. A clone_url or
// *_file that is a relative local path is made absolute against path's
// directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return load(path, data)
}

// load parses and validates data read from the file name, locating
// validation problems in the file.
func load(name string, data []byte) (*Config, error) {
	c, problems, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(name))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	// Unknown fields do not stop validation: the user gets every problem
	// in one pass, the files the configuration names included.
	for _, p := range append(Problems(c.Validate()), c.checkFiles(dir)...) {
		var e *Error
		if !errors.As(p, &e) {
			return nil, p // Validate returns only *Error
		}
		le := *e
		le.File = name
		le.Line, le.Column = c.locate(e.Path)
		problems = append(problems, &le)
	}
	if len(problems) > 0 {
		return nil, joinSorted(problems)
	}
	c.resolveCloneURLs(dir)
	c.resolveFiles(dir)
	c.resolveLocal(dir)
	c.resolveKubernetesFiles(dir)
	return c, nil
}

// resolveCloneURLs makes every clone_url that is a relative local path
// absolute against dir. URLs ("scheme://…") and scp-like addresses
// ("git@host:path") are left alone.
func (c *Config) resolveCloneURLs(dir string) {
	for _, r := range c.Repos {
		u := r.CloneURL
		if u == "" || filepath.IsAbs(u) || strings.Contains(u, "://") {
			continue
		}
		if colon := strings.IndexByte(u, ':'); colon >= 0 && !strings.ContainsRune(u[:colon], '/') {
			continue // scp-like, as git reads it
		}
		r.CloneURL = filepath.Join(dir, u)
	}
}

// joinSorted joins problems in the order of their lines, those without a
// line last.
func joinSorted(problems []*Error) error {
	key := func(e *Error) int {
		if e.Line == 0 {
			return int(^uint(0) >> 1)
		}
		return e.Line
	}
	slices.SortStableFunc(problems, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(key(a), key(b)), cmp.Compare(a.Column, b.Column))
	})
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// Parse reads a configuration in YAML from r. It is strict: every field
// it does not know is a problem, reported with name (the file name), its
// line and its path, and a suggestion when a known field is spelled
// almost the same. Parse reports every such problem at once, joined with
// errors.Join. It does not validate values: call Validate, or use Load.
func Parse(r io.Reader, name string) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	c, problems, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, joinSorted(problems)
	}
	return c, nil
}

var (
	yamlLineError     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	yamlUnknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)
)

// parse reads data, the content of the file name. It fails (err) on
// invalid YAML and on values of the wrong type; otherwise it returns the
// configuration and the problems with unknown fields, if any, so that
// load can validate the rest.
func parse(name string, data []byte) (c *Config, unknown []*Error, err error) {
	c = Default()
	c.digest = sha256.Sum256(data)

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil, nil // an empty file is the default configuration
		}
		return nil, nil, syntaxError(name, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, nil, syntaxError(name, data, err)
		}
		return nil, nil, &Error{File: name, Line: extra.Line, Column: extra.Column,
			Msg: "a second YAML document; lockstep reads one document per file (remove the '---' separator)"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return c, nil, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, &Error{File: name, Line: root.Line, Column: root.Column,
			Msg: fmt.Sprintf("the configuration must be a mapping with a repos key, not %s", kindName(root))}
	}

	w := walker{
		file:    name,
		pos:     map[string]position{},
		lines:   map[int]lineInfo{},
		visited: map[visit]bool{},
		fields:  map[reflect.Type]*structInfo{},
	}
	w.walk(root, reflect.TypeFor[Config](), "")

	if err := root.Decode(c); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, nil, syntaxError(name, data, err)
		}
		problems := w.problems
		for _, msg := range te.Errors {
			problems = append(problems, w.typeError(msg))
		}
		return nil, nil, joinSorted(problems)
	}

	if c.Repos == nil {
		c.Repos = map[string]*Repo{}
	}
	for k, r := range c.Repos {
		if r == nil {
			c.Repos[k] = &Repo{}
		}
	}
	c.pos = w.pos
	return c, w.problems, nil
}

// syntaxError turns one of yaml.v3's "yaml: line N: msg" errors about
// data into an Error located in file.
func syntaxError(file string, data []byte, err error) error {
	msg := err.Error()
	m := yamlLineError.FindStringSubmatch(msg)
	if m == nil {
		e := &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
		if a := yamlUnknownAnchor.FindStringSubmatch(msg); a != nil {
			// yaml.v3 gives no line for this one: point at the first use.
			if i := bytes.Index(data, []byte("*"+a[1])); i >= 0 {
				e.Line = 1 + bytes.Count(data[:i], []byte("\n"))
			}
		}
		return e
	}
	line, _ := strconv.Atoi(m[1])
	if strings.HasPrefix(m[2], "did not find expected") {
		line = parserErrorLine(data, line)
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + m[2]}
}

// parserErrorLine finds the line of a yaml.v3 parser error (as opposed to
// a scanner error). yaml.v3 reports those at the line before the start of
// the enclosing block, which can be far from the mistake; the mistake is
// on the first line whose inclusion makes the document fail, found by
// bisecting on prefixes of data from the enclosing block on.
func parserErrorLine(data []byte, reported int) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(n int) bool {
		var node yaml.Node
		err := yaml.Unmarshal(bytes.Join(lines[:n], nil), &node)
		return err != nil
	}
	lo, hi := min(reported+1, len(lines)), len(lines) // the prefix of hi lines fails
	if lo < 1 || !fails(hi) {
		return reported + 1
	}
	if fails(lo) {
		return lo
	}
	for hi-lo > 1 { // the prefix of lo lines parses, that of hi lines fails
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// position is where a field was found in the file.
type position struct{ line, column int }

// locate returns the line and column of path, or of its nearest ancestor
// Parse saw, or zeros.
func (c *Config) locate(path string) (line, column int) {
	for p := path; p != ""; p = parentPath(p) {
		if pos, ok := c.pos[p]; ok {
			return pos.line, pos.column
		}
	}
	return 0, 0
}

// Paths name fields the way users write them:
// repos["acme/widget"].presubmits[2].timeout.

func fieldPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func keyPath(parent, key string) string {
	return parent + "[" + strconv.Quote(key) + "]"
}

// parentPath returns path without its last element, or "" for a
// top-level field.
func parentPath(path string) string {
	last, quoted := -1, false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == '.' || c == '['):
			last = i
		}
	}
	if last < 0 {
		return ""
	}
	return path[:last]
}

// walker checks a YAML node tree against the Go types it will be decoded
// into, reporting the mapping keys no field takes, and recording where
// each field is.
type walker struct {
	file     string
	problems []*Error
	// pos maps paths to the position of their key (or sequence item).
	pos map[string]position
	// lines maps a line to the deepest path of a value on it; it locates
	// yaml.v3's type errors, which carry only a line.
	lines map[int]lineInfo
	// visited holds the nodes already walked as a type, so that aliases
	// and merge keys are reported once and cannot loop.
	visited map[visit]bool
	fields  map[reflect.Type]*structInfo
}

type visit struct {
	node *yaml.Node
	typ  reflect.Type
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if w.visited[visit{n, t}] {
		return
	}
	w.visited[visit{n, t}] = true
	w.recordLine(n.Line, path)

	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return // the type decodes itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind == yaml.MappingNode {
			w.walkStruct(n, t, path)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if isMerge(k) {
				w.walkMerge(v, t, path)
				continue
			}
			p := keyPath(path, k.Value)
			w.record(p, k)
			w.walk(v, t.Elem(), p)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			p := indexPath(path, i)
			w.record(p, item)
			w.walk(item, t.Elem(), p)
		}
	}
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, path string) {
	info := w.structInfo(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			w.walkMerge(v, t, path)
			continue
		}
		p := fieldPath(path, k.Value)
		ft, ok := info.types[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown field %q", k.Value)
			if s := suggest(k.Value, info.names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			w.problems = append(w.problems, &Error{File: w.file, Line: k.Line, Column: k.Column, Path: p, Msg: msg})
			continue
		}
		w.record(p, k)
		w.walk(v, ft, p)
	}
}

// walkMerge walks the value of a "<<" merge key: a mapping, or a sequence
// of mappings, whose keys join those of the mapping holding the key.
func (w *walker) walkMerge(v *yaml.Node, t reflect.Type, path string) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			w.walk(item, t, path)
		}
		return
	}
	w.walk(v, t, path)
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

// record notes where path is, keeping the first position found (a merge
// key can bring the same path twice).
func (w *walker) record(path string, n *yaml.Node) {
	if _, ok := w.pos[path]; !ok {
		w.pos[path] = position{n.Line, n.Column}
	}
}

// recordLine notes that a value of path starts on line. Nested values on
// one line keep the deepest path; unrelated ones make the line ambiguous.
func (w *walker) recordLine(line int, path string) {
	if path == "" {
		return
	}
	old, ok := w.lines[line]
	switch {
	case !ok:
		w.lines[line] = lineInfo{path: path}
	case old.ambiguous || isAncestor(path, old.path):
		// keep the deeper path, or the ambiguity
	case isAncestor(old.path, path):
		w.lines[line] = lineInfo{path: path}
	default:
		w.lines[line] = lineInfo{ambiguous: true}
	}
}

// lineInfo is what a line holds: the path of its deepest value, unless
// unrelated values share it.
type lineInfo struct {
	path      string
	ambiguous bool
}

// isAncestor reports whether path a contains path b (or is b).
func isAncestor(a, b string) bool {
	if !strings.HasPrefix(b, a) {
		return false
	}
	return len(b) == len(a) || b[len(a)] == '.' || b[len(a)] == '['
}

// structInfo is the set of YAML keys a struct type takes, its ",inline"
// embedded structs included.
type structInfo struct {
	names []string // in declaration order, for suggestions
	types map[string]reflect.Type
}

func (w *walker) structInfo(t reflect.Type) *structInfo {
	if info, ok := w.fields[t]; ok {
		return info
	}
	info := &structInfo{types: map[string]reflect.Type{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if slices.Contains(strings.Split(opts, ","), "inline") {
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
				}
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			info.names = append(info.names, name)
			info.types[name] = f.Type
		}
	}
	add(t)
	w.fields[t] = info
	return info
}

var yamlTypeError = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")

// typeError turns one of yaml.v3's type errors, "line N: cannot unmarshal
// !!str `abc` into int", into "FILE:N: PATH: expected an integer, got "abc"".
func (w *walker) typeError(msg string) *Error {
	line, rest := 0, msg
	if l, r, ok := strings.Cut(msg, ": "); ok {
		if n, err := strconv.Atoi(strings.TrimPrefix(l, "line ")); err == nil && strings.HasPrefix(l, "line ") {
			line, rest = n, r
		}
	}
	if m := yamlTypeError.FindStringSubmatch(msg); m != nil {
		rest = fmt.Sprintf("expected %s, got %s", goTypeName(m[4]), yamlValueName(m[2], m[3]))
	}
	return &Error{File: w.file, Line: line, Path: w.lines[line].path, Msg: rest}
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "config.") || strings.HasPrefix(t, "*config."):
		return "a mapping"
	}
	return t
}

func yamlValueName(tag, value string) string {
	switch tag {
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!null":
		return "nothing"
	case "!!str":
		return strconv.Quote(value)
	}
	return value
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "an alias"
}

// suggest returns the name in names closest to the unknown key s, if it
// is close enough to be a likely misspelling, otherwise "". Case and '-'
// for '_' do not count, and leaving characters out counts half as much as
// other mistakes, so "skip_if_changed" suggests "skip_if_only_changed".
func suggest(s string, names []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	best, bestCost := "", -1
	for _, n := range names {
		c := typoCost(norm(s), norm(n))
		if c > 2*max(1, len(n)/3) {
			continue
		}
		if bestCost < 0 || c < bestCost {
			best, bestCost = n, c
		}
	}
	return best
}

// typoCost is the edit distance from typed to want, in bytes (field names
// are ASCII), where a character missing from typed costs 1 and an extra or
// wrong character costs 2.
func typoCost(typed, want string) int {
	prev := make([]int, len(want)+1)
	cur := make([]int, len(want)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(typed); i++ {
		cur[0] = 2 * i
		for j := 1; j <= len(want); j++ {
			sub := 2
			if typed[i-1] == want[j-1] {
				sub = 0
			}
			cur[j] = min(prev[j]+2, cur[j-1]+1, prev[j-1]+sub)
		}
		prev, cur = cur, prev
	}
	return prev[len(want)]
}

package web

import (
	"bytes"
	"html/template"
	"strconv"
	"strings"
	"unicode/utf8"
)

// sgr is the graphic rendition a terminal would draw text with: what the
// SGR escape sequences (ESC [ … m) of a log have set so far. Colours are
// 0-15 (the 8 colours and their bright forms) or -1 for the default.
// Pages render it as classes (a-f1, a-g4, a-b…), never as inline styles,
// which the UI's Content-Security-Policy forbids; 256-colour and
// true-colour codes are drawn with the nearest of the 16 colours.
type sgr struct {
	fg, bg                       int
	bold, dim, italic, underline bool
}

func defaultSGR() sgr { return sgr{fg: -1, bg: -1} }

// apply changes s by the parameters of one SGR sequence.
func (s *sgr) apply(params []int) {
	if len(params) == 0 {
		params = []int{0}
	}
	for i := 0; i < len(params); i++ {
		p := params[i]
		switch {
		case p == 0:
			*s = defaultSGR()
		case p == 1:
			s.bold = true
		case p == 2:
			s.dim = true
		case p == 3:
			s.italic = true
		case p == 4:
			s.underline = true
		case p == 22:
			s.bold, s.dim = false, false
		case p == 23:
			s.italic = false
		case p == 24:
			s.underline = false
		case p >= 30 && p <= 37:
			s.fg = p - 30
		case p == 39:
			s.fg = -1
		case p >= 40 && p <= 47:
			s.bg = p - 40
		case p == 49:
			s.bg = -1
		case p >= 90 && p <= 97:
			s.fg = p - 90 + 8
		case p >= 100 && p <= 107:
			s.bg = p - 100 + 8
		case p == 38 || p == 48:
			c, n := extendedColour(params[i+1:])
			i += n
			if c >= -1 {
				if p == 38 {
					s.fg = c
				} else {
					s.bg = c
				}
			}
		}
	}
}

// extendedColour reads the colour of a 38 or 48 parameter from the
// parameters after it (5;N or 2;R;G;B), returning the nearest of the 16
// colours (-2 when malformed) and how many parameters it used.
func extendedColour(ps []int) (int, int) {
	if len(ps) >= 2 && ps[0] == 5 {
		n := ps[1]
		switch {
		case n < 0 || n > 255:
			return -2, 2
		case n < 16:
			return n, 2
		case n < 232:
			n -= 16
			return nearest16(n/36*51, n/6%6*51, n%6*51), 2
		default:
			g := (n-232)*10 + 8
			return nearest16(g, g, g), 2
		}
	}
	if len(ps) >= 4 && ps[0] == 2 {
		return nearest16(ps[1], ps[2], ps[3]), 4
	}
	return -2, len(ps)
}

// nearest16 maps an RGB colour to one of the 16 colours.
func nearest16(r, g, b int) int {
	c := 0
	if r > 127 {
		c |= 1
	}
	if g > 127 {
		c |= 2
	}
	if b > 127 {
		c |= 4
	}
	if max(r, g, b) > 191 {
		c += 8
	}
	if c == 8 && max(r, g, b) < 224 {
		c = 7 // a light grey, not bright black
	}
	return c
}

func (s sgr) classes() string {
	var c []string
	if s.fg >= 0 {
		c = append(c, "a-f"+strconv.Itoa(s.fg))
	}
	if s.bg >= 0 {
		c = append(c, "a-g"+strconv.Itoa(s.bg))
	}
	if s.bold {
		c = append(c, "a-b")
	}
	if s.dim {
		c = append(c, "a-d")
	}
	if s.italic {
		c = append(c, "a-i")
	}
	if s.underline {
		c = append(c, "a-u")
	}
	return strings.Join(c, " ")
}

// renderLine returns one line of a log as HTML: its text escaped, its
// colours as spans, every other escape sequence left out. st carries the
// rendition from line to line, as in a terminal. A carriage return
// rewinds the line, as a terminal's progress bar does: what follows the
// last one is shown.
func renderLine(st *sgr, line []byte) template.HTML {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if i := bytes.LastIndexByte(line, '\r'); i >= 0 {
		// The overwritten part still sets colours for what follows.
		renderSegment(st, line[:i], nil)
		line = line[i+1:]
	}
	var out strings.Builder
	renderSegment(st, line, &out)
	return template.HTML(out.String())
}

// renderSegment walks b, applying its SGR sequences to st, and writes the
// HTML of its text to out unless out is nil.
func renderSegment(st *sgr, b []byte, out *strings.Builder) {
	var text []byte
	open := ""
	flush := func() {
		if len(text) == 0 || out == nil {
			text = text[:0]
			return
		}
		cls := st.classes()
		if cls != open {
			if open != "" {
				out.WriteString("</span>")
			}
			if cls != "" {
				out.WriteString(`<span class="` + cls + `">`)
			}
			open = cls
		}
		template.HTMLEscape(out, bytes.ToValidUTF8(text, []byte(string(utf8.RuneError))))
		text = text[:0]
	}
	for i := 0; i < len(b); {
		c := b[i]
		if c != 0x1b {
			if c < ' ' && c != '\t' {
				i++ // other control characters show as nothing
				continue
			}
			text = append(text, c)
			i++
			continue
		}
		flush()
		n, params, final := parseEscape(b[i:])
		if final == 'm' {
			st.apply(params)
		}
		i += n
	}
	flush()
	if open != "" && out != nil {
		out.WriteString("</span>")
	}
}

// parseEscape reads the escape sequence at the start of b (b[0] is ESC)
// and returns its length, its numeric parameters and its final byte (0
// for a sequence other than a CSI one).
func parseEscape(b []byte) (n int, params []int, final byte) {
	if len(b) < 2 {
		return len(b), nil, 0
	}
	switch b[1] {
	case '[':
		cur, have := 0, false
		for i := 2; i < len(b); i++ {
			c := b[i]
			switch {
			case c >= '0' && c <= '9':
				if cur < 1<<16 {
					cur = cur*10 + int(c-'0')
				}
				have = true
			case c == ';' || c == ':':
				params = append(params, cur)
				cur, have = 0, false
			case c >= 0x40 && c <= 0x7e:
				if have || len(params) > 0 {
					params = append(params, cur)
				}
				return i + 1, params, c
			case c >= 0x20 && c <= 0x3f:
				// private markers (?) and intermediate bytes
			default:
				return i, nil, 0 // not a sequence after all
			}
		}
		return len(b), nil, 0
	case ']':
		// An operating system command (a window title, a hyperlink),
		// ended by BEL or ESC \.
		for i := 2; i < len(b); i++ {
			if b[i] == 0x07 {
				return i + 1, nil, 0
			}
			if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\' {
				return i + 2, nil, 0
			}
		}
		return len(b), nil, 0
	case '(', ')':
		return min(3, len(b)), nil, 0
	}
	return 2, nil, 0
}

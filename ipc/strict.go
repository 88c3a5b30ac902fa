package ipc

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// strictProblem is what the reference decoder refuses and encoding/json
// lets through: a key twice in one object (encoding/json keeps the last,
// the reference refuses the frame: two parsers reading one frame two ways
// is how requests are smuggled), and a lone UTF-16 surrogate escape in a
// string (encoding/json turns it into U+FFFD). Path names where, as a
// dotted field path ("" for the frame itself).
type strictProblem struct {
	path, msg string
	dupKey    string // the key given twice, when that is the problem
}

// checkStrict walks the frame b (valid JSON) and returns its first strict
// problem, nil when there is none.
func checkStrict(b []byte) *strictProblem {
	w := strictWalker{b: b}
	w.value("")
	return w.problem
}

type strictWalker struct {
	b       []byte
	i       int
	problem *strictProblem
}

func (w *strictWalker) ws() { w.i = skipSpace(w.b, w.i) }

func (w *strictWalker) value(path string) {
	w.ws()
	if w.i >= len(w.b) || w.problem != nil {
		return
	}
	switch w.b[w.i] {
	case '{':
		w.object(path)
	case '[':
		w.i++
		for n := 0; w.problem == nil; n++ {
			w.ws()
			if w.i < len(w.b) && w.b[w.i] == ']' {
				w.i++
				return
			}
			w.value(join(path, strconv.Itoa(n)))
			w.ws()
			if w.i < len(w.b) && w.b[w.i] == ',' {
				w.i++
			}
		}
	case '"':
		w.str(path)
	default:
		w.i = skipValue(w.b, w.i)
	}
}

func (w *strictWalker) object(path string) {
	w.i++ // '{'
	seen := map[string]bool{}
	for w.problem == nil {
		w.ws()
		if w.i >= len(w.b) {
			return
		}
		switch w.b[w.i] {
		case '}':
			w.i++
			return
		case ',':
			w.i++
			continue
		}
		key := w.str(path)
		if w.problem != nil {
			return
		}
		if seen[key] {
			w.problem = &strictProblem{path: path, dupKey: key, msg: fmt.Sprintf("the key %q is given twice", key)}
			return
		}
		seen[key] = true
		w.ws()
		if w.i < len(w.b) && w.b[w.i] == ':' {
			w.i++
		}
		w.value(join(path, key))
	}
}

// str reads a string at w.b[w.i] == '"' and checks its \u escapes pair up.
func (w *strictWalker) str(path string) string {
	start := w.i
	end := skipString(w.b, start)
	raw := w.b[start:end]
	w.i = end
	if !strings.Contains(string(raw), `\u`) {
		return string(raw[1 : len(raw)-1])
	}
	for j := 0; j+5 < len(raw); j++ {
		if raw[j] != '\\' {
			continue
		}
		if raw[j+1] != 'u' {
			j++ // an escape of one character (\\ included)
			continue
		}
		r, err := strconv.ParseUint(string(raw[j+2:j+6]), 16, 32)
		if err != nil {
			break
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			// A high surrogate must be followed by a low one.
			if j+11 < len(raw) && raw[j+6] == '\\' && raw[j+7] == 'u' {
				if lo, err := strconv.ParseUint(string(raw[j+8:j+12]), 16, 32); err == nil && lo >= 0xDC00 && lo <= 0xDFFF {
					j += 11
					continue
				}
			}
			w.problem = &strictProblem{path: path, msg: fmt.Sprintf("a lone UTF-16 surrogate (\\u%04x) is not a character", r)}
			return ""
		case r >= 0xDC00 && r <= 0xDFFF:
			w.problem = &strictProblem{path: path, msg: fmt.Sprintf("a lone UTF-16 surrogate (\\u%04x) is not a character", r)}
			return ""
		}
		j += 5
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return string(raw[1 : len(raw)-1])
	}
	return s
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

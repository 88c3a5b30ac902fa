package projections

import (
	"encoding/json"
	"strconv"
)

// termScanner walks a JSON payload once, without building it: Terms runs
// for every event the daemon journals (the index) and for every event a
// query scans, and decoding into map[string]any cost 12 µs an event
// where this costs about 1.
type termScanner struct {
	b   []byte
	i   int
	out *[]string
	bad bool
}

func (s *termScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string token (s.b[s.i] == '"'), unescaping when needed; the
// bytes alias the payload unless it held escapes.
func (s *termScanner) str() []byte {
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i += 2
			continue
		case '"':
			s.i++
			if !escaped {
				return s.b[start+1 : s.i-1]
			}
			var v string
			if json.Unmarshal(s.b[start:s.i], &v) != nil {
				s.bad = true
			}
			return []byte(v)
		}
		s.i++
	}
	s.bad = true
	return nil
}

// skip passes over one value of any kind.
func (s *termScanner) skip() {
	s.ws()
	if s.i >= len(s.b) {
		s.bad = true
		return
	}
	switch s.b[s.i] {
	case '"':
		s.str()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) && !s.bad {
			switch s.b[s.i] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
		s.bad = true
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// number reads a number token's text.
func (s *termScanner) number() string {
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			s.i++
		default:
			return string(s.b[start:s.i])
		}
	}
	return string(s.b[start:s.i])
}

// object reads an object (s.b[s.i] == '{'), adding the terms of its
// fields. handle collects a handle object's fields instead.
func (s *termScanner) object(handle *Handle) {
	s.i++ // '{'
	var id []byte
	hasKey, afterComma := false, false
	for !s.bad {
		s.ws()
		if s.i >= len(s.b) {
			s.bad = true
			return
		}
		if s.b[s.i] == '}' && !afterComma {
			s.i++
			break
		}
		if s.b[s.i] == ',' && !afterComma {
			s.i++
			afterComma = true
			continue
		}
		afterComma = false
		if s.b[s.i] != '"' {
			s.bad = true
			return
		}
		key := s.str()
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			s.bad = true
			return
		}
		s.i++
		s.ws()
		if s.i >= len(s.b) {
			s.bad = true
			return
		}
		if handle != nil {
			switch c := s.b[s.i]; {
			case c == '"':
				v := s.str()
				switch string(key) {
				case "platform":
					handle.Platform = string(v)
				case "container_id":
					handle.ContainerID = string(v)
				case "id":
					handle.ID = string(v)
				}
			case string(key) == "pid" && c >= '0' && c <= '9':
				if p, err := strconv.ParseUint(s.number(), 10, 32); err == nil {
					handle.PID = uint32(p)
				}
			default:
				s.skip()
			}
			continue
		}
		if string(key) == "public_key" {
			hasKey = true
		}
		if skipFields[string(key)] {
			s.skip()
			continue
		}
		switch s.b[s.i] {
		case '"':
			v := s.str()
			if string(key) == "id" {
				id = v
			}
			if kind, ok := fieldKinds[string(key)]; ok {
				addTerm(kind, string(v), s.out)
			}
		case '{':
			if string(key) == "handle" {
				var h Handle
				s.object(&h)
				if h.Platform != "" {
					*s.out = append(*s.out, TermHandle+h.Key())
				}
			} else {
				s.object(nil)
			}
		case '[':
			s.array(key)
		default:
			s.skip()
		}
	}
	// A guest's id is its handle (guest_managed:<id>).
	if len(id) > 0 && hasKey {
		*s.out = append(*s.out, TermHandle+GuestHandle(string(id)).Key())
	}
}

// array reads an array: strings take the kind of the field holding it,
// objects are walked.
func (s *termScanner) array(key []byte) {
	s.i++ // '['
	kind, indexed := fieldKinds[string(key)]
	for !s.bad {
		s.ws()
		if s.i >= len(s.b) {
			s.bad = true
			return
		}
		switch s.b[s.i] {
		case ']':
			s.i++
			return
		case ',':
			s.i++
		case '"':
			v := s.str()
			if indexed {
				addTerm(kind, string(v), s.out)
			}
		case '{':
			s.object(nil)
		default:
			s.skip()
		}
	}
}

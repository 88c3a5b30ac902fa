package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets of the wire decoder. The seeds are the committed corpora
// under testdata/fuzz/<Target>/ (the protocol vectors, the strict-frame
// fixtures and what the fuzzer found worth keeping; written by
// TestWriteFuzzSeeds) plus the f.Add lines below. Every `go test` runs the
// seeds; `make fuzz` runs each target for a bounded time.

// FuzzDecodeFrame: the decoder never panics; an accepted frame has no key
// twice in any object and no lone surrogate in any string (checked here by
// an independent scanner on encoding/json's tokens); it re-encodes to a
// frame that decodes to the same value (decode → encode → decode), and the
// encoding is then stable. A refusal is a *DecodeError; one that keeps the
// connection (HasID) carries the frame's own id.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(`{"frame":"request","id":1,"request":{"op":"add_peer","scope":null}}`))
	f.Add([]byte(`{"frame":"request","id":1,"request":{"op":"status","op":"shutdown"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Msg == "" {
				t.Fatalf("%q: refusal %T %v is not a *DecodeError with a message", b, err, err)
			}
			if de.HasID {
				if id, ok := topLevelID(b); !ok || id != de.ID {
					t.Fatalf("%q: refusal keeps the connection with id %d, frame id %d (%v)", b, de.ID, id, ok)
				}
			}
			return
		}
		if key, ok := duplicateKey(b); ok {
			t.Fatalf("%q: accepted with the key %q twice in one object", b, key)
		}
		if loneSurrogate(b) {
			t.Fatalf("%q: accepted with a lone UTF-16 surrogate", b)
		}
		out, err := EncodeFrame(fr)
		if err != nil {
			t.Fatalf("%q: accepted frame %+v does not encode: %v", b, fr, err)
		}
		fr2, err := DecodeFrame(out)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %s: %v", out, err)
		}
		if !sameFrame(fr, fr2) {
			t.Fatalf("decode → encode → decode differs:\nin:  %q\nout: %s\nfirst:  %#v\nsecond: %#v", b, out, fr, fr2)
		}
		out2, err := EncodeFrame(fr2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding not stable:\n%s\n%s", out, out2)
		}
	})
}

// FuzzDecodeRequest: a frame's request body, decoded as the server does
// (inside a request frame with id 7). An accepted request re-encodes and
// decodes to the same value; every refusal is a readable *DecodeError
// with the frame's id (the connection serves on) whose message names the
// field, the op or the request at fault — never a panic and never a
// closed connection for a body that is valid JSON.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"status"}`))
	f.Add([]byte(`{"op":"attach_container","handle":{"platform":"windows_container","container_id":"c","ip":"10.0.0.1"},"service":"web","join_global":false}`))
	f.Add([]byte(`{"op":"journal_query","types":[],"reverse":false}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		frame := append(append([]byte(`{"frame":"request","id":7,"request":`), body...), '}')
		fr, err := DecodeFrame(frame)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%q: refusal %T %v is not a *DecodeError", body, err, err)
			}
			if !utf8.Valid(body) || !json.Valid(body) {
				return // unreadable: the connection closes, as PROTOCOL.md says
			}
			if !de.HasID || de.ID != 7 {
				t.Fatalf("%q: a readable request refused without its id: %+v", body, de)
			}
			if !namesWhere(de.Msg) {
				t.Fatalf("%q: refusal names no field, op or request: %q", body, de.Msg)
			}
			return
		}
		if fr.Kind != "request" || fr.ID != 7 || fr.Request == nil {
			t.Fatalf("%q: decoded as %+v", body, fr)
		}
		out, err := EncodeRequest(7, fr.Request)
		if err != nil {
			t.Fatalf("%q: accepted request %#v does not encode: %v", body, fr.Request, err)
		}
		fr2, err := DecodeFrame(out)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %s: %v", out, err)
		}
		if !sameFrame(fr, fr2) {
			t.Fatalf("request round trip differs:\nin:  %q\nout: %s\nfirst:  %#v\nsecond: %#v", body, out, fr.Request, fr2.Request)
		}
	})
}

// namesWhere reports whether a refusal message says where the fault is:
// a field path, the op (unknown or missing), or the request itself.
func namesWhere(msg string) bool {
	for _, p := range []string{"field ", "unknown op ", "request: "} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// canonicalFrame is f with what the encoder normalizes by design made
// equal: an event frame carries no id.
func canonicalFrame(f Frame) Frame {
	if f.Kind == "event" {
		f.ID = 0
	}
	return f
}

// sameValue is reflect.DeepEqual except for what the wire cannot tell
// apart: an empty list and an absent one (the encoder omits empty lists),
// and raw JSON that differs only in insignificant space.
func sameValue(a, b reflect.Value) bool {
	if !a.IsValid() || !b.IsValid() {
		return a.IsValid() == b.IsValid()
	}
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == reflect.TypeFor[json.RawMessage]() {
		var ca, cb bytes.Buffer
		if json.Compact(&ca, a.Bytes()) != nil || json.Compact(&cb, b.Bytes()) != nil {
			return bytes.Equal(a.Bytes(), b.Bytes())
		}
		return bytes.Equal(ca.Bytes(), cb.Bytes())
	}
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[netip.Addr]() {
			return a.Interface() == b.Interface()
		}
		for i := 0; i < a.NumField(); i++ {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			if !sameValue(a.MapIndex(k), b.MapIndex(k)) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func sameFrame(a, b Frame) bool {
	return sameValue(reflect.ValueOf(canonicalFrame(a)), reflect.ValueOf(canonicalFrame(b)))
}

// topLevelID is the frame's "id" member as a u64 when it is one.
func topLevelID(b []byte) (uint64, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return 0, false
	}
	raw, ok := m["id"]
	if !ok {
		return 0, false
	}
	return parseID(raw)
}

// duplicateKey finds a key given twice in one object of the valid JSON b,
// with encoding/json's tokenizer (independent of strict.go's walker).
func duplicateKey(b []byte) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	type level struct {
		obj    bool
		keys   map[string]bool
		expect bool // the next token in this object is a key
	}
	var stack []*level
	for {
		tok, err := d.Token()
		if err == io.EOF || err != nil {
			return "", false
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.expect {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return k, true
				}
				top.keys[k] = true
				top.expect = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			if top != nil && top.obj {
				top.expect = true
			}
			stack = append(stack, &level{obj: true, keys: map[string]bool{}, expect: true})
		case json.Delim('['):
			if top != nil && top.obj {
				top.expect = true
			}
			stack = append(stack, &level{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if top != nil && top.obj {
				top.expect = true // a value ends; a key comes next
			}
		}
	}
}

// loneSurrogate reports a \uXXXX escape of a UTF-16 surrogate that is not
// part of a high-low pair, in any string of b (scanned byte by byte).
func loneSurrogate(b []byte) bool {
	inStr := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inStr {
			inStr = c == '"'
			continue
		}
		switch c {
		case '"':
			inStr = false
		case '\\':
			if i+1 < len(b) && b[i+1] == 'u' && i+5 < len(b) {
				r, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
				if err == nil && r >= 0xD800 && r <= 0xDFFF {
					if r >= 0xDC00 {
						return true // a low surrogate first
					}
					if !(i+11 < len(b) && b[i+6] == '\\' && b[i+7] == 'u') {
						return true
					}
					lo, err := strconv.ParseUint(string(b[i+8:i+12]), 16, 32)
					if err != nil || lo < 0xDC00 || lo > 0xDFFF {
						return true
					}
					i += 11
					continue
				}
				i += 5
				continue
			}
			i++ // a one-character escape
		}
	}
	return false
}

// FuzzSplitObject: the fast object splitter agrees with encoding/json on
// every object, and refuses null.
func FuzzSplitObject(f *testing.F) {
	f.Add([]byte(`{"a\"b":1, "c" : [1,{"d":"}"}] ,"e":"\\"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var want map[string]json.RawMessage
		if !utf8.Valid(b) || json.Unmarshal(b, &want) != nil {
			return // frames are checked for UTF-8 before splitting
		}
		if want == nil {
			// JSON null: encoding/json leaves the map nil; the splitter
			// refuses anything but an object, as the decoder must.
			if _, err := parseObject(b, ""); err == nil {
				t.Fatalf("%q: split as an object", b)
			}
			return
		}
		got, err := parseObject(b, "")
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d members, encoding/json has %d", b, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(bytes.TrimSpace(got[k]), bytes.TrimSpace(v)) {
				t.Fatalf("%q: member %q = %q, encoding/json %q", b, k, got[k], v)
			}
		}
	})
}

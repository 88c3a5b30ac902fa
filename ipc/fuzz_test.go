package ipc

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeFrame: the decoder never panics, and whatever it accepts
// re-encodes to a frame that decodes to the same encoding.
func FuzzDecodeFrame(f *testing.F) {
	for _, name := range []string{"testdata/golden-v1.tsv"} {
		for _, row := range readTSV(f, name) {
			f.Add([]byte(row[1]))
		}
	}
	f.Add([]byte(`{"frame":"request","id":1,"request":{"op":"add_peer","scope":null}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			return
		}
		out, err := EncodeFrame(fr)
		if err != nil {
			return // e.g. an invalid zero address inside an accepted optional
		}
		fr2, err := DecodeFrame(out)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %s: %v", out, err)
		}
		out2, err := EncodeFrame(fr2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding not stable:\n%s\n%s", out, out2)
		}
	})
}

// FuzzSplitObject: the fast object splitter agrees with encoding/json.
func FuzzSplitObject(f *testing.F) {
	for _, row := range readTSV(f, "testdata/golden-v1.tsv") {
		f.Add([]byte(row[1]))
	}
	f.Add([]byte(`{"a\"b":1, "c" : [1,{"d":"}"}] ,"e":"\\"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var want map[string]json.RawMessage
		if !utf8.Valid(b) || json.Unmarshal(b, &want) != nil {
			return // frames are checked for UTF-8 before splitting
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

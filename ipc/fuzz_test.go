package ipc

import (
	"bytes"
	"testing"
)

// FuzzDecodeFrame: the decoder never panics, and whatever it accepts
// re-encodes to a frame that decodes to the same encoding.
func FuzzDecodeFrame(f *testing.F) {
	for _, name := range []string{"testdata/golden-v1.tsv"} {
		for _, row := range readTSV(&testing.T{}, name) {
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

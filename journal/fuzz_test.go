package journal

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeEnvelope: the envelope decoder never panics; it accepts only
// the one encoding the encoder writes (an accepted envelope re-encodes to
// the same bytes, hash included once the hash is recomputed), so one
// event cannot be stored in two byte forms that both check out; a
// refusal is ErrMalformed or ErrHashMismatch; the hash check accepts
// exactly the envelopes whose last 32 bytes are the SHA-256 of the rest.
func FuzzDecodeEnvelope(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzDecodeEnvelope (TestFuzzSeeds).
	f.Add((&Envelope{Seq: 1, Type: "node_identity_set", Cause: Cause{Op: "boot"}, Payload: []byte(`{}`)}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Envelope
		err := decodeInto(&e, b, false)
		checked, herr := DecodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("refusal %v is not ErrMalformed", err)
			}
			if herr == nil {
				t.Fatalf("the hash-checking decoder accepts what the other refuses (%v)", err)
			}
			return
		}
		sum := sha256.Sum256(b[:len(b)-32])
		hashOK := bytes.Equal(sum[:], b[len(b)-32:])
		if hashOK != (herr == nil) {
			t.Fatalf("hash check: content hash matches %v, DecodeEnvelope error %v", hashOK, herr)
		}
		if herr != nil && !errors.Is(herr, ErrHashMismatch) {
			t.Fatalf("hash refusal %v is not ErrHashMismatch", herr)
		}
		if herr == nil && !reflect.DeepEqual(*checked, e) {
			t.Fatalf("the two decoders disagree:\n%+v\n%+v", *checked, e)
		}
		out := e.Encode()
		if !bytes.Equal(out[:len(out)-32], b[:len(b)-32]) {
			t.Fatalf("accepted envelope is not in the encoder's form:\nin:  %x\nout: %x", b, out)
		}
		back, err := DecodeEnvelope(out)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		e.Hash = back.Hash
		if !reflect.DeepEqual(*back, e) {
			t.Fatalf("round trip differs:\n%+v\n%+v", e, *back)
		}
	})
}

// The forms FuzzDecodeEnvelope found (or that sit next to what it found)
// that decode to an envelope the encoder writes otherwise: refused, even
// with a hash that checks out, so an event has one stored form.
func TestEnvelopeRefusesOtherForms(t *testing.T) {
	e := Envelope{Seq: 7, Type: "t", Cause: Cause{Op: "op", Exe: "/x"}, Payload: []byte("{}")}
	good := e.Encode()
	if _, err := DecodeEnvelope(good); err != nil {
		t.Fatal(err)
	}
	rehash := func(b []byte) []byte {
		sum := sha256.Sum256(b[:len(b)-32])
		copy(b[len(b)-32:], sum[:])
		return b
	}
	flagsAt := 1 + 16 + 8 + 8 + 2
	for name, mutate := range map[string]func([]byte) []byte{
		"unknown flag": func(b []byte) []byte { b[flagsAt] |= 1 << 5; return b },
		"padded type length": func(b []byte) []byte {
			// type "t": 0x01 't' becomes 0x81 0x00 't'
			return append(append(append([]byte{}, b[:flagsAt+1]...), 0x81, 0x00), b[flagsAt+2:]...)
		},
		"exe flag, empty exe": func([]byte) []byte {
			c := Envelope{Seq: 7, Type: "t", Cause: Cause{Op: "op"}, Payload: []byte("{}")}
			b := c.Encode()
			// flag bit 2 set and an empty str inserted after the pid.
			at := flagsAt + 1 + 2 + 3 + 8 + 4 + 4
			b[flagsAt] |= flagExe
			return append(append(append([]byte{}, b[:at]...), 0x00), b[at:]...)
		},
	} {
		b := rehash(mutate(append([]byte(nil), good...)))
		if _, err := DecodeEnvelope(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %x decoded (err %v), want ErrMalformed", name, b, err)
		}
	}
}

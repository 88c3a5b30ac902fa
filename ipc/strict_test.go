package ipc

import (
	"strings"
	"testing"
)

// TestStrictFrames: a key given twice anywhere in a frame, and a lone
// UTF-16 surrogate in any string, are refused as the reference decoder
// refuses them: err naming the field with the frame's id, or, when the id
// itself is given twice, an unreadable frame (no id: the connection
// closes). Proper surrogate pairs and escapes still decode.
func TestStrictFrames(t *testing.T) {
	for _, tc := range []struct {
		frame  string
		hasID  bool
		inMsg  string
		decode bool // decodes without error
	}{
		{`{"frame":"request","id":1,"id":2,"request":{"op":"status"}}`, false, `"id" is given twice`, false},
		{`{"frame":"request","id":1,"request":{"op":"status","op":"shutdown"}}`, true, `field request: the key "op" is given twice`, false},
		{`{"frame":"request","frame":"response","id":1,"request":{"op":"status"}}`, true, `frame: the key "frame" is given twice`, false},
		{`{"frame":"request","id":7,"request":{"op":"register_dns","name":"a.b","name":"c.d","ip":"10.0.0.1"}}`, true, `"name" is given twice`, false},
		{`{"frame":"request","id":7,"request":{"op":"add_peer","public_key":"k","endpoint":"","allowed_ips":"10.1.0.0/24","persistent_keepalive_secs":0,"scope":{"scope":"service","service":"a","service":"b"}}}`, true, `field request.scope: the key "service" is given twice`, false},
		{`{"frame":"request","id":3,"request":{"op":"register_dns","name":"a\ud800.b","ip":"10.0.0.1"}}`, true, `field request.name: a lone UTF-16 surrogate (\ud800)`, false},
		{`{"frame":"request","id":3,"request":{"op":"register_dns","name":"a\udc00","ip":"10.0.0.1"}}`, true, `lone UTF-16 surrogate (\udc00)`, false},
		{`{"frame":"request","id":3,"request":{"op":"register_dns","name":"\ud83d\ude00x","ip":"10.0.0.1"}}`, true, "", true},
		{`{"frame":"request","id":3,"request":{"op":"register_dns","name":"a\\ud800b","ip":"10.0.0.1"}}`, true, "", true}, // an escaped backslash, not an escape
		{`{"frame":"request","id":4,"request":{"op":"status"}}`, true, "", true},
	} {
		_, err := DecodeFrame([]byte(tc.frame))
		if tc.decode {
			if err != nil {
				t.Errorf("%s: %v", tc.frame, err)
			}
			continue
		}
		de, ok := err.(*DecodeError)
		if !ok {
			t.Errorf("%s: decoded (err %v); the reference decoder refuses it", tc.frame, err)
			continue
		}
		if de.HasID != tc.hasID || !strings.Contains(de.Msg, tc.inMsg) {
			t.Errorf("%s: %+v; want has id %v and a message with %q", tc.frame, de, tc.hasID, tc.inMsg)
		}
	}
}

// Through the server: a duplicate key in a request is answered err with
// the frame's id and the connection serves on; a frame with its id twice
// closes the connection.
func TestServerRefusesDuplicateKeys(t *testing.T) {
	path, _ := startServer(t)
	c := rawConn(t, path)
	if err := WriteFrame(c, []byte(`{"frame":"request","id":5,"request":{"op":"status","op":"shutdown"}}`)); err != nil {
		t.Fatal(err)
	}
	f := readResp(t, c)
	if e, isErr := f.Response.(Err); !isErr || f.ID != 5 || !strings.Contains(e.Message, `"op" is given twice`) {
		t.Fatalf("want err naming the duplicate op with id 5, got %+v", f)
	}
	if err := WriteFrame(c, statusFrame(6)); err != nil {
		t.Fatal(err)
	}
	if f := readResp(t, c); f.ID != 6 {
		t.Fatalf("connection unusable after the refusal: %+v", f)
	}
	if err := WriteFrame(c, []byte(`{"frame":"request","id":7,"id":8,"request":{"op":"status"}}`)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
}

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

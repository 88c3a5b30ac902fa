package wireguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type goPeer string

func (p goPeer) String() string { return string(p) }

func jsonLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// "Failed to send handshake initiation" every 5 s for an unreachable peer
// is one line at once, then at most one a minute with the count left out;
// another peer, or another message, has its own line; other errors pass
// through at warn, verbose lines go to debug.
func TestGoLoggerFoldsPerPeerRepeats(t *testing.T) {
	var buf bytes.Buffer
	g := newGoLogger(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "ovl0")
	now := time.Unix(1_700_000_000, 0)
	g.now = func() time.Time { return now }
	a, b := goPeer("peer(AbCd…WxYz)"), goPeer("peer(QrSt…MnOp)")
	sendErr := errors.New("write udp4 0.0.0.0:51820->192.0.2.9:51820: sendmsg: network is unreachable")
	// wireguard-go's format, device/send.go.
	const initiation = "%v - Failed to send handshake initiation: %v"
	for range 12 { // one minute of retries every 5 s
		g.errorf(initiation, a, sendErr)
		now = now.Add(5 * time.Second)
	}
	lines := jsonLines(t, buf.Bytes())
	if len(lines) != 1 {
		t.Fatalf("12 failures in a minute: %d lines: %v", len(lines), lines)
	}
	if l := lines[0]; l["level"] != "WARN" || l["peer"] != string(a) || l["device"] != "ovl0" ||
		l["msg"] != "wireguard-go: Failed to send handshake initiation: "+sendErr.Error() {
		t.Fatalf("first line: %v", l)
	}
	g.errorf(initiation, a, sendErr) // 60 s after the first
	g.errorf(initiation, b, sendErr)
	g.errorf("%v - Failed to send data packets: %v", a, sendErr)
	g.errorf("Failed to read packet from TUN device: %v", errors.New("EOF"))
	g.verbosef("%v - Sending handshake initiation", a)
	lines = jsonLines(t, buf.Bytes())[1:]
	if len(lines) != 5 {
		t.Fatalf("%d lines: %v", len(lines), lines)
	}
	if l := lines[0]; l["suppressed"] != float64(11) || l["peer"] != string(a) {
		t.Errorf("the line after a minute: %v", l)
	}
	if l := lines[1]; l["peer"] != string(b) || l["suppressed"] != nil {
		t.Errorf("another peer: %v", l)
	}
	if l := lines[2]; l["peer"] != string(a) || !strings.Contains(l["msg"].(string), "data packets") {
		t.Errorf("another message: %v", l)
	}
	if l := lines[3]; l["level"] != "WARN" || l["msg"] != "wireguard-go: Failed to read packet from TUN device: EOF" || l["peer"] != nil {
		t.Errorf("a device error: %v", l)
	}
	if l := lines[4]; l["level"] != "DEBUG" || l["msg"] != "wireguard-go: peer(AbCd…WxYz) - Sending handshake initiation" {
		t.Errorf("verbose: %v", l)
	}
	// Verbose lines are not even formatted above debug.
	buf.Reset()
	quiet := newGoLogger(slog.New(slog.NewJSONHandler(&buf, nil)), "ovl0")
	quiet.verbosef("%v - Sending keepalive packet", a)
	if buf.Len() != 0 {
		t.Errorf("verbose at info: %s", buf.String())
	}
}

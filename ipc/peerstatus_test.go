package ipc

import (
	"encoding/json"
	"strings"
	"testing"
)

// The PeerStatus extensions (rx/tx bytes, health) are optional: a status
// without them (the reference daemon's) decodes, and one with them
// round-trips; zero counters and unknown health are left out.
func TestPeerStatusExtensions(t *testing.T) {
	var p PeerStatus
	if err := json.Unmarshal([]byte(`{"public_key":"k","endpoint":"1.2.3.4:5","allowed_ips":"10.0.0.0/24","last_handshake_unix_secs":7}`), &p); err != nil {
		t.Fatal(err)
	}
	if p.RxBytes != 0 || p.Health != "" {
		t.Fatalf("%+v", p)
	}
	b, _ := json.Marshal(p)
	if strings.Contains(string(b), "rx_bytes") || strings.Contains(string(b), "health") {
		t.Fatalf("zero extensions are encoded: %s", b)
	}
	p.RxBytes, p.TxBytes, p.Health = 1024, 2048, PeerHealthy
	b, _ = json.Marshal(p)
	var q PeerStatus
	if err := json.Unmarshal(b, &q); err != nil || q != p {
		t.Fatalf("round trip %s: %+v %v", b, q, err)
	}
	if err := json.Unmarshal([]byte(`{"public_key":"k","endpoint":"","allowed_ips":"","last_handshake_unix_secs":0,"health":null}`), &q); err == nil {
		t.Fatal("a null health was accepted")
	}
}

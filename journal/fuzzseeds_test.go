package journal

import (
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/zlayer/overlayd/tools/fuzzcorpus"
)

// TestFuzzSeeds keeps testdata/fuzz/FuzzDecodeEnvelope in step with
// envelopes of every shape the encoder writes: each flag alone and
// together, an executable in the cause, empty and large payloads, the
// first event of a chain (zero previous hash) and a linked one.
func TestFuzzSeeds(t *testing.T) {
	id := ulid.MustParse("01JDZQ6X0000000000000000AB")
	at := time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)
	prev := (&Envelope{ID: id, Seq: 1, Time: at, Type: "node_identity_set", Cause: Cause{Op: "boot"}, Payload: []byte(`{"public_key":"k"}`)}).Encode()
	var linked [32]byte
	copy(linked[:], prev[len(prev)-32:])
	envs := map[string]Envelope{
		"first":     {ID: id, Seq: 1, Time: at, Type: "node_identity_set", Cause: Cause{Op: "boot"}, Payload: []byte(`{"public_key":"k"}`)},
		"linked":    {ID: id, Seq: 2, Time: at, Type: "global_overlay_set", Version: 1, Cause: Cause{Op: "setup_global_overlay", RequestID: 3}, Payload: []byte(`{"deployment":"prod"}`), PrevHash: linked},
		"ignorable": {ID: id, Seq: 3, Time: at, Type: "peer_health_changed", Ignorable: true, Cause: Cause{Op: "reconcile"}, Payload: []byte(`{}`), PrevHash: linked},
		"peercred":  {ID: id, Seq: 4, Time: at, Type: "ip_allocated", Cause: Cause{Op: "allocate_ip", RequestID: 9, HasPeer: true, UID: 1000, PID: 4242}, Payload: []byte(`{"ip":"10.200.0.5"}`), PrevHash: linked},
		"exe":       {ID: id, Seq: 5, Time: at, Type: "ip_released", Cause: Cause{Op: "release_ip", RequestID: 10, HasPeer: true, PID: 77, Exe: "/usr/bin/zlayer"}, Payload: []byte(`{"ip":"10.200.0.5"}`), PrevHash: linked},
		"all-flags": {ID: id, Seq: 1 << 40, Time: at, Type: "x", Version: 65535, Ignorable: true, Cause: Cause{Op: "o", RequestID: 1<<64 - 1, HasPeer: true, UID: 1<<32 - 1, PID: 1<<32 - 1, Exe: "/e"}, Payload: nil, PrevHash: linked},
		"empty":     {},
		"big":       {ID: id, Seq: 6, Time: at, Type: "dns_registered", Cause: Cause{Op: "register_dns"}, Payload: make([]byte, 300), PrevHash: linked},
	}
	var seeds []fuzzcorpus.Seed
	for name, e := range envs {
		seeds = append(seeds, fuzzcorpus.Seed{Name: name, Args: []any{e.Encode()}})
	}
	fuzzcorpus.Check(t, ".", "FuzzDecodeEnvelope", seeds)
}

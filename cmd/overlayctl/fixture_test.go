package main

import (
	"flag"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// Keys of the fixture node (base64 of 32 bytes; not real key pairs).
const (
	fixNodeKey  = "bm9kZS1rZXktZm9yLWdvbGRlbi10ZXN0cy0wMDAwMDA="
	fixPeerA    = "cGVlci1hLWtleS1mb3ItZ29sZGVuLXRlc3RzLTAwMDA="
	fixPeerB    = "cGVlci1iLWtleS1mb3ItZ29sZGVuLXRlc3RzLTAwMDA="
	fixDedKey   = "ZGVkaWNhdGVkLWtleS1mb3ItZ29sZGVuLXRlc3RzLTA="
	fixDedPeer  = "ZGVkLXBlZXIta2V5LWZvci1nb2xkZW4tdGVzdHMtMDA="
	fixGuestKey = "Z3Vlc3Qta2V5LWZvci1nb2xkZW4tdGVzdHMtMDAwMDA="
)

// fixtureNode journals a small but complete node under dataDir, byte for
// byte the same on every run (a fixed journal id, clock and entropy): an
// identity, a global overlay, a shared and a dedicated service, peers in
// both scopes, a container and a guest attachment, a reservation and DNS
// names, with causes from requests (uid, pid) and from the reconciler. It
// snapshots at the head and returns the state.
func fixtureNode(t *testing.T, dataDir string) *projections.State {
	t.Helper()
	id, err := journal.ParseID("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	st, err := journal.Open(filepath.Join(dataDir, "overlayd"), replay.Indexing(journal.Options{
		NoSync: true, CreateWithID: &id,
		Clock:   func() time.Time { clock = clock.Add(1500 * time.Millisecond); return clock },
		Entropy: rand.New(rand.NewSource(1)),
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := projections.New()
	cfg := projections.DefaultConfig()
	req := uint64(0)
	do := func(c projections.Command, fromRequest bool) {
		t.Helper()
		d, err := projections.Decide(s, cfg, c)
		if err != nil {
			t.Fatalf("%s: %v", c.Op(), err)
		}
		cause := journal.Cause{Op: c.Op()}
		if fromRequest {
			req++
			cause.RequestID, cause.HasPeer, cause.UID, cause.PID = req, true, 0, 3100+uint32(req)
		}
		var recs []journal.Record
		for _, ev := range d.Events {
			if err := s.Apply(ev); err != nil {
				t.Fatal(err)
			}
			s.Seq++
			typ, ver, payload, err := projections.EncodeEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, journal.Record{Type: typ, Version: ver, Cause: cause, Payload: payload})
		}
		if len(recs) > 0 {
			if _, err := st.Append(recs).Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	do(projections.SetNodeIdentity{PublicKey: fixNodeKey, Source: "generated"}, false)
	do(projections.SetNodeID{NodeID: 7}, true)
	do(projections.SetupGlobal{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: "10.200.3.0/24", Port: 51820}, true)
	do(projections.SetupService{Service: "web", Mode: "shared"}, true)
	do(projections.SetupService{Service: "db", Mode: "dedicated", NewPublicKey: fixDedKey}, true)
	do(projections.AddPeer{PublicKey: fixPeerA, Endpoint: "192.0.2.10:51820", AllowedIPs: "10.200.4.0/24", Keepalive: 25}, true)
	do(projections.AddPeer{PublicKey: fixPeerB, Endpoint: "192.0.2.11:51820", AllowedIPs: "10.200.5.0/24"}, true)
	do(projections.AddPeer{Scope: projections.Scope{Service: "db"}, PublicKey: fixDedPeer, Endpoint: "192.0.2.12:51421", AllowedIPs: "10.201.0.0/28"}, true)
	do(projections.Attach{Handle: projections.Handle{Platform: projections.PlatformLinuxPID, PID: 4242}, Service: "web", JoinGlobal: true,
		DNSServer: netip.MustParseAddr("10.200.3.1"), DNSDomain: "prod.local", Proc: projections.ProcInfo{Exists: true, NetnsInode: 4026532301}}, true)
	do(projections.Attach{Handle: projections.GuestHandle("vm-1"), Service: "web", NewGuestKey: fixGuestKey,
		NodeAddress: netip.MustParseAddr("192.0.2.1")}, true)
	do(projections.AllocateIP{Service: "web"}, true)
	do(projections.AllocateIP{}, true)
	do(projections.AllocateIP{}, true)
	var released netip.Addr // the first slice reservation
	for a, o := range s.IPAM.Owners {
		if o.Kind == projections.OwnerReservation && o.Pool == "slice" && (!released.IsValid() || a.Less(released)) {
			released = a
		}
	}
	do(projections.RegisterDNS{Name: "api.web.prod.local", IP: netip.MustParseAddr("10.200.3.7")}, true)
	do(projections.RegisterDNS{Name: "db.prod.local", IP: netip.MustParseAddr("fd00::7")}, true)
	do(projections.ObserveEndpoints{Observed: []projections.Observation{{PublicKey: fixPeerA, Endpoint: "198.51.100.4:40000"}}}, false)
	do(projections.ReleaseIP{IP: released}, true)
	_, hash := st.Head()
	if err := st.SaveSnapshot(replay.Snapshot(s, hash)); err != nil {
		t.Fatal(err)
	}
	return s
}

// golden compares got with testdata/name.golden (-update rewrites it).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test -run %s -update rewrites it):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// scrub replaces the test's temporary data dir by $DATA.
func scrub(out, dataDir string) string {
	return strings.ReplaceAll(out, dataDir, "$DATA")
}

package replay

import (
	"encoding/base64"
	"fmt"
	"math/rand"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// history is a generated journal: the envelopes as stored, and the state
// they give.
type history struct {
	envs  [][]byte
	types []string
	state []byte // canonical JSON, Seq cleared
}

// canonical is a state's canonical JSON without its sequence number.
func canonical(t *testing.T, s *projections.State) []byte {
	t.Helper()
	c := s.Clone()
	c.Seq = 0
	b, err := c.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// genJournal journals about n events in dir/overlayd the way a busy node
// makes them (addresses allocated and released, DNS names, peers), in
// commits of random sizes, and takes a snapshot at the head as the daemon
// does at shutdown.
func genJournal(t *testing.T, dataDir string, n int, r *rand.Rand) history {
	t.Helper()
	return genJournalKeep(t, dataDir, n, r, true)
}

// genJournalKeep is genJournal; keepEnvs false leaves history.envs and
// types empty (a 1M-event journal need not be held in memory twice).
func genJournalKeep(t *testing.T, dataDir string, n int, r *rand.Rand, keepEnvs bool) history {
	t.Helper()
	dir := filepath.Join(dataDir, "overlayd")
	// A file that is a function of r: fixed id, clock and entropy.
	id := journal.ID{0x0f, 0xee}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	opts := journal.Options{NoSync: true, CreateWithID: &id, Entropy: rand.New(rand.NewSource(r.Int63())),
		Clock: func() time.Time { now = now.Add(time.Millisecond); return now }}
	if !keepEnvs {
		// The lean journals (the compaction tests) carry the daemon's
		// object index, as a node's journal does.
		opts = Indexing(opts)
	}
	st, err := journal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := projections.New()
	cfg := projections.DefaultConfig()
	var batch []journal.Record
	flush := func() {
		if len(batch) > 0 {
			if _, err := st.Append(batch).Wait(); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	do := func(c projections.Command) projections.Reply {
		d, err := projections.Decide(s, cfg, c)
		if err != nil {
			return nil
		}
		for _, ev := range d.Events {
			if err := s.Apply(ev); err != nil {
				t.Fatal(err)
			}
			s.Seq++
			typ, ver, payload, err := projections.EncodeEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, journal.Record{Type: typ, Version: ver, Cause: journal.Cause{Op: c.Op(), RequestID: s.Seq}, Payload: payload})
		}
		if len(batch) >= 1+r.Intn(60) {
			flush()
		}
		return d.Reply
	}
	key := func(i int) string {
		var b [32]byte
		b[0], b[1], b[2], b[3] = byte(i), byte(i>>8), byte(i>>16), 0x55
		return base64.StdEncoding.EncodeToString(b[:])
	}
	do(projections.SetNodeIdentity{PublicKey: key(1 << 20), Source: "generated"})
	do(projections.SetupGlobal{Deployment: "test", InstanceID: "1", ClusterCIDR: "10.0.0.0/8", SliceCIDR: "10.64.0.0/12", Port: 51820})
	for i := 0; i < 4; i++ {
		do(projections.SetupService{Service: fmt.Sprintf("svc%d", i), Mode: "shared"})
	}
	var addrs []netip.Addr
	var names, peers []string
	for i := 0; s.Seq < uint64(n); i++ {
		switch r.Intn(4) {
		case 0:
			if len(addrs) > 50 {
				do(projections.ReleaseIP{IP: addrs[0]})
				addrs = addrs[1:]
			}
			if rep, ok := do(projections.AllocateIP{}).(projections.ReplyIP); ok {
				addrs = append(addrs, rep.IP)
			}
		case 1, 2:
			if len(names) > 50 {
				do(projections.UnregisterDNS{Name: names[0]})
				names = names[1:]
			}
			name := fmt.Sprintf("task-%d.svc%d.test.local", i, i%4)
			do(projections.RegisterDNS{Name: name, IP: netip.AddrFrom4([4]byte{10, 64, byte(i >> 8), byte(i)})})
			names = append(names, name)
		case 3:
			if len(peers) > 10 {
				do(projections.RemovePeer{PublicKey: peers[0]})
				peers = peers[1:]
			}
			k := key(i)
			do(projections.AddPeer{PublicKey: k, Endpoint: "192.0.2.10:51820", AllowedIPs: fmt.Sprintf("10.%d.%d.0/24", 128+i%64, (i>>6)&255), Keepalive: 25})
			peers = append(peers, k)
		}
	}
	flush()
	head, hash := st.Head()
	if head != s.Seq {
		t.Fatalf("journal head %d, state at %d", head, s.Seq)
	}
	if err := st.SaveSnapshot(Snapshot(s, hash)); err != nil {
		t.Fatal(err)
	}
	h := history{state: canonical(t, s)}
	if !keepEnvs {
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		return h
	}
	if err := st.Iterate(0, true, func(e *journal.Envelope) error {
		h.envs = append(h.envs, e.Encode())
		h.types = append(h.types, e.Type)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return h
}

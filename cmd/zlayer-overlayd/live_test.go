//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/tools/testseed"
)

func newLedger() *ledger {
	return &ledger{dns: map[string]netip.Addr{}, reserved: map[netip.Addr]bool{}, unsure: map[netip.Addr]bool{}, peers: map[string]netip.Prefix{}}
}

// offlineEvents reads the journal of dataDir offline: seq → hash.
func offlineEvents(t *testing.T, dataDir string) []ipc.JournalEvent {
	t.Helper()
	st, err := journal.Open(filepath.Join(dataDir, "overlayd"), journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []ipc.JournalEvent
	if err := st.Iterate(0, true, func(e *journal.Envelope) error {
		out = append(out, replay.JournalEventOf(e))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func headOf(t *testing.T, c *ipc.Client) uint64 {
	t.Helper()
	zero := uint32(0)
	r := call(t, c, ipc.JournalList{AfterSeq: ^uint64(0) - 1, Limit: &zero})
	return r.(ipc.JournalEvents).HeadSeq
}

// A follower started at event 0 while 32 clients write, and the daemon is
// killed with SIGKILL and restarted three times, sees every committed
// event exactly once and in order: at the end its list is the journal read
// offline, event for event (sequence and hash).
func TestFollowAcrossKill9SeesEveryEventOnce(t *testing.T) {
	const clients, kills = 32, 3
	n := newNode(t, "--snapshot-every", "500")
	n.start()
	c := n.client()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "follow", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.200.0.0/18"), WgPort: 51820})
	c.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []ipc.JournalEvent
	var dupOrGap error
	reconnects := 0
	followDone := make(chan error, 1)
	go func() {
		followDone <- ipc.FollowWith(ctx, func(ctx context.Context) (*ipc.Client, error) {
			return ipc.Dial(ctx, n.socket, ipc.DialOptions{})
		}, 0, func(e ipc.JournalEvent) error {
			mu.Lock()
			defer mu.Unlock()
			if len(got) > 0 && e.Seq != got[len(got)-1].Seq+1 && dupOrGap == nil {
				dupOrGap = errors.New("out of order")
			}
			got = append(got, e)
			return nil
		}, ipc.FollowOptions{Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			OnReconnect: func(error, time.Duration) { mu.Lock(); reconnects++; mu.Unlock() }})
	}()

	l := newLedger()
	seqs := make([]int, clients)
	r := rand.New(rand.NewSource(testseed.New(t)))
	for round := 0; round < kills; round++ {
		var wg sync.WaitGroup
		for i := 0; i < clients; i++ {
			cl := n.client()
			wg.Add(1)
			go func(i int, seed int64) {
				defer wg.Done()
				defer cl.Close()
				l.load(t, cl, i, &seqs[i], rand.New(rand.NewSource(seed)))
			}(i, r.Int63())
		}
		time.Sleep(time.Duration(300+r.Intn(400)) * time.Millisecond)
		n.kill9()
		wg.Wait()
		n.start()
		mu.Lock()
		t.Logf("round %d: the follower has %d events, %d reconnects", round, len(got), reconnects)
		mu.Unlock()
	}
	// Events committed after the last restart arrive live too.
	c = n.client()
	call(t, c, ipc.RegisterDNS{Name: "after-the-kills.follow.test", IP: ipc.AddrOf(netip.MustParseAddr("10.99.200.1"))})
	head := headOf(t, c)
	c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		var last uint64
		if k > 0 {
			last = got[k-1].Seq
		}
		mu.Unlock()
		if k > 0 && last >= head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower reached %d events, the journal's head is %d", k, head)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-followDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v", err)
	}
	n.stop()

	want := offlineEvents(t, n.dataDir)
	mu.Lock()
	defer mu.Unlock()
	if dupOrGap != nil {
		t.Fatal(dupOrGap)
	}
	if reconnects < kills {
		t.Fatalf("%d reconnects for %d kills", reconnects, kills)
	}
	if len(got) != len(want) {
		t.Fatalf("the follower saw %d events, the journal holds %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || got[i].Hash != want[i].Hash || got[i].ID != want[i].ID {
			t.Fatalf("event %d: followed %d %s, journal %d %s", i+1, got[i].Seq, got[i].Hash, want[i].Seq, want[i].Hash)
		}
	}
	t.Logf("%d events followed across %d SIGKILLs (%d reconnects), each once, in order", len(got), kills, reconnects)
}

// A backup taken through the daemon while 64 clients write restores, into
// a fresh data dir, to exactly the state at the backup's sequence: the
// restored journal's replay equals a replay of the original journal up to
// that sequence (canonical JSON), and its events are the original's.
func TestBackupUnderLoadRestoresTheStateAtItsSequence(t *testing.T) {
	const clients = 64
	n := newNode(t)
	n.start()
	c := n.client()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "backup", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.200.0.0/17"), WgPort: 51820})
	c.Close()
	r := rand.New(rand.NewSource(testseed.New(t)))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var acked sync.Map
	for i := 0; i < clients; i++ {
		cl := n.client()
		wg.Add(1)
		go func(i int, r *rand.Rand) {
			defer wg.Done()
			defer cl.Close()
			writeLoad(t, cl, i, r, stop, &acked)
		}(i, rand.New(rand.NewSource(r.Int63())))
	}
	time.Sleep(400 * time.Millisecond)
	file := filepath.Join(t.TempDir(), "node.db")
	var rep struct {
		Source  string `json:"source"`
		HeadSeq uint64 `json:"head_seq"`
		SHA256  string `json:"sha256"`
	}
	out := n.mustCtl("backup", file, "-o", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("backup output %q: %v", out, err)
	}
	time.Sleep(300 * time.Millisecond) // the load goes on past the backup
	close(stop)
	wg.Wait()
	n.stop()
	orig := offlineEvents(t, n.dataDir)
	if rep.HeadSeq < 100 || uint64(len(orig)) <= rep.HeadSeq {
		t.Fatalf("backup at %d of %d events: the load did not run across it (%s)", rep.HeadSeq, len(orig), out)
	}
	if rep.Source == "" || rep.SHA256 == "" {
		t.Fatalf("backup report %s", out)
	}

	fresh := t.TempDir()
	cmdOut, err := ctlIn(fresh, "restore", file, "-o", "json")
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, cmdOut)
	}
	restored := offlineEvents(t, fresh)
	if uint64(len(restored)) != rep.HeadSeq {
		t.Fatalf("the restored journal holds %d events, the backup said %d", len(restored), rep.HeadSeq)
	}
	for i := range restored {
		if restored[i].Hash != orig[i].Hash {
			t.Fatalf("restored event %d has hash %s, the original %s", i+1, restored[i].Hash, orig[i].Hash)
		}
	}
	got := replayJSON(t, fresh, 0)
	want := replayJSON(t, n.dataDir, rep.HeadSeq)
	if string(got) != string(want) {
		t.Fatalf("the restored state differs from the original's at %d:\nrestored %.400s\noriginal %.400s", rep.HeadSeq, got, want)
	}
	t.Logf("backup at event %d of %d (64 clients writing) restored to the same state (%d bytes of canonical JSON)", rep.HeadSeq, len(orig), len(got))

	// The restored data dir boots at the backup's state, and is found by
	// `overlayctl --data-dir` through the endpoint file although its
	// socket is elsewhere (given with --socket).
	n2 := &node{t: t, dataDir: fresh, ns: n.ns}
	if n.ns != nil {
		n2.socket = n.socket // the namespace's daemon command passes --socket
	} else {
		n2.socket = filepath.Join(t.TempDir(), "elsewhere.sock")
		n2.args = []string{"--socket", n2.socket}
	}
	n2.start()
	ep, err := ipc.ReadEndpoint(fresh)
	if err != nil || ep.Socket != n2.socket || ep.Protocol != 1 || ep.PID == 0 {
		t.Fatalf("endpoint %+v, %v; want socket %s", ep, err, n2.socket)
	}
	st := n2.state() // overlayctl --data-dir fresh, no --socket
	if st.Seq < rep.HeadSeq {
		t.Fatalf("the restored daemon is at %d, the backup at %d", st.Seq, rep.HeadSeq)
	}
	n2.stop()
	if _, err := ipc.ReadEndpoint(fresh); !errors.Is(err, ipc.ErrNoEndpoint) {
		t.Fatalf("after a clean stop the endpoint file is still there: %v", err)
	}
}

// replayJSON is the canonical JSON of a full replay of dataDir's journal
// up to upTo (0: all), without the snapshot.
func replayJSON(t *testing.T, dataDir string, upTo uint64) []byte {
	t.Helper()
	st, err := journal.Open(filepath.Join(dataDir, "overlayd"), journal.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, _, err := replay.Load(st, replay.Options{NoSnapshot: true, Verify: true, UpTo: upTo})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ctlIn runs overlayctl on dataDir.
func ctlIn(dataDir string, args ...string) (string, error) {
	n := &node{dataDir: dataDir}
	return n.ctl(args...)
}

// writeLoad sends register_dns, allocate_ip and release_ip until stop.
func writeLoad(t *testing.T, c *ipc.Client, client int, r *rand.Rand, stop <-chan struct{}, acked *sync.Map) {
	ctx := context.Background()
	var mine []netip.Addr
	for s := 0; ; s++ {
		select {
		case <-stop:
			return
		default:
		}
		var err error
		switch op := r.Intn(10); {
		case op < 5:
			ip := netip.AddrFrom4([4]byte{10, 99, byte(client), byte(s)})
			_, err = c.Call(ctx, ipc.RegisterDNS{Name: fmt.Sprintf("c%d-%d.backup.test", client, s), IP: ipc.AddrOf(ip)})
		case op < 8 || len(mine) == 0:
			var resp ipc.Response
			if resp, err = c.Call(ctx, ipc.AllocateIP{JoinGlobal: true}); err == nil {
				mine = append(mine, resp.(ipc.IPResult).IP.Addr)
			}
		default:
			_, err = c.Call(ctx, ipc.ReleaseIP{IP: ipc.AddrOf(mine[0])})
			mine = mine[1:]
		}
		if err != nil {
			select {
			case <-stop:
			default:
				t.Errorf("client %d: %v", client, err)
			}
			return
		}
		acked.Store(client, s)
	}
}

// restore refuses while the daemon runs and refuses a backup that does not
// verify (nothing changed either time); offline it keeps the current
// journal aside, moves aside a snapshot that does not belong to the
// restored journal, and the node boots at the backup's state. An offline
// backup (daemon stopped) is the same file format.
func TestRestoreRefusalsAndSnapshot(t *testing.T) {
	n := newNode(t, "--snapshot-every", "20")
	n.start()
	c := n.client()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "restore", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.200.0.0/18"), WgPort: 51820})
	for i := 0; i < 10; i++ {
		call(t, c, ipc.RegisterDNS{Name: fmt.Sprintf("before-%d.restore.test", i), IP: ipc.AddrOf(netip.AddrFrom4([4]byte{10, 99, 0, byte(i)}))})
	}
	file := filepath.Join(t.TempDir(), "early.db")
	n.mustCtl("backup", file)
	for i := 0; i < 40; i++ { // past the backup, with snapshots past it
		call(t, c, ipc.RegisterDNS{Name: fmt.Sprintf("after-%d.restore.test", i), IP: ipc.AddrOf(netip.AddrFrom4([4]byte{10, 99, 1, byte(i)}))})
	}
	c.Close()
	if out, err := n.ctl("restore", file); err == nil {
		t.Fatalf("restore while the daemon runs succeeded: %s", out)
	} else if !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("restore while the daemon runs: %v", err)
	}
	n.stop()
	before := offlineEvents(t, n.dataDir)

	// A damaged backup is refused, and the journal is as it was.
	bad := filepath.Join(t.TempDir(), "bad.db")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Damage an event's payload (a byte in the middle of the file may
	// fall on a free page, which nothing reads).
	at := bytes.Index(b, []byte(`"name":"before-5.restore.test"`))
	if at < 0 {
		t.Fatal("the backup holds no event naming before-5.restore.test")
	}
	b[at+10] ^= 0x01
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := n.ctl("restore", bad); err == nil {
		t.Fatalf("restore of a damaged backup succeeded: %s", out)
	} else if !strings.Contains(err.Error(), bad) {
		t.Fatalf("the refusal does not name the backup: %v", err)
	} else {
		t.Logf("damaged backup refused: %v", err)
	}
	if after := offlineEvents(t, n.dataDir); len(after) != len(before) {
		t.Fatalf("a refused restore changed the journal: %d events, was %d", len(after), len(before))
	}

	// Offline backup of the current journal, then restore of the early one.
	offline := filepath.Join(t.TempDir(), "offline.db")
	if out := n.mustCtl("backup", offline); !strings.Contains(out, "(offline)") {
		t.Fatalf("offline backup says %q", out)
	}
	out := n.mustCtl("restore", file, "-o", "json")
	var rep struct {
		HeadSeq  uint64 `json:"head_seq"`
		Replaced string `json:"replaced"`
		Snapshot string `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Snapshot, "moved aside") || !strings.Contains(rep.Replaced, "journal.db.replaced-") {
		t.Fatalf("restore report %s: want the newer snapshot moved aside and the journal kept", out)
	}
	if _, err := os.Stat(rep.Replaced); err != nil {
		t.Fatalf("the replaced journal is not kept: %v", err)
	}
	n.start()
	st := n.state()
	if st.DNS["before-9.restore.test"] == nil || st.DNS["after-0.restore.test"] != nil {
		t.Fatalf("restored state at %d: want the names before the backup and none after", st.Seq)
	}
	n.stop()

	// The offline backup restores the later state.
	n.mustCtl("restore", offline)
	n.start()
	if st := n.state(); st.DNS["after-39.restore.test"] == nil {
		t.Fatalf("the offline backup restored to %d without the later names", st.Seq)
	}
	n.stop()
}

// overlayctl journal follow prints the history after --after, then live
// events (without --after: only new ones), and stops at --limit.
func TestJournalFollowCommand(t *testing.T) {
	n := newNode(t)
	n.start()
	c := n.client()
	defer c.Close()
	call(t, c, ipc.RegisterDNS{Name: "a.follow.test", IP: ipc.AddrOf(netip.MustParseAddr("10.99.0.1"))})
	head := headOf(t, c)
	out := n.mustCtl("journal", "follow", "--after", "0", "--limit", fmt.Sprint(head), "-o", "jsonl")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if uint64(len(lines)) != head {
		t.Fatalf("follow --after 0 --limit %d printed %d lines:\n%s", head, len(lines), out)
	}
	for i, l := range lines {
		var e ipc.JournalEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Seq != uint64(i+1) {
			t.Fatalf("line %d: %q (%v)", i+1, l, err)
		}
	}
	// Live: a follower started now prints the next event only.
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := n.ctl("journal", "follow", "--limit", "1")
		done <- result{out, err}
	}()
	// Register until the follower (connecting meanwhile) prints one.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for i := 0; ; i++ {
		select {
		case r := <-done:
			if r.err != nil || !strings.Contains(r.out, "source: live daemon") || !strings.Contains(r.out, ".b.follow.test") || strings.Contains(r.out, "a.follow.test") ||
				strings.Count(strings.TrimSpace(r.out), "\n") != 2 {
				t.Fatalf("follow --limit 1: %v\n%s", r.err, r.out)
			}
		case <-tick.C:
			call(t, c, ipc.RegisterDNS{Name: fmt.Sprintf("n%d.b.follow.test", i), IP: ipc.AddrOf(netip.AddrFrom4([4]byte{10, 99, 1, byte(i)}))})
			continue
		case <-deadline:
			t.Fatal("follow --limit 1 did not print a new event")
		}
		break
	}
	n.stop()
	if _, err := n.ctl("journal", "follow"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("follow without a daemon: %v, want exit 3", err)
	}
}

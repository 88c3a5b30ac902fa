package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/audit"
	"github.com/zlayer/overlayd/cmd/internal/journalgen"
	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// TestQueriesThroughTheDaemon: on a journal the daemon holds, the
// queries asked over the socket (journal_query, state_dump at,
// journal_stats) answer exactly what the same queries give on the file,
// and the daemon keeps past states in the background for a journal that
// has none (the boot backfill).
func TestQueriesThroughTheDaemon(t *testing.T) {
	dir := t.TempDir()
	jdir := filepath.Join(dir, "overlayd")
	st, err := journal.Open(jdir, journal.Options{NoSync: true}) // no index, no kept states: an old journal
	if err != nil {
		t.Fatal(err)
	}
	g := journalgen.New(st, rand.New(rand.NewSource(3)))
	if err := g.Until(3000); err != nil {
		t.Fatal(err)
	}
	st.Close()

	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, KeepStateEvery: 500})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, dir)
	ctx := context.Background()
	if _, err := c.Call(ctx, ipc.RegisterDNS{Name: "late.test.local", IP: ipc.Addr{Addr: netip.MustParseAddr("10.64.9.9")}}); err != nil {
		t.Fatal(err)
	}
	ix := d.store.(journal.Indexed)
	deadline := time.Now().Add(20 * time.Second)
	for {
		sn, _ := ix.StateAtOrBefore(3000)
		if ix.IndexStatus().Ready && sn != nil && sn.Seq >= 2500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: index %+v, newest kept state %v", ix.IndexStatus(), sn)
		}
		time.Sleep(10 * time.Millisecond)
	}
	local, remote := audit.NewLocal(d.store), audit.NewRemote(c)
	if local.How() != "index" {
		t.Fatalf("local answers by %s", local.How())
	}
	list := func(q audit.Querier, f audit.Filter) []uint64 {
		var out []uint64
		if err := q.List(ctx, f, func(e ipc.JournalEvent) error { out = append(out, e.Seq); return nil }); err != nil {
			t.Fatalf("%s: %v", q.How(), err)
		}
		return out
	}
	since := audit.Point{Kind: audit.PointSeq, Seq: 1000}
	for _, f := range []audit.Filter{
		{},
		{Types: []string{"dns_registered"}, Limit: 100},
		{Object: "late.test.local"},
		{Object: "svc2", Reverse: true},
		{Service: "svc1", Since: &since, Cause: audit.CauseRequest},
	} {
		l, r := list(local, f), list(remote, f)
		if !slices.Equal(l, r) || len(l) == 0 {
			t.Fatalf("filter %+v: daemon %d events %v, file %d %v", f, len(r), r[:min(len(r), 8)], len(l), l[:min(len(l), 8)])
		}
	}
	head, _ := d.store.Head() // the generated events, the boot's node identity, the register_dns
	for _, seq := range []uint64{1, 777, 2600, head} {
		p := audit.Point{Kind: audit.PointSeq, Seq: seq}
		a, err := remote.StateAt(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := replay.Load(d.store, replay.Options{NoSnapshot: true, UpTo: seq})
		if err != nil {
			t.Fatal(err)
		}
		ab, _ := a.CanonicalJSON()
		wb, _ := want.CanonicalJSON()
		if !bytes.Equal(ab, wb) {
			t.Fatalf("state at %d through the daemon differs from a replay", seq)
		}
	}
	ev, err := remote.Show(ctx, "head")
	if err != nil || ev.Type != "dns_registered" || ev.PeerUID == nil || ev.Exe == "" {
		t.Fatalf("show head: %+v, %v (want the register_dns with its caller's uid, pid and executable)", ev, err)
	}
	stats, err := remote.Stats(ctx)
	if err != nil || stats.Events != head {
		t.Fatalf("stats: %+v, %v", stats, err)
	}
}

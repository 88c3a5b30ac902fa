package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// recorder is a reconciler that remembers what it was handed.
type recorder struct {
	mu      sync.Mutex
	keys    []string
	alls    int
	lastSeq uint64
	seen    chan struct{}
}

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Reconcile(_ context.Context, v effects.View, changed []string, all bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, changed...)
	if all {
		r.alls++
	}
	v.Read(func(st *projections.State) { r.lastSeq = st.Seq })
	select {
	case r.seen <- struct{}{}:
	default:
	}
	return nil
}

// After every decision the daemon hands the decided state and the changed
// keys to its reconcilers; at boot it runs them over everything.
func TestReconcilersSeeDecidedChanges(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{seen: make(chan struct{}, 1)}
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, Reconcilers: []effects.Reconciler{rec}})
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	alls := rec.alls
	rec.mu.Unlock()
	if alls != 1 {
		t.Fatalf("boot reconcile ran %d times", alls)
	}
	c := serveTest(t, d, dir)
	ctx := context.Background()
	for _, r := range []ipc.Request{
		ipc.SetupGlobalOverlay{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820},
		ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared},
		ipc.RegisterDNS{Name: "web.p.local", IP: ipc.AddrOf(netipMust("10.0.0.1"))},
	} {
		if _, err := c.Call(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(5 * time.Second)
	for {
		rec.mu.Lock()
		got := slices.Clone(rec.keys)
		seq := rec.lastSeq
		rec.mu.Unlock()
		if slices.Contains(got, "global") && slices.Contains(got, "service/web") && slices.Contains(got, "dns/web.p.local") && seq >= 4 {
			break
		}
		select {
		case <-rec.seen:
		case <-deadline:
			t.Fatalf("reconciler saw %v at seq %d", got, seq)
		}
	}
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

// serveTest serves d on a socket in dir and returns a client; the daemon
// stops and the client closes at cleanup.
func serveTest(t *testing.T, d *Daemon, dir string) *ipc.Client {
	t.Helper()
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go d.ServeListener(l)
	t.Cleanup(func() { d.Stop(); <-d.Done() })
	c, err := ipc.Dial(context.Background(), sock, ipc.DialOptions{Attempts: 20, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// observer is a reconciler that is also an effects.Observer and filters
// every key out, as the DNS server does with its records.
type observer struct {
	mu    sync.Mutex
	names []string // of the dns_registered events seen, in order
}

func (o *observer) Name() string                                                  { return "observer" }
func (o *observer) Relevant(string) bool                                          { return false }
func (o *observer) Reconcile(context.Context, effects.View, []string, bool) error { return nil }
func (o *observer) Observe(ev projections.Event) {
	r, ok := ev.(*projections.DNSRegistered)
	if !ok {
		return
	}
	o.mu.Lock()
	o.names = append(o.names, r.Name)
	o.mu.Unlock()
}

// An Observer has every event of a command by the time the command is
// answered, even though no reconciler pass is waited for.
func TestObserversHaveEventsBeforeTheAnswer(t *testing.T) {
	dir := t.TempDir()
	obs := &observer{}
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, Reconcilers: []effects.Reconciler{obs}})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, dir)
	// Every name is new, so every register_dns decides exactly one
	// dns_registered event, and each iteration checks that its own event
	// (not only some earlier one) reached the observer before the answer.
	for i := 0; i < 200; i++ {
		name := fmt.Sprintf("n%03d.x", i)
		want, err := projections.NormalizeDNSName("name", name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Call(context.Background(), ipc.RegisterDNS{Name: name, IP: ipc.AddrOf(netipMust("10.0.0.1"))}); err != nil {
			t.Fatal(err)
		}
		obs.mu.Lock()
		names := slices.Clone(obs.names)
		obs.mu.Unlock()
		if len(names) != i+1 || names[i] != want {
			last := "none"
			if len(names) > 0 {
				last = names[len(names)-1]
			}
			t.Fatalf("after %d answered register_dns (the last for %s) the observer has %d events, the last for %s", i+1, want, len(names), last)
		}
	}
}

// Concurrent clients mixing writes, reads and inspection ops: run under
// -race by `make test`. Every answer is consistent with the final state.
func TestConcurrentClientsRace(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, SnapshotEvery: 50})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go d.ServeListener(l)
	dial := func() *ipc.Client {
		c, err := ipc.Dial(context.Background(), sock, ipc.DialOptions{Attempts: 20, Backoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	c0 := dial()
	if _, err := c0.Call(ctx, ipc.SetupGlobalOverlay{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.200.0.0/20"), WgPort: 51820}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	held := map[netip.Addr]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		c := dial() // here: dial fails the test with t.Fatal
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer c.Close()
			for i := 0; i < 150; i++ {
				var err error
				switch i % 5 {
				case 0, 1:
					var r ipc.Response
					if r, err = c.Call(ctx, ipc.AllocateIP{}); err == nil {
						a := r.(ipc.IPResult).IP.Addr
						mu.Lock()
						if held[a] {
							t.Errorf("%v handed out twice", a)
						}
						held[a] = true
						mu.Unlock()
					}
				case 2:
					_, err = c.Call(ctx, ipc.Status{})
				case 3:
					_, _, err = ipc.FetchState(ctx, c)
				case 4:
					if w == 0 && i%25 == 4 {
						_, err = c.Call(ctx, ipc.JournalVerify{})
					} else {
						_, err = c.Call(ctx, ipc.JournalList{AfterSeq: uint64(i)})
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	r, err := c0.Call(ctx, ipc.JournalVerify{})
	if err != nil || !r.(ipc.JournalReport).OK {
		t.Fatalf("verify: %v %+v", err, r)
	}
	c0.Close()
	d.Stop()
	<-d.Done()
	if len(held) != 8*150*2/5 {
		t.Fatalf("%d allocations", len(held))
	}
}

func strp(s string) *string { return &s }

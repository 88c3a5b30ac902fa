package daemon

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/wireguard"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// names is an Observer and Resetter that keeps the DNS names the effects
// would serve, as the DNS server does.
type names struct {
	mu     sync.Mutex
	set    map[string]bool
	resets int
	passes int
	alls   int
}

func (n *names) Name() string           { return "names" }
func (n *names) Relevant(k string) bool { return !strings.HasPrefix(k, "dns/") }
func (n *names) Reconcile(_ context.Context, _ effects.View, _ []string, all bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.passes++
	if all {
		n.alls++
	}
	return nil
}
func (n *names) Observe(ev projections.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch e := ev.(type) {
	case *projections.DNSRegistered:
		n.set[e.Name] = true
	case *projections.DNSUnregistered:
		delete(n.set, e.Name)
	}
}
func (n *names) Reset(st *projections.State) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.resets++
	n.set = map[string]bool{}
	for k := range st.DNS {
		n.set[k] = true
	}
}
func (n *names) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Sorted(maps.Keys(n.set))
}

func openFaulty(t *testing.T) (*journal.Faulty, *names, *ipc.Client) {
	store, obs, c, _ := openFaultyAt(t, t.TempDir())
	return store, obs, c
}

func openFaultyAt(t *testing.T, dir string) (*journal.Faulty, *names, *ipc.Client, string) {
	t.Helper()
	d, store, obs := openFaultyDaemon(t, dir)
	return store, obs, serveTest(t, d, dir), filepath.Join(dir, "s.sock")
}

// openFaultyDaemon opens a daemon without a data plane on an in-memory
// journal whose faults the test injects, with a reconciler that records
// the DNS names; not yet serving.
func openFaultyDaemon(t *testing.T, dir string) (*Daemon, *journal.Faulty, *names) {
	t.Helper()
	store := journal.NewFaulty(journal.NewMem())
	obs := &names{set: map[string]bool{}}
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, Store: store, Reconcilers: []effects.Reconciler{obs}})
	if err != nil {
		t.Fatal(err)
	}
	return d, store, obs
}

// register answers "" when acknowledged, else the daemon's refusal.
func register(t *testing.T, c *ipc.Client, name string) string {
	t.Helper()
	_, err := c.Call(context.Background(), ipc.RegisterDNS{Name: name, IP: ipc.AddrOf(netipMust("10.0.0.1"))})
	return refusalOf(t, err)
}

// refusalOf is the daemon's err answer ("" for none); any other error fails.
func refusalOf(t *testing.T, err error) string {
	t.Helper()
	var re *ipc.RemoteError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		return re.Message
	}
	t.Fatal(err)
	return ""
}

var errNoSpace = fmt.Errorf("write journal.db: %w", syscall.ENOSPC)

// A failed commit: its command and every one decided behind it are
// answered err and kept nowhere (state, effects, journal); reads go on;
// status says degraded; when the store can be written again, writes are
// accepted with no restart.
func TestFailedCommitDegradesAndRecovers(t *testing.T) {
	store, obs, c := openFaulty(t)
	var acked, refused []string
	for i := range 5 {
		name := fmt.Sprintf("a%d.p.local", i)
		if e := register(t, c, name); e != "" {
			t.Fatalf("%s: %s", name, e)
		}
		acked = append(acked, name)
	}
	// The disk fills up while commands are in flight: the first failing
	// commit is still pending when the others are decided behind it.
	store.SetDelay(30 * time.Millisecond)
	store.Break(errNoSpace)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("b%d.p.local", i)
			_, err := c.Call(context.Background(), ipc.RegisterDNS{Name: name, IP: ipc.AddrOf(netipMust("10.0.0.1"))})
			var re *ipc.RemoteError
			if !errors.As(err, &re) {
				t.Errorf("%s was not refused on a full disk: %v", name, err)
				return
			}
			if !strings.Contains(re.Message, "no space left on device") {
				t.Errorf("%s: the refusal does not name the cause: %s", name, re.Message)
			}
			mu.Lock()
			refused = append(refused, name)
			mu.Unlock()
		}()
	}
	wg.Wait()
	store.SetDelay(0)
	// Reads are answered, from the rolled-back state.
	st := call(t, c, ipc.Status{}).(ipc.StatusResult)
	if !st.Degraded || st.DegradedSince == 0 || len(st.Problems) == 0 || st.Problems[0].Resource != "journal" {
		t.Fatalf("status on a full disk: degraded=%v since=%d problems=%+v", st.Degraded, st.DegradedSince, st.Problems)
	}
	_, dump, err := ipc.FetchState(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range refused {
		if strings.Contains(string(dump), name) {
			t.Fatalf("refused %s is in the state", name)
		}
	}
	waitUntil(t, "the effects to forget the refused names", func() bool { return slices.Equal(obs.list(), acked) })
	// Still full: writes refused, saying why.
	if e := register(t, c, "c.p.local"); !strings.Contains(e, "read-only") {
		t.Fatalf("a write while read-only answered %q", e)
	}
	// Space returns.
	store.Heal()
	start := time.Now()
	waitUntil(t, "writes to be accepted again", func() bool { return register(t, c, "c.p.local") == "" })
	t.Logf("writes accepted %v after the store healed", time.Since(start).Round(time.Millisecond))
	acked = append(acked, "c.p.local")
	if st := call(t, c, ipc.Status{}).(ipc.StatusResult); st.Degraded || len(st.Problems) != 0 {
		t.Fatalf("status after recovery: %+v", st)
	}
	// The journal holds exactly the acknowledged commands.
	got, _, err := replay.Load(store.Inner(), replay.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	if names := slices.Sorted(maps.Keys(got.DNS)); !slices.Equal(names, acked) {
		t.Fatalf("the journal holds %v, acknowledged %v", names, acked)
	}
	if rep, err := store.Inner().Verify(); err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", rep, err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.resets == 0 || obs.alls < 2 {
		t.Fatalf("the effects were not reset (%d) and fully reconciled (%d full passes)", obs.resets, obs.alls)
	}
}

// One failed fsync: the next recovery (within about a second) reopens and
// checks the store, and writes go on.
func TestTransientWriteFailure(t *testing.T) {
	store, _, c := openFaulty(t)
	store.FailNext(1, errors.New("fsync journal.db: input/output error"))
	if e := register(t, c, "x.p.local"); !strings.Contains(e, "input/output error") {
		t.Fatalf("the failed write answered %q", e)
	}
	waitUntil(t, "writes to be accepted again", func() bool { return register(t, c, "y.p.local") == "" })
}

// A read pipelined behind a write whose commit fails is answered from the
// rolled-back state, not refused and not from the failed decision.
func TestReadBehindAFailedWriteIsAnswered(t *testing.T) {
	dir := t.TempDir()
	store, _, c, sock := openFaultyAt(t, dir)
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820})
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	store.SetDelay(50 * time.Millisecond)
	store.Break(errNoSpace)
	// One connection, two frames sent at once: the read is decided after
	// the write, while the write's commit is pending.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w, _ := ipc.EncodeRequest(1, ipc.SetupServiceOverlay{Service: "db", Mode: ipc.ModeShared})
	r, _ := ipc.EncodeRequest(2, ipc.Status{})
	if _, err := conn.Write(append(lenPrefixed(w), lenPrefixed(r)...)); err != nil {
		t.Fatal(err)
	}
	resps := map[uint64]ipc.Response{}
	br := bufio.NewReader(conn)
	for len(resps) < 2 {
		b, err := ipc.ReadFrame(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		f, err := ipc.DecodeFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		resps[f.ID] = f.Response
	}
	if !isErr(resps[1]) {
		t.Fatalf("the write on a full disk answered %#v", resps[1])
	}
	st, ok := resps[2].(ipc.StatusResult)
	if !ok {
		t.Fatalf("the read behind the failed write answered %#v", resps[2])
	}
	if st.ServiceCount != 1 {
		t.Fatalf("the read shows %d services: it saw the decision that failed", st.ServiceCount)
	}
}

// lenPrefixed is b with its frame length prefix.
func lenPrefixed(b []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func call(t *testing.T, c *ipc.Client, req ipc.Request) ipc.Response {
	t.Helper()
	r, err := c.Call(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", req.Op(), err)
	}
	return r
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unreadable is a store whose reads can be made to fail.
type unreadable struct {
	journal.Store
	fail atomic.Bool
}

func (u *unreadable) Iterate(after uint64, verify bool, fn func(*journal.Envelope) error) error {
	if u.fail.Load() {
		return errors.New("read journal.db: input/output error")
	}
	return u.Store.Iterate(after, verify, fn)
}

// A write fails and the journal cannot even be read to roll the state
// back: every command is answered err at once (never from the state that
// holds the failed decision), the daemon does not spin, and once the
// journal can be read it rolls back, recovers and serves again; it stops
// cleanly throughout.
func TestRollbackThatCannotReadTheJournal(t *testing.T) {
	dir := t.TempDir()
	faulty := journal.NewFaulty(journal.NewMem())
	store := &unreadable{Store: faulty}
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, dir)
	if e := register(t, c, "a.p.local"); e != "" {
		t.Fatal(e)
	}
	store.fail.Store(true)
	faulty.FailNext(1, errNoSpace)
	if e := register(t, c, "b.p.local"); !strings.Contains(e, "no space left") {
		t.Fatalf("the failed write answered %q", e)
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Call(ctx, ipc.Status{})
		cancel()
		if e := refusalOf(t, err); !strings.Contains(e, "could not be rolled back") {
			t.Fatalf("status while the state cannot be rolled back answered %q", e)
		}
	}
	store.fail.Store(false)
	waitUntil(t, "the daemon to roll back, recover and accept writes", func() bool { return register(t, c, "c.p.local") == "" })
	_, dump, err := ipc.FetchState(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(dump), "b.p.local") || !strings.Contains(string(dump), "a.p.local") {
		t.Fatalf("the state after the rollback: %s", dump)
	}
}

// status reports degraded and its problems also when the global device
// is not there to be read (its creation failed, say).
func TestStatusReportsProblemsWithoutTheDevice(t *testing.T) {
	dir := t.TempDir()
	store := journal.NewFaulty(journal.NewMem())
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	d.wg = wireguard.New(d, d.log) // a data plane that made no device
	c := serveTest(t, d, dir)
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820})
	store.Break(errNoSpace)
	register(t, c, "x.p.local")
	st := call(t, c, ipc.Status{}).(ipc.StatusResult)
	if !st.Degraded || !slices.ContainsFunc(st.Problems, func(p ipc.Problem) bool { return p.Resource == "journal" }) {
		t.Fatalf("status without the device: degraded=%v problems=%+v", st.Degraded, st.Problems)
	}
}

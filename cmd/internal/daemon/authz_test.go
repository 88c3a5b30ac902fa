package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// ipcOps lists every op the ipc package decodes: the string each request
// type's Op method returns, read from the package's source.
func ipcOps(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "ipc", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("ipc sources: %v (%d files)", err, len(files))
	}
	var ops []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "Op" || fn.Body == nil || len(fn.Body.List) != 1 {
				continue
			}
			ret, ok := fn.Body.List[0].(*ast.ReturnStmt)
			if !ok || len(ret.Results) != 1 {
				continue
			}
			if lit, ok := ret.Results[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				op, _ := strconv.Unquote(lit.Value)
				ops = append(ops, op)
			}
		}
	}
	slices.Sort(ops)
	return ops
}

// Every op the ipc package decodes is classified as a read or as mutating,
// exactly once, and the tables name no op that does not exist.
func TestEveryOpClassified(t *testing.T) {
	ops := ipcOps(t)
	if len(ops) < 27 {
		t.Fatalf("found only %d ops in ipc: %v", len(ops), ops)
	}
	for _, op := range ops {
		if readOps[op] == mutatingOps[op] {
			t.Errorf("op %q is classified as read=%v mutating=%v: add it to exactly one of readOps and mutatingOps (authz.go) and to docs/security.md", op, readOps[op], mutatingOps[op])
		}
		if mutating(op) != mutatingOps[op] {
			t.Errorf("mutating(%q) = %v, the table says %v", op, mutating(op), mutatingOps[op])
		}
	}
	for _, table := range []map[string]bool{readOps, mutatingOps} {
		for op := range table {
			if !slices.Contains(ops, op) {
				t.Errorf("op %q is in a table but ipc does not decode it", op)
			}
		}
	}
	wantReads := []string{"journal_backup", "journal_follow", "journal_list", "journal_query", "journal_stats", "journal_verify", "state_dump", "status"}
	var reads []string
	for op := range readOps {
		reads = append(reads, op)
	}
	slices.Sort(reads)
	if !slices.Equal(reads, wantReads) {
		t.Errorf("reads are %v, want %v", reads, wantReads)
	}
	if !mutating("an_op_from_the_future") {
		t.Error("an unknown op must be treated as mutating")
	}
}

func TestParseStatusGroups(t *testing.T) {
	b := []byte("Name:\tcat\nUmask:\t0022\nGid:\t100\t100\t100\t100\nGroups:\t4 24 27 64050 \nNgid:\t0\n")
	got, err := parseStatusGroups(b)
	if err != nil || !slices.Equal(got, []uint32{4, 24, 27, 64050}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := parseStatusGroups([]byte("Groups:\t\n")); err != nil || len(got) != 0 {
		t.Fatalf("empty Groups: got %v, %v", got, err)
	}
	if _, err := parseStatusGroups([]byte("Name:\tx\n")); err == nil {
		t.Fatal("no Groups: line accepted")
	}
	if _, err := parseStatusGroups([]byte("Groups:\t1 x\n")); err == nil {
		t.Fatal("a bad gid accepted")
	}
}

// The decision rule, with credentials as SO_PEERCRED gives them.
func TestAuthorizerRules(t *testing.T) {
	a := newAuthorizer(slog.New(slog.DiscardHandler), AuthzConfig{Group: "64050", UIDs: []uint32{64004}})
	a.setTransport("unix")
	a.procGroups = func(pid uint32) ([]uint32, error) {
		if pid == 3 {
			return []uint32{64050}, nil
		}
		return []uint32{64101}, nil
	}
	meta := func(conn uint64, uid, gid, pid uint32) ipc.Meta {
		return ipc.Meta{ConnID: conn, RequestID: 1, HasPeer: true, Peer: ipc.Creds{UID: uid, GID: gid, PID: pid}}
	}
	for _, c := range []struct {
		name string
		m    ipc.Meta
		ok   bool
	}{
		{"root", meta(1, 0, 0, 1), true},
		{"primary gid", meta(2, 64002, 64050, 2), true},
		{"supplementary group", meta(3, 64003, 64100, 3), true},
		{"listed uid", meta(4, 64004, 64100, 4), true},
		{"outsider", meta(5, 64001, 64100, 5), false},
		{"no creds on a unix socket", ipc.Meta{ConnID: 6}, false},
	} {
		r := a.check(c.m, "add_peer")
		if (r == nil) != c.ok {
			t.Errorf("%s: got %v, want allowed=%v", c.name, r, c.ok)
		}
		if r := a.check(c.m, "status"); r != nil {
			t.Errorf("%s: a read was refused: %v", c.name, r)
		}
	}
	if r := a.check(meta(5, 64001, 64100, 5), "add_peer"); r != (ipc.Err{Message: "permission denied: uid 64001 may not send add_peer"}) {
		t.Errorf("refusal is %#v", r)
	}
	a.setTransport("pipe")
	if r := a.check(ipc.Meta{ConnID: 7}, "add_peer"); r != nil {
		t.Errorf("a pipe connection without creds was refused: %v", r)
	}
	// A group that does not exist: only root and the listed uids.
	b := newAuthorizer(slog.New(slog.DiscardHandler), AuthzConfig{Group: "no-such-group-overlayd-test", UIDs: []uint32{64004}})
	b.setTransport("unix")
	b.procGroups = func(uint32) ([]uint32, error) { return nil, errors.New("unused") }
	if b.check(meta(1, 0, 0, 1), "shutdown") != nil || b.check(meta(4, 64004, 1, 4), "shutdown") != nil || b.check(meta(2, 64002, 0, 2), "shutdown") == nil {
		t.Error("without the group, only root and listed uids may mutate")
	}
}

// Identical refusals on one connection are logged at once, then at most
// once a minute with the number left out; another op or another connection
// is logged on its own.
func TestRefusalLogRateLimited(t *testing.T) {
	var buf syncBuffer
	a := newAuthorizer(slog.New(slog.NewJSONHandler(&buf, nil)), AuthzConfig{Group: "64050"})
	a.setTransport("unix")
	a.procGroups = func(uint32) ([]uint32, error) { return nil, nil }
	now := time.Unix(1_700_000_000, 0)
	a.now = func() time.Time { return now }
	m := ipc.Meta{ConnID: 9, HasPeer: true, Peer: ipc.Creds{UID: 64001, GID: 64100, PID: 42, Exe: "/usr/bin/x"}}
	buf.Reset()
	for i := range 1000 {
		m.RequestID = uint64(i + 1)
		if a.check(m, "add_peer") == nil {
			t.Fatal("allowed")
		}
		now = now.Add(10 * time.Millisecond) // 10 s in all
	}
	lines := logLines(t, buf.Bytes())
	if denied := filterLines(lines, "permission denied"); len(denied) != 1 {
		t.Fatalf("1000 refusals in 10 s logged %d lines, want 1: %v", len(denied), denied)
	}
	now = now.Add(refusalEvery)
	m.RequestID = 1001
	a.check(m, "add_peer")
	a.check(ipc.Meta{ConnID: 9, RequestID: 1002, HasPeer: true, Peer: m.Peer}, "shutdown")
	a.check(ipc.Meta{ConnID: 10, RequestID: 1, HasPeer: true, Peer: m.Peer}, "add_peer")
	denied := filterLines(logLines(t, buf.Bytes()), "permission denied")
	if len(denied) != 4 {
		t.Fatalf("got %d lines: %v", len(denied), denied)
	}
	if denied[1]["suppressed"] != float64(999) || denied[1]["op"] != "add_peer" {
		t.Errorf("the line after a minute: %v (want suppressed 999)", denied[1])
	}
	if denied[2]["op"] != "shutdown" || denied[3]["conn"] != float64(10) {
		t.Errorf("other op / other connection: %v %v", denied[2], denied[3])
	}
	for _, l := range denied {
		for _, k := range []string{"uid", "gid", "pid", "exe", "op", "request_id"} {
			if _, ok := l[k]; !ok {
				t.Errorf("refusal line without %s: %v", k, l)
			}
		}
		if l["level"] != "WARN" {
			t.Errorf("refusal logged at %v", l["level"])
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.b.Bytes())
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	s.b.Reset()
	s.mu.Unlock()
}

func logLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func filterLines(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// sampleRequest is a request of op that decodes; for the mutating ones the
// values do not matter to a refused caller.
func sampleRequest(op string, n int) ipc.Request {
	ip := ipc.AddrOf(netip.MustParseAddr("10.200.9.9"))
	key := "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	switch op {
	case "set_local_node_id":
		return ipc.SetLocalNodeID{NodeID: 7}
	case "set_local_wg_pubkey":
		return ipc.SetLocalWgPubkey{Pubkey: key}
	case "setup_global_overlay":
		return ipc.SetupGlobalOverlay{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820}
	case "teardown_global_overlay":
		return ipc.TeardownGlobalOverlay{}
	case "setup_service_overlay":
		return ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared}
	case "teardown_service_overlay":
		return ipc.TeardownServiceOverlay{Service: "web"}
	case "allocate_ip":
		return ipc.AllocateIP{Service: "web"}
	case "release_ip":
		return ipc.ReleaseIP{IP: ip}
	case "attach_container":
		return ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: 1}, Service: "web"}
	case "detach_container":
		return ipc.DetachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: 1}}
	case "add_peer":
		return ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: key, Endpoint: "192.0.2.1:51820", AllowedIPs: "10.200.7.0/24"}}
	case "remove_peer":
		return ipc.RemovePeer{Pubkey: key}
	case "add_allowed_ip":
		return ipc.AddAllowedIP{Pubkey: key, CIDR: "10.200.8.0/24"}
	case "remove_allowed_ip":
		return ipc.RemoveAllowedIP{Pubkey: key, CIDR: "10.200.8.0/24"}
	case "register_dns":
		return ipc.RegisterDNS{Name: fmt.Sprintf("n%d.p.local", n), IP: ip}
	case "unregister_dns":
		return ipc.UnregisterDNS{Name: "x.p.local"}
	case "status":
		return ipc.Status{}
	case "nat_tick":
		return ipc.NatTick{}
	case "shutdown":
		return ipc.Shutdown{}
	case "journal_list":
		return ipc.JournalList{}
	case "journal_verify":
		return ipc.JournalVerify{}
	case "state_dump":
		return ipc.StateDump{}
	case "journal_query":
		return ipc.JournalQuery{}
	case "journal_stats":
		return ipc.JournalStats{}
	case "journal_follow":
		return ipc.JournalFollow{}
	case "journal_backup":
		return ipc.JournalBackup{}
	case "journal_compact":
		seq := uint64(1)
		return ipc.JournalCompact{BeforeSeq: &seq}
	}
	return nil
}

// shutdown is logged, before the daemon stops, with who sent it.
func TestShutdownLoggedWithSender(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.NewJSONHandler(&logs, nil)), NoDataPlane: true})
	if err != nil {
		t.Fatal(err)
	}
	c := serveTest(t, d, dir)
	call(t, c, ipc.Shutdown{})
	select {
	case <-d.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	lines := logLines(t, logs.Bytes())
	var at, stoppedAt = -1, -1
	for i, l := range lines {
		switch l["msg"] {
		case "shutdown requested; stopping":
			at = i
			if l["level"] != "WARN" || l["uid"] != float64(os.Getuid()) || l["pid"] != float64(os.Getpid()) || l["exe"] == "" || l["exe"] == nil {
				t.Errorf("shutdown line: %v", l)
			}
		case "stopped":
			stoppedAt = i
		}
	}
	if at < 0 || stoppedAt < at {
		t.Fatalf("shutdown line at %d, stopped at %d", at, stoppedAt)
	}
}

//go:build linux

package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// The crash windows of issue 9, hit on purpose: a daemon built with the
// failpoints tag is killed (SIGKILL, from inside, at the exact line) at
// each, then restarted without failpoints. Nothing acknowledged is lost,
// nothing is leaked (links, temporary files) and the journal verifies.

type fpNode struct {
	*Node
	t      *testing.T
	armed  string // the failpoint file the daemon reads
	c      *ipc.Client
	acked  []string // DNS names acknowledged
	serial int
}

func newFPNode(t *testing.T, daemonArgs ...string) *fpNode {
	t.Helper()
	if !Root() {
		t.Skip("needs root: network namespaces and TUN devices")
	}
	l, err := New(1, Options{Daemon: daemonFPBin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", l.Nodes[0].Logs())
		}
		if err := l.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	nd := l.Nodes[0]
	f := &fpNode{Node: nd, t: t, armed: filepath.Join(t.TempDir(), "failpoints")}
	nd.Args = append([]string{"--log-level", "debug", "--reconcile-interval", "500ms"}, daemonArgs...)
	nd.Env = []string{"OVERLAYD_FAILPOINTS_FILE=" + f.armed}
	f.start()
	if _, err := nd.Setup(context.Background(), f.c); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fpNode) start() {
	f.t.Helper()
	if err := f.Start(); err != nil {
		f.t.Fatal(err)
	}
	c, err := f.Client(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	f.c = c
}

func (f *fpNode) arm(spec string) {
	f.t.Helper()
	if err := os.WriteFile(f.armed, []byte(spec), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// register sends one register_dns and records it when acknowledged.
func (f *fpNode) register(c *ipc.Client) error {
	f.serial++
	name := fmt.Sprintf("fp%d.prod.local", f.serial)
	r, err := c.Call(context.Background(), ipc.RegisterDNS{Name: name, IP: ipc.AddrOf(netip.MustParseAddr("10.200.3.3"))})
	if err != nil {
		return err
	}
	if e, ok := r.(ipc.Err); ok {
		return fmt.Errorf("%s", e.Message)
	}
	f.acked = append(f.acked, name)
	return nil
}

// crash expects the daemon to die by the armed failpoint while do runs,
// then disarms and restarts it.
func (f *fpNode) crash(do func(c *ipc.Client)) {
	f.t.Helper()
	c, err := f.Client(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); do(c) }()
	err = f.Wait(20 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		f.t.Fatalf("the daemon did not die by its failpoint: %v", err)
	}
	<-done
	c.Close()
	if !strings.Contains(f.Logs(), "failpoint ") {
		f.t.Fatal("the daemon's log does not show the failpoint")
	}
	f.arm("")
	f.start()
}

// verify checks the restarted daemon: every acknowledged name is in its
// state, the journal verifies, no temporary file is left, and the links it
// owns are exactly those its attachments need.
func (f *fpNode) verify() *projections.State {
	f.t.Helper()
	st, err := projections.ParseCanonicalJSON([]byte(ctlState(f.t, f.Node)))
	if err != nil {
		f.t.Fatal(err)
	}
	for _, name := range f.acked {
		if st.DNS[name] == nil {
			f.t.Fatalf("acknowledged %s was lost", name)
		}
	}
	r := call(f.t, f.c, ipc.JournalVerify{}).(ipc.JournalReport)
	if !r.OK {
		f.t.Fatalf("journal verify: %v", r.Problems)
	}
	tmps, _ := filepath.Glob(filepath.Join(f.DataDir, "overlayd", ".*"))
	if len(tmps) > 0 {
		f.t.Fatalf("temporary files left: %v", tmps)
	}
	legs := 0
	for _, a := range st.Attachments {
		if a.Handle.Platform == ipc.PlatformLinuxPID {
			legs++
			if a.GlobalIP.IsValid() {
				legs++
			}
		}
	}
	waitFor(f.t, 5*time.Second, "the boot pass to leave exactly the attachments' links", func() bool {
		veths, _ := ownedLinks(f.t, f.Node)
		return len(veths) == legs
	})
	return st
}

func TestFailpointsAreCompiledOutOfReleaseBuilds(t *testing.T) {
	for bin, want := range map[string]bool{daemonBin: false, daemonFPBin: true} {
		out, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(out), "OVERLAYD_FAILPOINTS"); got != want {
			t.Fatalf("%s reads OVERLAYD_FAILPOINTS: %v, want %v", filepath.Base(bin), got, want)
		}
	}
}

// After the append, before the fsync: the command was never answered and
// is not in the journal.
func TestCrashAfterAppendBeforeFsync(t *testing.T) {
	f := newFPNode(t)
	for range 10 {
		if err := f.register(f.c); err != nil {
			t.Fatal(err)
		}
	}
	f.arm("journal/before-commit=kill")
	f.crash(func(c *ipc.Client) {
		if err := f.register(c); err == nil {
			t.Error("a command was answered by a daemon killed before its fsync")
		}
	})
	st := f.verify()
	if st.DNS[fmt.Sprintf("fp%d.prod.local", f.serial)] != nil {
		t.Fatal("the command killed before its fsync is in the journal")
	}
}

// After the fsync, before the answer: the command is durable (the client
// saw no answer; repeating it is a no-op).
func TestCrashAfterFsyncBeforeAnswer(t *testing.T) {
	f := newFPNode(t)
	for range 10 {
		if err := f.register(f.c); err != nil {
			t.Fatal(err)
		}
	}
	f.arm("journal/after-commit=kill")
	f.crash(func(c *ipc.Client) {
		if err := f.register(c); err == nil {
			t.Error("a command was answered by a daemon killed before its answer")
		}
	})
	st := f.verify()
	if st.DNS[fmt.Sprintf("fp%d.prod.local", f.serial)] == nil {
		t.Fatal("the command killed after its fsync is not in the journal")
	}
}

// After the effects, before the commit: the attach's veth exists, the
// journal never recorded it; the boot pass removes it.
func TestCrashAfterEffectsBeforeCommit(t *testing.T) {
	f := newFPNode(t)
	call(t, f.c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	ctr, err := f.Lab.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	f.arm("journal/before-commit=sleep(10000)\neffects/after-pass/bridge=kill")
	f.crash(func(c *ipc.Client) {
		c.Call(context.Background(), ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: "web", JoinGlobal: true})
	})
	st := f.verify()
	if len(st.Attachments) != 0 {
		t.Fatalf("an attach killed before its commit is in the journal: %v", st.Attachments)
	}
	if out, err := ctr.Run(context.Background(), "ip", "-o", "link", "show"); err != nil || strings.Contains(out, "eth0") {
		t.Fatalf("the container kept a link of an attach that was never recorded: %v\n%s", err, out)
	}
}

// Between creating a veth and marking it: whether or not the attach made
// it into the journal, nothing is left unowned, and a recorded attach is
// wired.
func TestCrashBetweenVethAndMark(t *testing.T) {
	f := newFPNode(t)
	call(t, f.c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	ctr, err := f.Lab.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	f.arm("bridge/after-veth-create=kill")
	f.crash(func(c *ipc.Client) {
		c.Call(context.Background(), ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.PID)}, Service: "web"})
	})
	st := f.verify()
	out, _ := ctr.Run(context.Background(), "ip", "-o", "-4", "addr", "show")
	if len(st.Attachments) == 1 {
		for _, a := range st.Attachments {
			if !strings.Contains(out, a.IP.String()+"/") {
				t.Fatalf("the recorded attach is not wired after the restart (want %s):\n%s", a.IP, out)
			}
		}
		t.Log("the attach was recorded before the crash: wired at boot")
	} else if strings.Contains(out, "eth0") {
		t.Fatalf("an unrecorded attach left the container a link:\n%s", out)
	}
}

// During a snapshot write: the next boot ignores the half-written file
// (and removes it), and loses nothing.
func TestCrashDuringSnapshotWrite(t *testing.T) {
	f := newFPNode(t, "--snapshot-every", "25")
	f.arm("journal/snapshot-write=kill")
	f.crash(func(c *ipc.Client) {
		for range 100 {
			if err := f.register(c); err != nil {
				return
			}
		}
		t.Error("100 commands and no snapshot was written")
	})
	f.verify()
}

//go:build linux

package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// A full disk: the node's journal lives on a small tmpfs that is filled up.
// Writes are answered err, reads are answered (status says degraded and
// since when), and the mesh keeps forwarding (a ping across it has no gap
// over 1 s). When space returns, writes are accepted again with no
// restart; every acknowledged command is in the state and no refused one
// is; the journal verifies, online and after a restart.
func TestDiskFull(t *testing.T) {
	l := newLab(t, 2)
	a := l.Nodes[0]
	jdir := filepath.Join(a.DataDir, "overlayd")
	if err := os.MkdirAll(jdir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "netlab-full", jdir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", jdir).Run() }) // after the lab's Close (cleanups run last-in first-out)
	ctx := context.Background()
	infos, err := l.Mesh(ctx, 25)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, a, nil)

	pinger := startPinging(t, a.Command(ctx, "ping", "-D", "-n", "-i", "0.1", "-W", "1", infos[1].NodeIP))

	acked, refused := map[string]bool{}, map[string]bool{}
	n := 0
	// register answers "" when acknowledged, else the daemon's refusal.
	register := func() (string, string) {
		n++
		name := fmt.Sprintf("n%d.prod.local", n)
		_, err := c.Call(context.Background(), ipc.RegisterDNS{Name: name, IP: ipc.AddrOf(netip.MustParseAddr("10.200.1.1"))})
		var re *ipc.RemoteError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("register_dns: %v", err)
		}
		if err != nil {
			return name, re.Message
		}
		return name, ""
	}
	for range 50 {
		if name, e := register(); e == "" {
			acked[name] = true
		} else {
			t.Fatalf("before the disk filled up: %s", e)
		}
	}
	// Fill the disk.
	filler := filepath.Join(jdir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	// Writes fail once bbolt needs a page it does not have.
	var firstErr string
	for range 5000 {
		name, e := register()
		if e == "" {
			acked[name] = true
			continue
		}
		refused[name] = true
		firstErr = e
		break
	}
	if firstErr == "" {
		t.Fatal("5,000 writes on a full disk were all acknowledged")
	}
	t.Logf("first refused write: %s", firstErr)
	for range 20 {
		name, e := register()
		if e == "" {
			t.Fatalf("a write was acknowledged while the disk is full")
		}
		refused[name] = true
		if !strings.Contains(e, "read-only") {
			t.Fatalf("a refused write does not say why: %s", e)
		}
	}
	st := status(t, c)
	if !st.Degraded || st.DegradedSince == 0 || !hasProblem(st, "journal", "no space left on device") {
		t.Fatalf("status while the disk is full: degraded=%v since=%d problems=%+v", st.Degraded, st.DegradedSince, st.Problems)
	}
	time.Sleep(2 * time.Second) // read-only for a while; the mesh keeps going
	// Space returns: writes are accepted again, with no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitFor(t, 10*time.Second, "writes to be accepted again", func() bool {
		name, e := register()
		if e == "" {
			acked[name] = true
			return true
		}
		refused[name] = true
		return false
	})
	t.Logf("writes accepted again %v after space returned", time.Since(back).Round(time.Millisecond))
	for range 20 {
		if name, e := register(); e == "" {
			acked[name] = true
		} else {
			t.Fatalf("after recovery: %s", e)
		}
	}
	if st := status(t, c); st.Degraded || hasProblem(st, "journal", "") {
		t.Fatalf("status after recovery: %+v", st)
	}
	if replies, gap := pinger.stop(); gap > 1.0 {
		t.Errorf("ping across the mesh had a gap of %.2f s (at most 1 s)", gap)
	} else {
		t.Logf("ping across the mesh: %d replies, longest gap %.2f s", replies, gap)
	}
	check := func(when string) {
		stt, err := projections.ParseCanonicalJSON([]byte(ctlState(t, a)))
		if err != nil {
			t.Fatal(err)
		}
		for name := range acked {
			if stt.DNS[name] == nil {
				t.Fatalf("%s: acknowledged %s is not in the state", when, name)
			}
		}
		for name := range refused {
			if stt.DNS[name] != nil {
				t.Fatalf("%s: refused %s is in the state", when, name)
			}
		}
		r := call(t, client(t, a, nil), ipc.JournalVerify{}).(ipc.JournalReport)
		if !r.OK {
			t.Fatalf("%s: journal verify: %v", when, r.Problems)
		}
	}
	check("online")
	t.Logf("%d acknowledged, %d refused", len(acked), len(refused))
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	check("after a restart")
}

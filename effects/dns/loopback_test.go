//go:build linux

package dns

import (
	"bytes"
	"fmt"
	"github.com/zlayer/overlayd/tools/netlab"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// While lo is down and a loopback listen address is wanted, the
// reconciler warns once, naming the fix, and reports a problem; once lo
// is up the problem clears. Without a loopback listen address, lo does
// not matter.
func TestLoopbackDownWarns(t *testing.T) {
	var logs bytes.Buffer
	r := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	defer r.Close()
	down := true
	r.loDown = func() bool { return down }
	r.converge(true)
	r.converge(true)
	ps := r.Problems()
	if len(ps) != 1 || ps[0].Key != loopbackKey || !strings.Contains(ps[0].Err.Error(), "ip link set lo up") {
		t.Fatalf("lo down: problems %v", ps)
	}
	if n := strings.Count(logs.String(), "lo is down"); n != 1 || !strings.Contains(logs.String(), `fix="ip link set lo up"`) {
		t.Fatalf("lo down: %d warnings (want 1, naming the fix):\n%s", n, logs.String())
	}
	down = false
	r.converge(true)
	if ps := r.Problems(); len(ps) != 0 {
		t.Fatalf("lo up: problems %v", ps)
	}
	r2 := New(slog.New(slog.NewTextHandler(&logs, nil)), Options{})
	defer r2.Close()
	r2.loDown = func() bool { return true }
	r2.converge(true)
	if ps := r2.Problems(); len(ps) != 0 {
		t.Fatalf("no loopback listener: problems %v", ps)
	}
}

// loopbackDown reads the real link: in a namespace made by `ip netns
// add`, lo is down until `ip link set lo up`. (Root: creates and deletes
// its own namespace.)
func TestLoopbackDownInFreshNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	name := fmt.Sprintf("fzlo-%d", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("ip netns add: %v %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	in := func() bool {
		var down bool
		if err := netlab.InNetns("/run/netns/"+name, func() error { down = loopbackDown(); return nil }); err != nil {
			t.Fatal(err)
		}
		return down
	}
	if !in() {
		t.Fatal("lo of a fresh namespace reported up")
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if in() {
		t.Fatal("lo reported down after ip link set lo up")
	}
}

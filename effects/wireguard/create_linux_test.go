package wireguard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/zlayer/overlayd/projections"
)

// Tests on the real kernel. Each runs its body in a child test process
// inside a network namespace it creates and deletes (TUN links, routes and
// UDP sockets are per namespace; the UAPI socket directory is shared, so
// names are random).

const envNetns = "OVERLAYD_WG_TEST_NETNS"

// inNetns runs body in a copy of this test binary inside a new network
// namespace (the child runs only the calling test), and fails when it
// fails. In the child, it runs body directly.
func inNetns(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(envNetns) != "" {
		body(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: works in a network namespace it creates")
	}
	name := "wgt" + randHex(t, 3)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), envNetns+"="+name)
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("the test in namespace %s failed: %v", name, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatal("the child did not run the test")
	}
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func countFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// waitFDs waits (up to 3 s) until the process holds want descriptors: a
// closed TUN is released when wireguard-go's reader returns, just after
// Close.
func waitFDs(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := countFDs(t)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d descriptors open, want %d", what, n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTUNClosed waits (up to 3 s) until the process holds no /dev/net/tun
// descriptor: a closed device releases its TUN when wireguard-go's reader
// returns, just after Close.
func waitTUNClosed(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		open := 0
		for _, e := range es {
			if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == tunClone {
				open++
			}
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s descriptors still open", open, tunClone)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every failure path of device creation closes what it opened: the
// /dev/net/tun descriptor (before and after TUNSETIFF), the TUN device,
// the wireguard-go device, the UAPI socket. 20 failed creations at each
// step leave the descriptor count, the links and the socket directory as
// they were. Without root, the kernel's own refusal (TUNSETIFF: EPERM) is
// the failure.
func TestCreateDeviceClosesWhatItOpened(t *testing.T) {
	if os.Geteuid() != 0 {
		name := "wgt" + randHex(t, 3)
		k := &hostKernel{}
		base := countFDs(t)
		for i := 0; i < 20; i++ {
			if _, err := k.CreateDevice(name, 1420, quiet()); err == nil {
				t.Fatal("an unprivileged TUN creation succeeded")
			}
		}
		waitFDs(t, base, "after 20 refused creations")
		return
	}
	inNetns(t, func(t *testing.T) {
		name := "wgt" + randHex(t, 3)
		sock := uapiDir + "/" + name + ".sock"
		injected := errors.New("injected")
		// Warm up: the first creation opens process-wide descriptors
		// (the netpoller's epoll, a netlink socket of the package handle).
		warm, err := (&hostKernel{}).CreateDevice(name, 1420, quiet())
		if err != nil {
			t.Fatal(err)
		}
		warm.Close()
		waitTUNClosed(t)
		base := countFDs(t)
		for _, step := range []string{"tun-open", "tun-setiff", "tun-wrap", "device", "uapi"} {
			k := &hostKernel{inject: func(s string) error {
				if s == step {
					return injected
				}
				return nil
			}}
			for i := 0; i < 20; i++ {
				_, err := k.CreateDevice(name, 1420, quiet())
				if !errors.Is(err, injected) || !strings.Contains(err.Error(), name) {
					t.Fatalf("step %s: %v", step, err)
				}
			}
			waitFDs(t, base, "after 20 creations failing at "+step)
			if _, err := netlink.LinkByName(name); err == nil {
				t.Fatalf("step %s: link %s left behind", step, name)
			}
			if _, err := os.Stat(sock); err == nil {
				t.Fatalf("step %s: %s left behind", step, sock)
			}
		}
		// A name in use (EBUSY, retried for 3 s) leaks nothing either.
		live, err := (&hostKernel{}).CreateDevice(name, 1420, quiet())
		if err != nil {
			t.Fatal(err)
		}
		withLive := countFDs(t)
		if _, err := (&hostKernel{}).CreateDevice(name, 1420, quiet()); !errors.Is(err, syscall.EBUSY) {
			t.Fatalf("second device of one name: %v", err)
		}
		waitFDs(t, withLive, "after an EBUSY creation")
		live.Close()
		waitFDs(t, base, "after closing the device")
		if _, err := os.Stat(sock); err == nil {
			t.Fatalf("%s left after Close", sock)
		}
	})
}

// Only "no such link" means the device disappeared.
func TestLinkErrNotFoundOnlyForMissingLink(t *testing.T) {
	for _, tc := range []struct {
		err      error
		notFound bool
	}{
		{netlink.LinkNotFoundError{}, true},
		{syscall.ENODEV, true},
		{syscall.EMFILE, false},
		{syscall.ENOBUFS, false},
		{syscall.EINTR, false},
	} {
		err := linkErr("zl-x-g", tc.err)
		if errors.Is(err, ErrLinkNotFound) != tc.notFound || !strings.Contains(err.Error(), "zl-x-g") {
			t.Errorf("%v → %v (not found: %v)", tc.err, err, errors.Is(err, ErrLinkNotFound))
		}
	}
	if os.Geteuid() == 0 {
		inNetns(t, func(t *testing.T) {
			_, err := (&hostKernel{}).Link("wgt-absent")
			if !errors.Is(err, ErrLinkNotFound) {
				t.Fatalf("a missing link: %v", err)
			}
		})
	}
}

// hostEnv is newEnv on the host kernel (the test's namespace): a global
// overlay of a random instance, so that the device's name and its UAPI
// socket are the test's own. It returns the global device's name; the
// reconciler is closed at cleanup.
func hostEnv(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, projections.SetupGlobal{Deployment: "t", InstanceID: randHex(t, 3), ClusterCIDR: "10.200.0.0/16", SliceCIDR: "10.200.7.0/24", Port: 51820})
	e.r = New(e.keys, quiet())
	t.Cleanup(func() { e.r.Close() })
	return e, e.v.st.Global.Device
}

// On the real kernel: a taken wg_port is a key error naming the port, the
// device is up with its address, peers and routes; once the socket that
// held the port is closed, the next pass listens on it.
func TestPortTakenThenFreedRealKernel(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		e, dev := hostEnv(t)
		holder, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 51820})
		if err != nil {
			t.Fatal(err)
		}
		ke := keyErrs(t, e.pass(true), "global")
		want := "wireguard: " + dev + ": listen port 51820/udp is taken by another process: address already in use"
		if got := ke["global"].Error(); got != want {
			t.Fatalf("%q, want %q", got, want)
		}
		l, err := netlink.LinkByName(dev)
		if err != nil || l.Attrs().Flags&net.FlagUp == 0 || l.Attrs().MTU != 1420 {
			t.Fatalf("link %s: %v %+v", dev, err, l)
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.200.7.1/16" {
			t.Fatalf("addresses %v", addrs)
		}
		st, err := e.r.Stats(dev)
		if err != nil || st.ListenPort == 51820 || len(st.Peers) != 2 {
			t.Fatalf("stats %v %+v", err, st)
		}
		routes, _ := (&hostKernel{}).Routes(Link{Name: dev, Index: l.Attrs().Index})
		if len(routes) != 3 {
			t.Fatalf("routes %v", routes)
		}
		keyErrs(t, e.pass(true), "global") // still taken: still an error
		holder.Close()
		if err := e.pass(true); err != nil {
			t.Fatalf("after the port was freed: %v", err)
		}
		if st, err := e.r.Stats(dev); err != nil || st.ListenPort != 51820 {
			t.Fatalf("stats %v %+v", err, st)
		}
		if l2, err := netlink.LinkByName(dev); err != nil || l2.Attrs().Index != l.Attrs().Index {
			t.Fatalf("the device was made again (%v)", err)
		}
		out, err := exec.Command("ss", "-ulpn", "sport = :51820").CombinedOutput()
		if err != nil || !strings.Contains(string(out), ":51820") {
			t.Fatalf("ss: %v\n%s", err, out)
		}
		t.Logf("ss -ulpn:\n%s", out)
	})
}

// The real kernel's drift: a device whose link is deleted is made again
// (one whose link check fails otherwise is kept: see
// TestDescriptorExhaustionKeepsDeviceRealKernel).
func TestLinkDeletedRecreatedRealKernel(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		e, dev := hostEnv(t)
		e.mustPass(true)
		l, _ := netlink.LinkByName(dev)
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			err := e.pass(true)
			if err == nil {
				break
			}
			// The old TUN may still be closing (EBUSY): the next pass
			// tries again.
			if ctx.Err() != nil {
				t.Fatalf("not recreated: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		st, err := e.r.Stats(dev)
		if err != nil || st.ListenPort != 51820 || len(st.Peers) != 2 {
			t.Fatalf("recreated device: %v %+v", err, st)
		}
	})
}

// The descriptor exhaustion, on the real kernel: while the process
// cannot open a descriptor, every pass fails for "global" with EMFILE and
// keeps the device (no close, no TUN made again, nothing leaked); once
// descriptors are back, the next pass succeeds on the same link and the
// descriptor count is what it was.
func TestDescriptorExhaustionKeepsDeviceRealKernel(t *testing.T) {
	inNetns(t, func(t *testing.T) {
		e, dev := hostEnv(t)
		e.mustPass(true)
		before, err := netlink.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		base := countFDs(t)
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		low := lim
		low.Cur = uint64(base + 16)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
			t.Fatal(err)
		}
		var held []int
		release := func() {
			for _, fd := range held {
				syscall.Close(fd)
			}
			held = nil
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
		defer release()
		for {
			fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				if !errors.Is(err, syscall.EMFILE) {
					t.Fatal(err)
				}
				break
			}
			held = append(held, fd)
		}
		for i := 0; i < 3; i++ {
			ke := keyErrs(t, e.pass(true), "global")
			if !errors.Is(ke["global"], syscall.EMFILE) || !strings.Contains(ke["global"].Error(), dev) {
				t.Fatalf("pass %d without descriptors: %v", i, ke["global"])
			}
		}
		n := len(held)
		release()
		t.Logf("%d descriptors held; 3 passes failed with EMFILE and kept the device", n)
		if err := e.pass(true); err != nil {
			t.Fatalf("after descriptors came back: %v", err)
		}
		after, err := netlink.LinkByName(dev)
		if err != nil || after.Attrs().Index != before.Attrs().Index {
			t.Fatalf("the device was made again (%v)", err)
		}
		if st, err := e.r.Stats(dev); err != nil || st.ListenPort != 51820 || len(st.Peers) != 2 {
			t.Fatalf("stats %v %+v", err, st)
		}
		waitFDs(t, base, "after exhaustion")
	})
}

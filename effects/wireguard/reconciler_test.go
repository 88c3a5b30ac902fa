package wireguard

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// The reconciler driven through fakeKernel: no root, no kernel. What the
// fake renders is the host the reconciler made.

type testView struct {
	mu sync.Mutex
	st *projections.State
}

func (v *testView) Read(fn func(st *projections.State)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fn(v.st)
}

type testKeys map[string]wgtypes.Key

func (k testKeys) PrivateKey(pub string) (wgtypes.Key, error) {
	if priv, ok := k[pub]; ok {
		return priv, nil
	}
	return wgtypes.Key{}, errors.New("no key for " + pub)
}

// env is a node with a global overlay (device zl-p-1-g, port 51820,
// 10.200.7.1/16) and two peers: A with an endpoint, B without.
type env struct {
	t    *testing.T
	k    *fakeKernel
	r    *Reconciler
	v    *testView
	keys testKeys
	a, b string // peer public keys
}

const globalDev = "zl-p-1-g"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *env) newKey() string {
	priv, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		e.t.Fatal(err)
	}
	pub := priv.PublicKey().String()
	e.keys[pub] = priv
	return pub
}

func newEnv(t *testing.T, global projections.SetupGlobal) *env {
	t.Helper()
	e := &env{t: t, k: newFakeKernel(), v: &testView{st: projections.New()}, keys: testKeys{}}
	e.r = newReconciler(e.keys, quiet(), e.k)
	e.a, e.b = e.newKey(), e.newKey()
	e.do(projections.SetNodeIdentity{PublicKey: e.newKey()}, global,
		projections.AddPeer{PublicKey: e.a, Endpoint: "192.0.2.1:51820", AllowedIPs: "10.200.8.0/24", Keepalive: 25},
		projections.AddPeer{PublicKey: e.b, AllowedIPs: "10.200.9.0/24,10.9.0.0/24", Keepalive: 25})
	return e
}

func defaultEnv(t *testing.T) *env {
	return newEnv(t, projections.SetupGlobal{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: "10.200.7.0/24", Port: 51820})
}

func (e *env) do(cmds ...projections.Command) {
	e.t.Helper()
	e.v.mu.Lock()
	defer e.v.mu.Unlock()
	for _, c := range cmds {
		d, err := projections.Decide(e.v.st, projections.DefaultConfig(), c)
		if err != nil {
			e.t.Fatalf("%s: %v", c.Op(), err)
		}
		for _, ev := range d.Events {
			if err := e.v.st.Apply(ev); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

func (e *env) pass(all bool, changed ...string) error {
	return e.r.Reconcile(context.Background(), e.v, changed, all)
}

func (e *env) mustPass(all bool, changed ...string) {
	e.t.Helper()
	if err := e.pass(all, changed...); err != nil {
		e.t.Fatalf("pass: %v", err)
	}
}

// keyErrs asserts err is effects.KeyErrors with exactly keys.
func keyErrs(t *testing.T, err error, keys ...string) effects.KeyErrors {
	t.Helper()
	var ke effects.KeyErrors
	if !errors.As(err, &ke) {
		t.Fatalf("error %v (%T) is not KeyErrors", err, err)
	}
	if len(ke) != len(keys) {
		t.Fatalf("key errors %v, want keys %v", ke, keys)
	}
	for _, k := range keys {
		if ke[k] == nil {
			t.Fatalf("key errors %v lack %q", ke, k)
		}
	}
	return ke
}

func hexOfB64(t *testing.T, b64 string) string {
	t.Helper()
	h, err := hexKey(b64)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A pass makes the device as the state says; a second one sends nothing.
func TestFakeConvergeAndIdle(t *testing.T) {
	e := defaultEnv(t)
	e.mustPass(true)
	got := e.k.render()
	for _, want := range []string{
		"link zl-p-1-g mtu 1420 up true\n",
		"  addr 10.200.7.1/16\n",
		"  route 10.200.8.0/24\n  route 10.200.9.0/24\n  route 10.9.0.0/24\n",
		"  device up true port 51820 key true\n",
		"endpoint \"192.0.2.1:51820\" keepalive 25 allowed [10.200.8.0/24]\n",
		"endpoint \"\" keepalive 25 allowed [10.9.0.0/24 10.200.9.0/24]\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("host lacks %q:\n%s", want, got)
		}
	}
	dev := e.k.device(globalDev)
	sets, hs := dev.counters()
	if len(hs) != 1 || hs[0] != e.a {
		t.Errorf("handshakes %v, want one with the peer that has an endpoint", hs)
	}
	for i := 0; i < 3; i++ {
		e.mustPass(true)
	}
	if again, _ := dev.counters(); again != sets {
		t.Errorf("converged device configured again: %d UAPI sets, was %d", again, sets)
	}
	if e.k.render() != got {
		t.Errorf("idle passes changed the host:\n%s\nwas\n%s", e.k.render(), got)
	}
}

// Drift: a deleted link is made again with the same key, port, address
// and peers, and the dead device is closed.
func TestFakeDriftLinkDeletedRecreated(t *testing.T) {
	e := defaultEnv(t)
	e.mustPass(true)
	want := e.k.render()
	old := e.k.device(globalDev)
	e.k.deleteLink(globalDev)
	e.mustPass(true)
	if got := e.k.render(); got != want {
		t.Fatalf("recreated device differs:\n%s\nwant\n%s", got, want)
	}
	if creates, open := e.k.counts(); creates != 2 || open != 1 {
		t.Fatalf("creates %d open %d, want 2 and 1 (the dead device closed)", creates, open)
	}
	nd := e.k.device(globalDev)
	if nd == old || nd.priv != old.priv || nd.priv != hex.EncodeToString(func() []byte { k := e.keys[e.v.st.Node.PublicKey]; return k[:] }()) {
		t.Fatal("the new device does not carry the node's key")
	}
	if _, hs := nd.counters(); len(hs) != 1 || hs[0] != e.a {
		t.Fatalf("the new device's handshakes: %v", hs)
	}
}

// Drift: a peer removed by hand comes back; the other peer is not touched.
func TestFakeDriftPeerRemovedRestored(t *testing.T) {
	e := defaultEnv(t)
	e.mustPass(true)
	want := e.k.render()
	dev := e.k.device(globalDev)
	dev.handSet("public_key=" + hexOfB64(t, e.b) + "\nremove=true\n")
	if e.k.render() == want {
		t.Fatal("the hand edit did nothing")
	}
	before, _ := dev.counters()
	e.mustPass(true)
	if got := e.k.render(); got != want {
		t.Fatalf("after repair:\n%s\nwant\n%s", got, want)
	}
	if after, _ := dev.counters(); after != before+1 {
		t.Fatalf("repair took %d UAPI sets, want 1", after-before)
	}
	if creates, _ := e.k.counts(); creates != 1 {
		t.Fatalf("a peer repair recreated the device (%d creates)", creates)
	}
}

// Drift: a deleted route comes back; a stray route of ours goes; an
// address added by hand goes; the MTU comes back.
func TestFakeDriftRoutesAddressMTU(t *testing.T) {
	e := defaultEnv(t)
	e.mustPass(true)
	want := e.k.render()
	e.k.withLink(globalDev, func(l *fakeLink) {
		delete(l.routes, netip.MustParsePrefix("10.9.0.0/24"))
		l.routes[netip.MustParsePrefix("10.99.0.0/24")] = true
		l.addrs[netip.MustParsePrefix("10.200.7.99/16")] = true
		l.mtu = 1500
		l.up = false
	})
	e.mustPass(true)
	if got := e.k.render(); got != want {
		t.Fatalf("after repair:\n%s\nwant\n%s", got, want)
	}
}

// Clean-up: the device of a torn-down service is closed, its link gone.
func TestFakeCleanupDevicesNotInState(t *testing.T) {
	e := defaultEnv(t)
	svcKey := e.newKey()
	e.do(projections.SetupService{Service: "db", Mode: projections.ModeDedicated, NewPublicKey: svcKey})
	e.mustPass(false, "service/db")
	dedicated := e.v.st.Services["db"].Dedicated.Device
	if e.k.device(dedicated) == nil {
		t.Fatalf("no dedicated device:\n%s", e.k.render())
	}
	e.do(projections.TeardownService{Service: "db"})
	e.mustPass(false, "service/db")
	if e.k.device(dedicated) != nil {
		t.Fatalf("the torn-down service's device is still there:\n%s", e.k.render())
	}
	if _, open := e.k.counts(); open != 1 {
		t.Fatalf("%d devices open, want 1", open)
	}
	e.do(projections.TeardownGlobal{})
	e.mustPass(false, "global")
	if _, open := e.k.counts(); open != 0 || e.k.render() != "" {
		t.Fatalf("after teardown %d open:\n%s", open, e.k.render())
	}
}

// Any error reading the link but "not found" keeps the device and fails
// the pass for its key; the next pass repairs nothing, recreates nothing.
func TestFakeLinkCheckErrorKeepsDevice(t *testing.T) {
	for _, tc := range []struct {
		op    string
		errno syscall.Errno
	}{
		{"link", syscall.EMFILE},
		{"link", syscall.ENOBUFS},
		{"routes", syscall.EMFILE},
		{"ipcget", syscall.ENOMEM},
	} {
		t.Run(tc.op+"/"+tc.errno.Error(), func(t *testing.T) {
			e := defaultEnv(t)
			e.mustPass(true)
			want := e.k.render()
			dev := e.k.device(globalDev)
			e.k.fail(tc.op, tc.errno, 1)
			ke := keyErrs(t, e.pass(true), "global")
			if !errors.Is(ke["global"], tc.errno) || !strings.Contains(ke["global"].Error(), globalDev) {
				t.Fatalf("error %q does not name the device and %v", ke["global"], tc.errno)
			}
			if e.k.device(globalDev) != dev || e.k.render() != want {
				t.Fatalf("the device was touched:\n%s", e.k.render())
			}
			e.mustPass(true)
			if creates, open := e.k.counts(); creates != 1 || open != 1 {
				t.Fatalf("creates %d open %d after recovery, want 1 and 1", creates, open)
			}
		})
	}
}

// A TUN name that is busy fails the pass for its key without leaving
// anything open; a later pass makes the device.
func TestFakeCreateBusyRetriedWithoutLeak(t *testing.T) {
	e := defaultEnv(t)
	e.k.fail("create", syscall.EBUSY, 2)
	for i := 0; i < 2; i++ {
		ke := keyErrs(t, e.pass(true), "global")
		if !errors.Is(ke["global"], syscall.EBUSY) || !strings.Contains(ke["global"].Error(), globalDev) {
			t.Fatalf("pass %d: %v", i, ke["global"])
		}
		if creates, open := e.k.counts(); creates != 0 || open != 0 {
			t.Fatalf("pass %d: creates %d open %d", i, creates, open)
		}
	}
	e.mustPass(true)
	if creates, open := e.k.counts(); creates != 1 || open != 1 {
		t.Fatalf("creates %d open %d, want 1 and 1", creates, open)
	}
}

// Errors of single operations (a route the kernel has no room for, an
// address, a link that vanished under a call) fail the key and are
// repaired by the next pass.
func TestFakeOperationErrorsRetried(t *testing.T) {
	for _, tc := range []struct {
		op    string
		errno syscall.Errno
	}{
		{"route-replace", syscall.ENOSPC},
		{"route-replace", syscall.ENODEV},
		{"addr-replace", syscall.ENOSPC},
		{"addrs", syscall.ENOBUFS},
		{"ipcset", syscall.EMFILE},
		{"dev-up", syscall.EMFILE},
	} {
		t.Run(tc.op+"/"+tc.errno.Error(), func(t *testing.T) {
			ref := defaultEnv(t)
			ref.mustPass(true)
			e := defaultEnv(t)
			e.keys, e.r = ref.keys, newReconciler(ref.keys, quiet(), e.k)
			e.v = ref.v
			e.k.fail(tc.op, tc.errno, 1)
			ke := keyErrs(t, e.pass(true), "global")
			if !errors.Is(ke["global"], tc.errno) {
				t.Fatalf("%v does not wrap %v", ke["global"], tc.errno)
			}
			e.mustPass(true)
			if got, want := e.k.render(), ref.k.render(); got != want {
				t.Fatalf("after the retry:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// A listen port another process holds: the error names the device and
// the port under the key "global", the device is up with its address,
// peers and routes, every pass tries again, and once the port is free the
// next pass takes it (same device) and handshakes.
func TestFakePortTakenKeyErrorsThenListens(t *testing.T) {
	e := defaultEnv(t)
	e.k.taken[51820] = true
	for i := 0; i < 2; i++ {
		ke := keyErrs(t, e.pass(true), "global")
		const want = "wireguard: zl-p-1-g: listen port 51820/udp is taken by another process: address already in use"
		if got := ke["global"].Error(); got != want {
			t.Fatalf("pass %d: %q, want %q", i, got, want)
		}
		var pe *PortError
		if !errors.As(ke["global"], &pe) || pe.Port != 51820 || !errors.Is(ke["global"], syscall.EADDRINUSE) {
			t.Fatalf("pass %d: %#v", i, ke["global"])
		}
	}
	host := e.k.render()
	for _, want := range []string{"up true", "addr 10.200.7.1/16", "route 10.9.0.0/24", "device up true port 0 key true", "allowed [10.200.8.0/24]"} {
		if !strings.Contains(host, want) {
			t.Fatalf("device without its port lacks %q:\n%s", want, host)
		}
	}
	dev := e.k.device(globalDev)
	_, hsBefore := dev.counters()
	delete(e.k.taken, 51820)
	e.mustPass(true)
	if e.k.device(globalDev) != dev || dev.port != 51820 {
		t.Fatalf("port not taken on the same device:\n%s", e.k.render())
	}
	if _, hs := dev.counters(); len(hs) != len(hsBefore)+1 || hs[len(hs)-1] != e.a {
		t.Fatalf("no handshake once listening: %v (before %v)", hs, hsBefore)
	}
}

// The runner keeps the key error until a pass succeeds for it, which is
// what the daemon answers and lists in status.
func TestFakePortErrorThroughRunner(t *testing.T) {
	e := defaultEnv(t)
	e.k.taken[51820] = true
	run := effects.NewRunner(e.v, quiet(), 0, e.r)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	run.Start(ctx)
	defer run.Stop()
	if err := run.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run.Err("global"); err == nil || !strings.Contains(err.Error(), "listen port 51820/udp is taken") {
		t.Fatalf("runner.Err(global) = %v", err)
	}
	// A peer change succeeds and leaves the device's error in place.
	c := e.newKey()
	e.do(projections.AddPeer{PublicKey: c, AllowedIPs: "10.200.10.0/24"})
	run.Notify([]string{"peer/global/" + c}, 99)
	if err := run.WaitApplied(ctx, 99); err != nil {
		t.Fatal(err)
	}
	if run.Err("global") == nil {
		t.Fatal("a peer change cleared the device's port error")
	}
	delete(e.k.taken, 51820)
	if err := run.ReconcileAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run.Err("global"); err != nil {
		t.Fatalf("error kept after the port was taken: %v", err)
	}
}

// A dedicated service's device fails under its own key; the global device
// is fine.
func TestFakeDedicatedErrorKeyedByService(t *testing.T) {
	e := defaultEnv(t)
	svcKey := e.newKey()
	e.do(projections.SetupService{Service: "db", Mode: projections.ModeDedicated, NewPublicKey: svcKey})
	port := e.v.st.Services["db"].Dedicated.Port
	e.k.taken[port] = true
	ke := keyErrs(t, e.pass(true), "service/db")
	var pe *PortError
	if !errors.As(ke["service/db"], &pe) || pe.Port != port || pe.Device != e.v.st.Services["db"].Dedicated.Device {
		t.Fatalf("%v", ke["service/db"])
	}
	if d := e.k.device(globalDev); d == nil || d.port != 51820 {
		t.Fatal("the global device suffered from the service's port")
	}
}

// A peer change that fails is keyed by the device's object.
func TestFakeIncrementalFailureKeyed(t *testing.T) {
	e := defaultEnv(t)
	e.mustPass(true)
	c := e.newKey()
	e.do(projections.AddPeer{PublicKey: c, AllowedIPs: "10.200.10.0/24"})
	e.k.fail("ipcset", syscall.ENOMEM, 1)
	keyErrs(t, e.pass(false, "peer/global/"+c), "global")
	e.mustPass(true)
	if !strings.Contains(e.k.render(), "route 10.200.10.0/24") {
		t.Fatalf("the peer was not added by the retry:\n%s", e.k.render())
	}
}

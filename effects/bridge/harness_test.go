//go:build linux

package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// The owners of the unit tests: a journal at its home, the same journal
// copied to another home, another journal.
var (
	ownerA     = effects.Owner{Journal: "aaaaaaaaaaaa", Home: "home1"}
	ownerACopy = effects.Owner{Journal: "aaaaaaaaaaaa", Home: "home2"}
	ownerB     = effects.Owner{Journal: "bbbbbbbbbbbb", Home: "home1"}
)

// harness drives a Reconciler over a fake kernel and a state it edits
// (the View). Every test through it checks, at its end, that every
// namespace the reconciler opened was closed.
type harness struct {
	t testing.TB
	k *fakeKernel
	r *Reconciler

	mu       sync.Mutex
	st       *projections.State
	detached []string // "handle: reason"
}

func newHarness(t *testing.T, owner effects.Owner) *harness {
	return newHarnessOn(t, newFakeKernel(), owner)
}

// newHarnessOn is a harness (a daemon) over kernel k: the node's overlay
// address is on a link of its own (standing for the WireGuard device).
func newHarnessOn(t *testing.T, k *fakeKernel, owner effects.Owner) *harness {
	t.Helper()
	h := newView(t)
	h.k = k
	h.r = newReconciler(testLog(t), h.onDetach, owner, k)
	k.mu.Lock()
	if k.node.byName("ovl0") == nil {
		wg := k.node.add(&fakeLink{Link: Link{Name: "ovl0", Kind: "tun", MTU: 1420, Up: true}})
		wg.addrs = []netip.Prefix{netip.MustParsePrefix("10.200.0.1/16")}
	}
	k.mu.Unlock()
	t.Cleanup(func() {
		if n := k.openHandles(); n != 0 {
			t.Errorf("%d container namespaces left open", n)
		}
	})
	return h
}

// newView is a harness without a reconciler or kernel yet: the state (a
// global overlay with the node at 10.200.0.1) and the detaches.
func newView(t testing.TB) *harness {
	h := &harness{t: t, st: projections.New()}
	h.st.Global = &projections.Global{ClusterCIDR: netip.MustParsePrefix("10.200.0.0/16"), NodeIP: netip.MustParseAddr("10.200.0.1")}
	return h
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (h *harness) Read(fn func(*projections.State)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h.st)
}

func (h *harness) onDetach(key, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.detached = append(h.detached, key+": "+reason)
}

func (h *harness) detaches() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.detached...)
}

// service sets up a service: its subnet's first address is the gateway.
func (h *harness) service(name, subnet string) {
	p := netip.MustParsePrefix(subnet)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.st.Services[name] = &projections.Service{Name: name, Mode: "shared", Subnet: p, Gateway: p.Addr().Next(), Bridge: name + "-b"}
}

// container starts a process in a namespace of its own.
func (h *harness) container(pid uint32) uint64 { return h.k.spawn(pid) }

// attach puts an attachment of pid into the state (global: with eth1).
func (h *harness) attach(pid uint32, service, ip, global string) {
	h.k.mu.Lock()
	ns := h.k.procs[pid]
	h.k.mu.Unlock()
	if ns == nil {
		h.t.Fatalf("attach: no process %d", pid)
	}
	h.attachIno(pid, ns.ino, service, ip, global)
}

// attachIno puts an attachment of pid in the namespace ino into the state.
func (h *harness) attachIno(pid uint32, ino uint64, service, ip, global string) {
	a := &projections.Attachment{Handle: projections.Handle{Platform: projections.PlatformLinuxPID, PID: pid},
		Service: service, IP: netip.MustParseAddr(ip), NetnsInode: ino}
	if global != "" {
		a.GlobalIP = netip.MustParseAddr(global)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.st.Attachments[a.Handle.Key()] = a
}

func (h *harness) detach(pid uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.st.Attachments, fmt.Sprintf("linux_pid:%d", pid))
}

// full runs a full pass.
func (h *harness) full() error {
	return h.r.Reconcile(context.Background(), h, nil, true)
}

// change runs a pass over the named change keys.
func (h *harness) change(keys ...string) error {
	return h.r.Reconcile(context.Background(), h, keys, false)
}

// converge runs a full pass that must succeed, then another that must
// change nothing (the reconciler is idempotent; over the real kernel, one
// that must succeed).
func (h *harness) converge() {
	h.t.Helper()
	if h.k == nil {
		for _, pass := range []string{"full pass", "second full pass"} {
			if err := h.full(); err != nil {
				h.t.Fatalf("%s: %v", pass, err)
			}
		}
		return
	}
	if err := h.full(); err != nil {
		h.t.Fatalf("full pass: %v\n%s", err, h.k.render())
	}
	h.k.mutations()
	if err := h.full(); err != nil {
		h.t.Fatalf("second full pass: %v", err)
	}
	if m := h.k.mutations(); len(m) > 0 {
		h.t.Fatalf("a second full pass over a converged kernel changed it: %q", m)
	}
}

// same fails unless the fake OS renders as want.
func same(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s:\n--- got\n%s--- want\n%s", what, got, want)
	}
}

// section is the part of a render for one namespace ("node", "pid 100").
func section(render, name string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(render, "\n") {
		if line != "" && !strings.HasPrefix(line, " ") {
			in = strings.TrimSpace(line) == name
		}
		if in {
			b.WriteString(line)
		}
	}
	return b.String()
}

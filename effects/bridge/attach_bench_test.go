//go:build linux

package bridge

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/zlayer/overlayd/effects"
)

// The reconciler's whole attach of a container through the real kernel
// (ensureAttachment: open the namespace, create the pair into it, mark,
// address, routes, gratuitous ARP), without daemon, journal or IPC; the
// detach that follows each one is not timed (root):
//
//	go test -run x -bench Attach -benchtime 200x ./effects/bridge
func BenchmarkAttach(b *testing.B) {
	requireNetns(b)
	br := &Bridge{Service: "bench", Name: "ovbench-b", Gateway: netip.MustParsePrefix("10.200.7.1/28"), MAC: bridgeMAC("ovbench-b")}
	r := benchReconciler()
	defer r.Close()
	if err := r.ensureBridge(br); err != nil {
		b.Fatal(err)
	}
	defer r.k.DelLink(Link{Name: br.Name})
	for _, tc := range []struct {
		name   string
		global bool
	}{{"eth0", false}, {"eth0+eth1", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ctr := newTestContainer(b)
			a := &Attachment{Key: "linux_pid:1", PID: ctr.pid, NetnsInode: ctr.inode, Service: br.Service, Bridge: br.Name,
				IP: netip.MustParsePrefix("10.200.7.2/28"), Gateway: br.Gateway.Addr()}
			if tc.global {
				a.GlobalIP, a.Cluster, a.NodeIP = netip.MustParseAddr("10.200.128.2"), netip.MustParsePrefix("10.200.0.0/16"), netip.MustParseAddr("10.200.0.1")
			}
			b.ResetTimer()
			for range b.N {
				if err := benchAttach(r, a, br); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for _, leg := range []Leg{LegService, LegGlobal} {
					if err := r.k.DelLink(Link{Name: a.HostName(leg)}); err != nil && !notFound(err) {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
		})
	}
}

func benchReconciler() *Reconciler {
	return NewWithKernel(slog.New(slog.DiscardHandler), nil, effects.Owner{Journal: "0123456789ab", Home: "bench"}, NewKernel())
}
func benchAttach(r *Reconciler, a *Attachment, br *Bridge) error { return r.ensureAttachment(a, br) }

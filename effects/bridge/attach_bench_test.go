//go:build linux

package bridge

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/effects"
)

// The reconciler's whole attach of a container through the real kernel
// (ensureAttachment: open the namespace, create the pair into it, mark,
// address, routes, gratuitous ARP), without daemon, journal or IPC; the
// detach that follows each one is not timed (root):
//
//	go test -run x -bench Attach -benchtime 200x ./effects/bridge
//
// Besides the mean it reports the median and the 90th percentile of the
// attaches (p50-ns, p90-ns), which a busy machine disturbs less. The
// "unmarked" cases are an owner without a journal id, which writes no mark
// on the container's ends (the wiring of before owners, through the seam).
func BenchmarkAttach(b *testing.B) {
	requireNetns(b)
	br := &Bridge{Service: "bench", Name: "ovbench-b", Gateway: netip.MustParsePrefix("10.200.7.1/28"), MAC: bridgeMAC("ovbench-b")}
	for _, tc := range []struct {
		name   string
		global bool
		owner  effects.Owner
	}{
		{"eth0", false, benchOwner},
		{"eth0+eth1", true, benchOwner},
		{"eth0/unmarked", false, effects.Owner{}},
		{"eth0+eth1/unmarked", true, effects.Owner{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newReconciler(slog.New(slog.DiscardHandler), nil, tc.owner, newKernel())
			defer r.Close()
			if err := r.ensureBridge(br); err != nil {
				b.Fatal(err)
			}
			defer r.k.DelLink(Link{Name: br.Name})
			ctr := newTestContainer(b)
			a := &Attachment{Key: "linux_pid:1", PID: ctr.pid, NetnsInode: ctr.inode, Service: br.Service, Bridge: br.Name,
				IP: netip.MustParsePrefix("10.200.7.2/28"), Gateway: br.Gateway.Addr()}
			if tc.global {
				a.GlobalIP, a.Cluster, a.NodeIP = netip.MustParseAddr("10.200.128.2"), netip.MustParsePrefix("10.200.0.0/16"), netip.MustParseAddr("10.200.0.1")
			}
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := r.ensureAttachment(a, br); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				b.StopTimer()
				for _, leg := range []Leg{LegService, LegGlobal} {
					if err := r.k.DelLink(Link{Name: a.HostName(leg)}); err != nil && !notFound(err) {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			reportQuantiles(b, took)
		})
	}
}

// reportQuantiles reports the median and 90th percentile of took.
func reportQuantiles(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(took[len(took)*9/10].Nanoseconds()), "p90-ns")
}

var benchOwner = effects.Owner{Journal: "0123456789ab", Home: "bench"}

func benchReconciler() *Reconciler {
	return newReconciler(slog.New(slog.DiscardHandler), nil, benchOwner, newKernel())
}

// A periodic full pass over n wired containers (each with eth0 and eth1)
// that finds nothing to repair: the cost of the drift check, which the
// attaches queued behind it wait for (root):
//
//	go test -run x -bench FullPass -benchtime 20x ./effects/bridge
//
// The containers are made once per size (the benchmark function runs more
// than once), and those of a size are gone, with their namespaces, before
// the next size is made: the kernel's teardown of namespaces and the work
// after a burst of new links hold the RTNL lock for seconds, and would be
// measured instead.
func BenchmarkFullPass(b *testing.B) {
	requireNetns(b)
	var cur *benchSetup
	defer func() { cur.teardown(b) }()
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			if cur == nil || cur.n != n {
				cur.teardown(b)
				cur = newBenchSetup(b, n)
			}
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := cur.h.full(); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			reportQuantiles(b, took)
		})
	}
}

type benchSetup struct {
	n    int
	h    *harness
	ctrs []*exec.Cmd
}

func newBenchSetup(b *testing.B, n int) *benchSetup {
	s := &benchSetup{n: n, h: newView(b)}
	s.h.r = benchReconciler()
	s.h.service("web", "10.201.0.0/24")
	for i := range n {
		cmd := exec.Command("sleep", "infinity")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		s.ctrs = append(s.ctrs, cmd)
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &st); err != nil {
			b.Fatal(err)
		}
		s.h.attachIno(uint32(cmd.Process.Pid), st.Ino, "web", fmt.Sprintf("10.201.0.%d", 2+i), fmt.Sprintf("10.200.128.%d", 2+i))
	}
	for range 2 {
		if err := s.h.full(); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // the kernel's work after the burst
	return s
}

// teardown kills the containers and waits until their links are gone.
func (s *benchSetup) teardown(b *testing.B) {
	if s == nil {
		return
	}
	for _, c := range s.ctrs {
		c.Process.Kill()
		c.Wait()
	}
	s.h.r.Close()
	cleanLinks(b)
	settle(b)
}

// settle waits until the namespace holds no veth (the containers'
// namespaces torn down), then lets the kernel's work after it finish.
func settle(b *testing.B) {
	k := newKernel()
	defer k.Close()
	for deadline := time.Now().Add(time.Minute); ; {
		links, err := k.Links()
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, l := range links {
			if l.Kind == "veth" {
				n++
			}
		}
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
}

package metrics

import (
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// Events are counted by type across a batch's runs; a failed commit
// counts no event.
func TestObserveCommit(t *testing.T) {
	m := New(Options{})
	m.ObserveCommit(journal.CommitInfo{Took: time.Millisecond, Events: 4, Types: []string{"a", "a", "b", "a"}})
	m.ObserveCommit(journal.CommitInfo{Took: time.Millisecond, Events: 2, Err: journal.ErrClosed})
	for typ, want := range map[string]float64{"a": 3, "b": 1} {
		if got := testutil.ToFloat64(m.events.WithLabelValues(typ)); got != want {
			t.Errorf("events %s = %v, want %v", typ, got, want)
		}
	}
	if ok, failed := testutil.ToFloat64(m.commitsOK), testutil.ToFloat64(m.commitsFailed); ok != 1 || failed != 1 {
		t.Errorf("commits ok %v failed %v", ok, failed)
	}
}

// A DNS client cannot grow the series: unknown types and rcodes fold
// into "other".
func TestDNSLabelsAreBounded(t *testing.T) {
	m := New(Options{})
	for qt := uint16(0); qt < 300; qt++ {
		m.DNS().Query(qt, qt%2 == 0, int(qt%24), time.Microsecond)
	}
	n := testutil.CollectAndCount(m.dns.queries)
	if n > nQtypes*2*nRcodes {
		t.Fatalf("%d series", n)
	}
	if got := testutil.ToFloat64(m.dns.queries.WithLabelValues("other", "udp", "other")); got == 0 {
		t.Fatal("no other/other series")
	}
	if got := testutil.ToFloat64(m.dns.queries.WithLabelValues(mdns.TypeToString[mdns.TypeA], "udp", "FORMERR")); got != 1 {
		t.Fatalf("A/udp/FORMERR = %v, want 1", got)
	}
}

func TestObserveAnswerAndPass(t *testing.T) {
	m := New(Options{})
	m.ObserveAnswer(ipc.Answered{Request: ipc.Status{}, Response: ipc.StatusResult{}, Took: time.Millisecond})
	m.ObserveAnswer(ipc.Answered{Response: ipc.Err{Message: "x"}})
	m.ObservePass(effects.Pass{Reconciler: "nat", Took: time.Millisecond})
	m.ObservePass(effects.Pass{Reconciler: "nat", Err: journal.ErrClosed})
	for _, c := range []struct {
		labels []string
		want   float64
	}{{[]string{"status", "status"}, 1}, {[]string{"invalid", "err"}, 1}} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("requests %v = %v", c.labels, got)
		}
	}
	if got := testutil.ToFloat64(m.passes.WithLabelValues("nat", "error")); got != 1 {
		t.Errorf("nat error passes = %v", got)
	}
	var nilM *Metrics
	nilM.ObserveAnswer(ipc.Answered{}) // no panic
	if nilM.DNS() != nil {
		t.Fatal("a nil Metrics has a DNS meter")
	}
}

func TestPeerID(t *testing.T) {
	if got := PeerID("hM3ZhMk4eX1oP0nH1F7d2mY7qf3y2V9lE8Yt8s6QK0Y="); len(got) != 16 || strings.Trim(got, "0123456789abcdef") != "" {
		t.Fatalf("PeerID = %q", got)
	}
}

// The hot paths: one answered request, one DNS query, one commit of 64
// events.
func BenchmarkObserveAnswer(b *testing.B) {
	m := New(Options{})
	a := ipc.Answered{Request: ipc.RegisterDNS{}, Response: ipc.OK{}, Took: time.Millisecond}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveAnswer(a)
		}
	})
}

func BenchmarkDNSQuery(b *testing.B) {
	m := New(Options{})
	d := m.DNS()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.Query(mdns.TypeA, false, 0, 20*time.Microsecond)
		}
	})
}

func BenchmarkObserveCommit64(b *testing.B) {
	m := New(Options{})
	types := make([]string, 64)
	for i := range types {
		types[i] = []string{"dns_registered", "dns_unregistered"}[i%2]
	}
	for b.Loop() {
		m.ObserveCommit(journal.CommitInfo{Took: time.Millisecond, Events: 64, Types: types})
	}
}

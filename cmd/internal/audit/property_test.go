package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/cmd/internal/journalgen"
	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
	"github.com/zlayer/overlayd/tools/testseed"
)

// genStore journals about n events into a fresh store (a bolt file with
// the object index, as the daemon opens it).
func genStore(t testing.TB, n uint64, seed int64) journal.Store {
	t.Helper()
	st := openIndexed(t, t.TempDir())
	g := journalgen.New(st, rand.New(rand.NewSource(seed)))
	if err := g.Until(n); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, st)
	return st
}

// canonical is a state's canonical JSON.
func canonicalOf(t testing.TB, s *projections.State) []byte {
	t.Helper()
	b, err := s.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStateAtEqualsReplay: at 100 random points (sequences, and the times
// and ULIDs of events), StateAt gives exactly what a replay of the journal
// up to that point gives.
func TestStateAtEqualsReplay(t *testing.T) {
	seed := testseed.New(t)
	st := genStore(t, 6000, seed)
	defer st.Close()
	keepStates(t, st, 1000)
	r := rand.New(rand.NewSource(seed))
	head, _ := st.Head()
	var envs []journal.Envelope
	if err := st.Iterate(0, false, func(e *journal.Envelope) error {
		c := *e
		c.Payload = nil
		envs = append(envs, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	qs := queriers(st)
	for i := 0; i < 100; i++ {
		q := qs[i%2]
		seq := 1 + uint64(r.Int63n(int64(head)))
		e := envs[seq-1]
		var p Point
		switch i % 3 {
		case 0:
			p = Point{Kind: PointSeq, Seq: seq}
		case 1:
			p = Point{Kind: PointID, ID: e.ID}
		case 2:
			// A time names the last event at or before it: the last of
			// the events that share this one's commit time.
			p = Point{Kind: PointTime, Time: e.Time}
			for seq < head && envs[seq].Time.Equal(e.Time) {
				seq++
			}
		}
		want, _, err := replay.Load(st, replay.Options{NoSnapshot: true, UpTo: seq})
		if err != nil {
			t.Fatal(err)
		}
		got, err := q.StateAt(ctx, p)
		if err != nil {
			t.Fatalf("StateAt(%v): %v", p, err)
		}
		if g, w := canonicalOf(t, got), canonicalOf(t, want); !bytes.Equal(g, w) {
			t.Fatalf("seed %d: %s: StateAt(%v) (seq %d) differs from a replay up to %d:\n got %.300s\nwant %.300s", seed, q.How(), p, got.Seq, seq, g, w)
		}
	}
}

// names is the test's own reading of "the payload names x": every string
// in the payload (but a repair's embedded state), a handle object as its
// key, a pool as its service, addresses and prefixes in canonical form,
// DNS names in lower case.
func names(payload []byte) map[string]bool {
	var v any
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil
	}
	out := map[string]bool{}
	var walk func(k string, v any)
	walk = func(k string, v any) {
		switch x := v.(type) {
		case string:
			if a, err := netip.ParseAddr(x); err == nil {
				x = a.String()
			} else if p, err := netip.ParsePrefix(x); err == nil {
				x = p.Masked().String()
			}
			if k == "pool" {
				x = strings.TrimPrefix(x, "service:")
			}
			out[x] = true
			out[strings.ToLower(x)] = true
		case []any:
			for _, e := range x {
				walk(k, e)
			}
		case map[string]any:
			if k == "handle" {
				pid, _ := x["pid"].(json.Number)
				out["linux_pid:"+pid.String()] = true
				return
			}
			for kk, e := range x {
				if kk != "state" {
					walk(kk, e)
				}
			}
		}
	}
	walk("", v)
	return out
}

// TestHistoryListsExactlyTheEventsNamingIt: for objects of every kind
// taken from the journal (addresses, DNS names, services, peer keys,
// container handles, bridges), History lists exactly the events whose
// payload names the object, in order.
func TestHistoryListsExactlyTheEventsNamingIt(t *testing.T) {
	seed := testseed.New(t)
	st := genStore(t, 5000, seed)
	defer st.Close()
	r := rand.New(rand.NewSource(seed))
	type ev struct {
		seq   uint64
		names map[string]bool
	}
	var evs []ev
	objects := map[string][]string{}
	if err := st.Iterate(0, false, func(e *journal.Envelope) error {
		evs = append(evs, ev{e.Seq, names(e.Payload)})
		for _, term := range projections.Terms(e.Type, e.Version, e.Payload) {
			kind, obj, _ := strings.Cut(term, ":")
			objects[kind] = append(objects[kind], obj)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range objects {
			if !yield(k) {
				return
			}
		}
	})
	for _, want := range []string{"ip", "name", "service", "peer", "handle", "dev"} {
		if !slices.Contains(kinds, want) {
			t.Fatalf("the generated journal names no object of kind %s (kinds: %v)", want, kinds)
		}
	}
	checked := 0
	for _, kind := range kinds {
		if kind == "cidr" {
			continue // a prefix object selects by containment: TestHistoryOfAPrefix
		}
		objs := objects[kind]
		for i := 0; i < 20; i++ {
			x := objs[r.Intn(len(objs))]
			var want []uint64
			for _, e := range evs {
				if e.names[x] {
					want = append(want, e.seq)
				}
			}
			for _, q := range queriers(st) {
				var got []uint64
				if err := q.History(context.Background(), x, func(e ipc.JournalEvent) error {
					got = append(got, e.Seq)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d: %s: history %s (%s): got %d events %v, want %d %v", seed, q.How(), x, kind, len(got), head(got), len(want), head(want))
				}
			}
			checked++
		}
	}
	t.Logf("%d objects checked", checked)
}

func head(s []uint64) []uint64 { return s[:min(len(s), 12)] }

// TestListFiltersMatchAScan: every filter of journal ls, alone and
// combined, with limits and in reverse, gives what a plain scan with the
// same predicate gives.
func TestListFiltersMatchAScan(t *testing.T) {
	seed := testseed.New(t)
	st := genStore(t, 4000, seed)
	defer st.Close()
	var all []*journal.Envelope
	if err := st.Iterate(0, false, func(e *journal.Envelope) error {
		c := *e
		c.Payload = slices.Clone(e.Payload)
		all = append(all, &c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ip := ""
	for _, e := range all {
		if e.Type == "ip_reserved" {
			var p struct{ IP string }
			json.Unmarshal(e.Payload, &p)
			ip = p.IP
			break
		}
	}
	cidr := netip.MustParsePrefix("10.64.0.0/24")
	pid := uint32(4001)
	mid := all[len(all)/2]
	since := Point{Kind: PointTime, Time: mid.Time}
	until := Point{Kind: PointSeq, Seq: mid.Seq + 700}
	// The service most attached to inside the window, so that the
	// combined cases select something whatever the seed.
	attaches := map[string]int{}
	svc := ""
	for _, e := range all[mid.Seq-1 : min(int(mid.Seq)+700, len(all))] {
		if e.Type != "container_attached" || !e.Cause.HasPeer {
			continue
		}
		var p struct{ Service string }
		json.Unmarshal(e.Payload, &p)
		attaches[p.Service]++
		if attaches[p.Service] > attaches[svc] {
			svc = p.Service
		}
	}
	if svc == "" {
		t.Fatalf("seed %d: no container attached between events %d and %d", seed, mid.Seq, mid.Seq+700)
	}
	cases := map[string]Filter{
		"type":           {Types: []string{"dns_registered"}},
		"types":          {Types: []string{"dns_registered", "peer_added"}},
		"op":             {Op: "allocate_ip"},
		"service":        {Service: svc},
		"ip":             {IP: ip},
		"cidr":           {CIDR: &cidr},
		"pid":            {PID: &pid},
		"cause request":  {Cause: CauseRequest},
		"cause daemon":   {Cause: CauseReconcile},
		"since until":    {Since: &since, Until: &until},
		"type limit":     {Types: []string{"dns_registered"}, Limit: 100},
		"type reverse":   {Types: []string{"peer_removed"}, Limit: 30, Reverse: true},
		"combined":       {Types: []string{"container_attached"}, Service: svc, Cause: CauseRequest, Since: &since},
		"reverse range":  {Reverse: true, Since: &since, Limit: 50},
		"after":          {After: 3000, Types: []string{"ip_released"}},
		"service window": {Service: svc, Since: &since, Until: &until, Reverse: true},
	}
	for name, f := range cases {
		for _, q := range queriers(st) {
			t.Run(name+"/"+q.How(), func(t *testing.T) {
				var got []uint64
				if err := q.List(context.Background(), f, func(e ipc.JournalEvent) error {
					got = append(got, e.Seq)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				want := scanFilter(t, all, f)
				if !slices.Equal(got, want) {
					t.Fatalf("got %d %v, want %d %v", len(got), head(got), len(want), head(want))
				}
				if len(want) == 0 {
					t.Fatalf("the case selects nothing: not a test")
				}
			})
		}
	}
}

// scanFilter is the obvious implementation of f over every event.
func scanFilter(t *testing.T, all []*journal.Envelope, f Filter) []uint64 {
	var out []uint64
	order := slices.Clone(all)
	if f.Reverse {
		slices.Reverse(order)
	}
	for _, e := range order {
		if e.Seq <= f.After {
			continue
		}
		if f.Since != nil && (f.Since.Kind == PointTime && e.Time.Before(f.Since.Time)) {
			continue
		}
		if f.Until != nil && f.Until.Kind == PointSeq && e.Seq > f.Until.Seq {
			continue
		}
		if len(f.Types) > 0 && !slices.Contains(f.Types, e.Type) {
			continue
		}
		if f.Op != "" && e.Cause.Op != f.Op {
			continue
		}
		if f.PID != nil && (!e.Cause.HasPeer || e.Cause.PID != *f.PID) {
			continue
		}
		if f.Cause == CauseRequest && !e.Cause.HasPeer {
			continue
		}
		if f.Cause == CauseReconcile && e.Cause.HasPeer {
			continue
		}
		ns := names(e.Payload)
		if f.Service != "" && !ns[f.Service] {
			continue
		}
		if f.IP != "" && !ns[f.IP] {
			continue
		}
		if f.CIDR != nil {
			in := false
			for s := range ns {
				if a, err := netip.ParseAddr(s); err == nil && f.CIDR.Contains(a) {
					in = true
				} else if p, err := netip.ParsePrefix(s); err == nil && f.CIDR.Overlaps(p) {
					in = true
				}
			}
			if !in {
				continue
			}
		}
		out = append(out, e.Seq)
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
	}
	return out
}

// TestShowAndPoints: Show by sequence, ULID and time; errors name what is
// missing.
func TestShowAndPoints(t *testing.T) {
	st := genStore(t, 500, 7)
	defer st.Close()
	ctx := context.Background()
	for _, q := range queriers(st) {
		var e10 journal.Envelope
		st.Iterate(9, false, func(e *journal.Envelope) error { e10 = *e; return errStop })
		for _, ref := range []string{"10", e10.ID.String(), strings.ToLower(e10.ID.String())} {
			got, err := q.Show(ctx, ref)
			if err != nil {
				t.Fatalf("show %s: %v", ref, err)
			}
			if got.Seq != 10 || got.Hash == "" || got.PrevHash == "" {
				t.Fatalf("show %s: %+v", ref, got)
			}
		}
		head, _ := st.Head()
		if _, err := q.Show(ctx, strconv.FormatUint(head+1, 10)); err == nil || !strings.Contains(err.Error(), "ends at sequence") {
			t.Fatalf("show past the head: %v", err)
		}
	}
	if _, err := ParsePoint("yesterday"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("bad point: %v", err)
	}
}

// TestQueriesOnACompactedJournal: after a compaction, StateAt of any point
// from the checkpoint on equals a replay (which starts from the
// checkpoint), an earlier point is refused naming the archive, and the
// listing starts after the checkpoint, by index and by scan alike.
func TestQueriesOnACompactedJournal(t *testing.T) {
	seed := testseed.New(t)
	st := genStore(t, 3000, seed).(*journal.BoltStore)
	defer st.Close()
	keepStates(t, st, 1000)
	if _, err := replay.CompactThrough(st, 1500); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, st)
	ctx := context.Background()
	head, _ := st.Head()
	for _, q := range queriers(st) {
		for _, seq := range []uint64{1500, 1501, 1999, 2000, 2500, head} {
			got, err := q.StateAt(ctx, Point{Kind: PointSeq, Seq: seq})
			if err != nil {
				t.Fatalf("%s: state at %d: %v", q.How(), seq, err)
			}
			want, _, err := replay.Load(st, replay.Options{NoSnapshot: true, UpTo: seq})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(canonicalOf(t, got), canonicalOf(t, want)) {
				t.Fatalf("seed %d: %s: state at %d differs from a replay from the checkpoint", seed, q.How(), seq)
			}
		}
		if _, err := q.StateAt(ctx, Point{Kind: PointSeq, Seq: 700}); err == nil || !strings.Contains(err.Error(), "archive") {
			t.Fatalf("%s: state at 700 (compacted): %v", q.How(), err)
		}
		var first uint64
		if err := q.List(ctx, Filter{Limit: 1}, func(e ipc.JournalEvent) error { first = e.Seq; return nil }); err != nil || first != 1501 {
			t.Fatalf("%s: first listed event %d, %v", q.How(), first, err)
		}
		if _, err := q.Show(ctx, "20"); err == nil || !strings.Contains(err.Error(), "compacted") {
			t.Fatalf("%s: show 20: %v", q.How(), err)
		}
	}
}

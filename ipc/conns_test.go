package ipc

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// At the limit a new connection evicts the oldest connection that has not
// completed a frame; when every connection has, it is answered one err
// frame with id 0 naming the limit, and closed. Served connections are
// untouched throughout.
func TestConnectionLimitEvictsUnframedThenRefuses(t *testing.T) {
	s := &Server{MaxConns: 4, ReservedForRoot: -1}
	path, rec := serve(t, s)
	open := func(n int) func() bool { return func() bool { return s.Stats().Open == n } }
	f1, f2 := rawConn(t, path), rawConn(t, path)
	roundTrip(t, f1, 1)
	roundTrip(t, f2, 1)
	u1 := rawConn(t, path)
	waitFor(t, 5*time.Second, "3 open", open(3))
	u2 := rawConn(t, path)
	waitFor(t, 5*time.Second, "4 open", open(4))

	// A fifth connection is served; u1, the oldest unframed, goes.
	n1 := rawConn(t, path)
	if f := roundTrip(t, n1, 7); f.ID != 7 {
		t.Fatalf("the fifth connection got %+v", f)
	}
	if msg, ok := isRefusal(readResp(t, u1)); !ok || !strings.Contains(msg, "evicted") || !strings.Contains(msg, "limit 4") {
		t.Fatalf("evicted connection told %q (%v)", msg, ok)
	}
	expectClosed(t, u1)
	// The next one takes u2's place.
	n2 := rawConn(t, path)
	if f := roundTrip(t, n2, 8); f.ID != 8 {
		t.Fatalf("the sixth connection got %+v", f)
	}
	if _, ok := isRefusal(readResp(t, u2)); !ok {
		t.Fatal("u2 not evicted")
	}
	expectClosed(t, u2)

	// Every connection has completed a frame: the next is refused.
	r := rawConn(t, path)
	msg, ok := isRefusal(readResp(t, r))
	if !ok || msg != "too many connections: 4 open (limit 4); try again later" {
		t.Fatalf("refused with %q (%v)", msg, ok)
	}
	expectClosed(t, r)
	for i, c := range []net.Conn{f1, f2, n1, n2} {
		if f := roundTrip(t, c, 9); f.ID != 9 {
			t.Fatalf("served connection %d after the refusal: %+v", i, f)
		}
	}
	st := s.Stats()
	if st.Open != 4 || st.Evicted != 2 || st.Refused != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A closed connection gives its slot back.
	f2.Close()
	waitFor(t, 5*time.Second, "3 open", open(3))
	if f := roundTrip(t, rawConn(t, path), 3); f.ID != 3 {
		t.Fatalf("after a slot was freed: %+v", f)
	}
	// Three turned away, logged once at WARN, and the end of the burst.
	var warns, ends int
	for _, r := range rec.atLeast(slog.LevelInfo) {
		switch {
		case r.Level == slog.LevelWarn && strings.HasPrefix(r.Message, "connection limit reached"):
			warns++
		case strings.HasPrefix(r.Message, "connection limit no longer reached"):
			ends++
			if n := rec.attr(r, "turned_away").Uint64(); n != 3 {
				t.Errorf("burst summary counts %d", n)
			}
		default:
			t.Errorf("unexpected log: %s %s", r.Level, r.Message)
		}
	}
	if warns != 1 || ends != 1 {
		t.Fatalf("%d warnings and %d summaries for one burst", warns, ends)
	}
}

// The Go client reports a refused connection as a *RefusedError naming the
// limit, from Call and from Err, promptly.
func TestClientReportsARefusedConnection(t *testing.T) {
	s := &Server{MaxConns: 1}
	path, _ := serve(t, s)
	roundTrip(t, rawConn(t, path), 1)
	for _, waitFirst := range []bool{false, true} {
		cl, err := Dial(context.Background(), path, DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if waitFirst { // the refusal has arrived before the call
			select {
			case <-cl.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("refused connection not closed")
			}
			if !errors.Is(cl.Err(), ErrRefused) {
				t.Fatalf("Err: %v", cl.Err())
			}
		}
		start := time.Now()
		_, err = cl.Call(context.Background(), Status{})
		var re *RefusedError
		if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || !errors.Is(err, ErrClientClosed) ||
			err.Error() != "ipc: daemon refused the connection: too many connections: 1 open (limit 1); try again later" {
			t.Fatalf("call on a refused connection: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("refusal took %v", d)
		}
		cl.Close()
	}
}

// The supervisor's liveness probe (connect, close at once) is normal: it
// logs nothing at INFO or above and leaves nothing open.
func TestProbesStayQuiet(t *testing.T) {
	s := &Server{}
	path, rec := serve(t, s)
	for i := 0; i < 200; i++ {
		c, err := testDial(path)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	waitFor(t, 5*time.Second, "probes gone", func() bool { return s.Stats().Open == 0 })
	if r := rec.atLeast(slog.LevelInfo); len(r) > 0 {
		t.Fatalf("probes logged: %s %s", r[0].Level, r[0].Message)
	}
}

// makeRoom's decisions, with the root reserve: non-root peers never take
// the reserved slots and never evict a root connection; root evicts any
// unframed connection, non-root ones first.
func TestAdmissionKeepsSlotsForRoot(t *testing.T) {
	type conn struct{ root, framed bool }
	for _, tc := range []struct {
		name   string
		open   []conn // oldest first
		root   bool   // the newcomer
		evict  int    // index into open, -1 for none
		refuse string // prefix of the refusal
	}{
		{"room", []conn{{false, true}}, false, -1, ""},
		{"non-root at its share", []conn{{false, true}, {false, true}}, false, -1, "too many connections from non-root peers: 2 open (limit 2; 2 more are kept for root)"},
		{"root in the reserve", []conn{{false, true}, {false, true}}, true, -1, ""},
		{"non-root evicts non-root", []conn{{false, true}, {false, false}}, false, 1, ""},
		{"non-root never evicts root", []conn{{true, false}, {true, false}, {false, true}, {false, true}}, false, -1, "too many connections: 4 open (limit 4)"},
		{"non-root never evicts root in its share", []conn{{true, false}, {false, true}, {false, true}}, false, -1, "too many connections from non-root peers"},
		{"root at the limit, all framed", []conn{{true, true}, {true, true}, {false, true}, {false, true}}, true, -1, "too many connections: 4 open (limit 4)"},
		{"root evicts non-root first", []conn{{true, false}, {false, true}, {false, false}, {true, true}}, true, 2, ""},
		{"root evicts root when it must", []conn{{true, true}, {true, false}, {false, true}, {false, true}}, true, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{MaxConns: 4, ReservedForRoot: 2}
			s.setup()
			var cs []*serverConn
			for _, c := range tc.open {
				sc := s.newConn(nil, Creds{}, true, c.root)
				s.holdSlot(sc)
				if c.framed {
					s.markFramed(sc)
				}
				cs = append(cs, sc)
			}
			victim, refusal, atLimit := s.makeRoom(tc.root)
			if want := tc.refuse != "" || tc.evict >= 0; atLimit != want {
				t.Fatalf("atLimit %v", atLimit)
			}
			switch {
			case tc.refuse != "":
				if !strings.HasPrefix(refusal, tc.refuse) || victim != nil {
					t.Fatalf("refusal %q, victim %v", refusal, victim != nil)
				}
			case tc.evict >= 0:
				if victim != cs[tc.evict] || refusal != "" {
					t.Fatalf("evicted %v, refusal %q", victim, refusal)
				}
				if victim.counted || victim.elem != nil {
					t.Fatal("victim still holds its slot")
				}
			default:
				if victim != nil || refusal != "" {
					t.Fatalf("victim %v, refusal %q", victim != nil, refusal)
				}
			}
		})
	}
}

// What an open connection costs the daemon, once it has served a request
// and gone idle (the figure DefaultMaxConns is argued from): heap and
// goroutine stacks, both sides of the socket counted (the test's client
// end is in this process too), under 64 KiB.
func TestIdleConnectionCost(t *testing.T) {
	const n = 500
	s := &Server{}
	path, _ := serve(t, s)
	measure := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse
	}
	before, goroutines := measure(), runtime.NumGoroutine()
	cs := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c := rawConn(t, path)
		roundTrip(t, c, 1)
		cs = append(cs, c)
	}
	waitFor(t, 5*time.Second, "all open", func() bool { return s.Stats().Open == n })
	// Idle: a reader and a collector per connection, no flusher lingering.
	waitFor(t, flusherLinger+5*time.Second, "two goroutines per idle connection", func() bool {
		return runtime.NumGoroutine() <= goroutines+2*n
	})
	each := (int64(measure()) - int64(before)) / n
	t.Logf("an idle connection costs %d bytes (heap and stacks, both ends)", each)
	if each > 64<<10 {
		t.Fatalf("an idle connection costs %d bytes", each)
	}
	runtime.KeepAlive(cs)
}

// A storm of connections that each send two bytes of a length prefix and
// stop (the descriptor exhaustion, scaled to 3,000 and dialled as
// fast as one goroutine can): the server never holds more than MaxConns of
// them, the orchestrator's connection (framed long ago, idle between
// calls) is never touched and every one of its calls is answered, a new
// client still gets in during the storm, the evictions are logged once per
// burst, and when the storm goes the server is back to that one
// connection.
func TestStormOfHalfFrames(t *testing.T) {
	const storm = 3000
	s := &Server{}
	path, rec := serve(t, s)
	orch, err := Dial(context.Background(), path, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer orch.Close()
	if _, err := orch.Call(context.Background(), Status{}); err != nil {
		t.Fatal(err)
	}
	var peak int
	done := make(chan []net.Conn)
	go func() {
		var cs []net.Conn
		for i := 0; i < storm; i++ {
			c, err := testDial(path)
			if err != nil {
				t.Error(err)
				break
			}
			c.Write([]byte{0x10, 0})
			cs = append(cs, c)
		}
		done <- cs
	}()
	var lat []time.Duration
	var attackers []net.Conn
	newcomer := false
	deadline := time.Now().Add(30 * time.Second)
	for attackers == nil || s.Stats().Evicted < storm-DefaultMaxConns {
		if time.Now().After(deadline) {
			t.Fatalf("storm not through after 30 s: %+v", s.Stats())
		}
		if attackers == nil {
			select {
			case attackers = <-done:
			default:
			}
		}
		start := time.Now()
		if _, err := orch.Call(context.Background(), Status{}); err != nil {
			t.Fatalf("the orchestrator's call during the storm: %v", err)
		}
		lat = append(lat, time.Since(start))
		if o := s.Stats().Open; o > peak {
			peak = o
		}
		if !newcomer && s.Stats().Open >= DefaultMaxConns {
			cl, err := Dial(context.Background(), path, DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Call(context.Background(), Status{}); err != nil {
				t.Fatalf("a new client during the storm: %v", err)
			}
			cl.Close()
			newcomer = true
		}
		time.Sleep(time.Millisecond)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	st := s.Stats()
	t.Logf("%d calls during the storm: p50 %v, p99 %v, max %v; peak %d open; stats %+v",
		len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], peak, st)
	if peak > DefaultMaxConns || st.Open > DefaultMaxConns {
		t.Fatalf("%d connections open at the peak (limit %d)", peak, DefaultMaxConns)
	}
	if !newcomer {
		t.Fatal("the storm never reached the limit")
	}
	if st.Evicted < storm-DefaultMaxConns || st.Refused != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The storm and its dialler share this process's two cores with the
	// orchestrator's calls: they wait for a core now and then, never for
	// the storm to pass.
	if m := lat[len(lat)-1]; m > 500*time.Millisecond && !raceEnabled {
		t.Fatalf("an orchestrator's call took %v during the storm", m)
	}
	for _, c := range attackers {
		c.Close()
	}
	waitFor(t, 10*time.Second, "back to the orchestrator's connection", func() bool { return s.Stats().Open == 1 })
	if _, err := orch.Call(context.Background(), Status{}); err != nil {
		t.Fatal(err)
	}
	// One burst, or two when the newcomer's leaving opened a slot and the
	// storm filled it again.
	if w := rec.atLeast(slog.LevelWarn); len(w) < 1 || len(w) > 2 {
		t.Fatalf("%d warnings for %d evictions", len(w), st.Evicted)
	}
}

// A client that sends its requests and closes its sending side gets every
// answer, those answered at once and those answered later, in order, then
// the end of the stream.
func TestHalfClosedClientGetsItsAnswers(t *testing.T) {
	path, _ := startServer(t) // nat_tick answers after 20 ms
	c := rawConn(t, path)
	for id := uint64(1); id <= 6; id++ {
		op := "status"
		if id%3 == 0 {
			op = "nat_tick"
		}
		WriteFrame(c, requestFrame(id, op))
	}
	c.(*net.UnixConn).CloseWrite()
	for id := uint64(1); id <= 6; id++ {
		if f := readResp(t, c); f.ID != id {
			t.Fatalf("answer %d came as %d", id, f.ID)
		}
	}
	expectClosed(t, c)
}

package ipc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Requests isExpensive names, and only those.
func TestIsExpensive(t *testing.T) {
	for _, r := range []Request{JournalList{}, JournalVerify{}, StateDump{}, &JournalList{}} {
		if !isExpensive(r) {
			t.Errorf("%s is not expensive", r.Op())
		}
	}
	for _, r := range []Request{Status{}, RegisterDNS{}, AttachContainer{}, NatTick{}, Shutdown{}} {
		if isExpensive(r) {
			t.Errorf("%s is expensive", r.Op())
		}
	}
}

// 128 pipelined expensive requests on each of four connections, whose
// handler takes time and allocates a big answer: at most MaxExpensive
// handlers run at once (and they do run in parallel), every answer comes
// back in order, and meanwhile another connection's cheap requests are
// answered promptly.
func TestExpensiveRequestsAreBounded(t *testing.T) {
	var running, peak atomic.Int32
	var handled atomic.Int64
	s := &Server{Handler: func(m Meta, r Request) <-chan Response {
		if _, ok := r.(JournalVerify); !ok {
			return Reply(StatusResult{PeerCount: 1})
		}
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		ch := make(chan Response, 1)
		go func() { // like the daemon's journal_verify: work off the reader
			time.Sleep(5 * time.Millisecond)
			report := strings.Repeat("v", 64<<10)
			running.Add(-1)
			handled.Add(1)
			ch <- JournalReport{OK: true, Report: json.RawMessage(`{}`), Problems: []string{report}}
		}()
		return ch
	}}
	path, _ := serve(t, s)
	const conns, each = 4, 128
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		c := rawConn(t, path)
		wg.Add(2)
		go func() {
			defer wg.Done()
			bw := bufio.NewWriter(c)
			for id := uint64(1); id <= each; id++ {
				WriteFrame(bw, requestFrame(id, "journal_verify"))
			}
			bw.Flush()
		}()
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			var buf []byte
			for id := uint64(1); id <= each; id++ {
				c.SetReadDeadline(time.Now().Add(60 * time.Second))
				b, err := ReadFrame(br, buf)
				if err != nil {
					t.Errorf("answer %d: %v", id, err)
					return
				}
				buf = b
				// The id is all that is checked; decoding 64 KiB answers
				// would take the CPU this test measures the cheap requests
				// with.
				if want := `{"frame":"response","id":` + strconv.FormatUint(id, 10) + `,"response":{"result":"journal_report"`; !bytes.HasPrefix(b, []byte(want)) {
					t.Errorf("answer %d: %.80s", id, b)
					return
				}
			}
		}()
	}
	cheap := rawConn(t, path)
	var lat []time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for handled.Load() < conns*each-8 {
		if time.Now().After(deadline) || t.Failed() {
			t.Fatalf("%d of %d expensive requests handled", handled.Load(), conns*each)
		}
		start := time.Now()
		if f := roundTrip(t, cheap, 1); f.ID != 1 {
			t.Fatalf("%+v", f)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d cheap requests during %d expensive ones: median %v, max %v; at most %d expensive handlers at once",
		len(lat), conns*each, lat[len(lat)/2], lat[len(lat)-1], peak.Load())
	if p := peak.Load(); p != DefaultMaxExpensive {
		t.Fatalf("%d expensive handlers ran at once (MaxExpensive %d)", p, DefaultMaxExpensive)
	}
	if len(lat) < 10 {
		t.Fatalf("only %d cheap requests measured", len(lat))
	}
	// Held up behind the expensive ones, a cheap request would wait for
	// them (5 ms each, 512 of them); scheduled beside them it waits for a
	// core, on a loaded machine now and then for a while.
	medBound, maxBound := 10*time.Millisecond, 250*time.Millisecond
	if raceEnabled {
		medBound, maxBound = 50*time.Millisecond, time.Second
	}
	if med, m := lat[len(lat)/2], lat[len(lat)-1]; med > medBound || m > maxBound {
		t.Fatalf("cheap requests took %v (median), %v (max) beside the expensive ones", med, m)
	}
	if st := s.Stats(); st.ExpensiveRunning != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Per connection, the next expensive request is dispatched only once the
// previous one's answer is written: a client that does not read its 2 MiB
// answer (more than the socket holds) gets no second expensive handler,
// while its cheap requests behind it wait in order and other connections
// are served.
func TestExpensiveWaitsForThePreviousAnswerToBeWritten(t *testing.T) {
	var calls atomic.Int32
	s := &Server{Handler: func(m Meta, r Request) <-chan Response {
		if isExpensive(r) {
			calls.Add(1)
			return Reply(JournalReport{OK: true, Report: json.RawMessage(`{}`), Problems: []string{strings.Repeat("w", 2<<20)}})
		}
		return Reply(OK{})
	}}
	path, _ := serve(t, s)
	c := rawConn(t, path)
	for id := uint64(1); id <= 10; id++ {
		WriteFrame(c, requestFrame(id, "journal_verify"))
	}
	waitFor(t, 5*time.Second, "the first expensive handler", func() bool { return calls.Load() >= 1 })
	// The first answer is stuck in the socket; other connections, cheap
	// and expensive, go on.
	other := rawConn(t, path)
	if f := roundTrip(t, other, 1); f.ID != 1 {
		t.Fatalf("%+v", f)
	}
	WriteFrame(other, requestFrame(2, "state_dump"))
	if f := readResp(t, other); f.ID != 2 {
		t.Fatalf("%+v", f)
	}
	time.Sleep(100 * time.Millisecond) // what is checked: nothing more happens
	if n := calls.Load(); n != 2 {     // the stuck one and other's state_dump
		t.Fatalf("%d expensive handlers ran", n)
	}
	// Reading lets the next ones through, in order.
	readAnswersInOrder(t, c, 10)
	if n := calls.Load(); n != 11 {
		t.Fatalf("%d expensive handlers ran", n)
	}
}

// The pacing bucket, on a clock of its own: a connection does its burst
// of expensive work back to back, and from then on, however fast it asks,
// its expensive work takes at most ExpensiveShare of the time; a pause
// refills the burst, and never more than the burst.
func TestExpensivePaceBucket(t *testing.T) {
	const burst = time.Second
	const cost = 100 * time.Millisecond
	var p expensivePace
	now := time.Unix(1000, 0)
	work, waited := time.Duration(0), time.Duration(0)
	run := func() {
		w := p.wait(now, burst)
		waited += w
		now = now.Add(w)
		began := now
		now = now.Add(cost)
		p.take(began, now, burst)
		work += cost
	}
	// The burst: no request waits until the work done exceeds it (refilled
	// at the share while it runs: 1 s / (1 - 0.5) = 2 s of work).
	for work < 2*burst {
		run()
	}
	if waited != 0 {
		t.Fatalf("the first %v of work waited %v", work, waited)
	}
	// Sustained: a minute of back-to-back requests.
	start, work0 := now, work
	for now.Sub(start) < time.Minute {
		run()
	}
	share := float64(work-work0) / float64(now.Sub(start))
	if share > ExpensiveShare+0.01 || share < ExpensiveShare-0.05 {
		t.Fatalf("sustained, expensive work took %.3f of the time, want %.2f", share, ExpensiveShare)
	}
	// A long pause refills the burst, and no more.
	now = now.Add(time.Hour)
	if w := p.wait(now, burst); w != 0 {
		t.Fatalf("after an hour's pause a request waits %v", w)
	}
	if p.tokens != burst {
		t.Fatalf("after an hour's pause the bucket holds %v, want %v", p.tokens, burst)
	}
	// With no burst the first request runs at once, the next waits.
	var q expensivePace
	if w := q.wait(now, 0); w != 0 {
		t.Fatalf("the first request without a burst waits %v", w)
	}
	q.take(now, now.Add(cost), 0)
	if w := q.wait(now.Add(cost), 0); w != time.Duration(float64(cost)/ExpensiveShare) {
		t.Fatalf("the next request without a burst waits %v, want %v", w, time.Duration(float64(cost)/ExpensiveShare))
	}
}

// Over a socket: a connection pipelining expensive requests past its burst
// has each one held (so its handler calls are spaced by at least the cost
// of the one before over the share), while another connection's cheap
// requests are answered meanwhile.
func TestExpensiveRequestsArePaced(t *testing.T) {
	const cost = 40 * time.Millisecond
	var mu sync.Mutex
	var starts []time.Time
	s := &Server{ExpensiveBurst: -1, Handler: func(m Meta, r Request) <-chan Response {
		if isExpensive(r) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			time.Sleep(cost)
			return Reply(JournalReport{OK: true, Report: json.RawMessage(`{}`)})
		}
		return Reply(OK{})
	}}
	path, _ := serve(t, s)
	c := rawConn(t, path)
	const n = 5
	for id := uint64(1); id <= n; id++ {
		WriteFrame(c, requestFrame(id, "journal_verify"))
	}
	other := rawConn(t, path)
	waitFor(t, 5*time.Second, "the first expensive handler", func() bool { mu.Lock(); defer mu.Unlock(); return len(starts) >= 1 })
	if f := roundTrip(t, other, 7); f.ID != 7 {
		t.Fatalf("a cheap request on another connection: %+v", f)
	}
	readAnswersInOrder(t, c, n)
	mu.Lock()
	defer mu.Unlock()
	// Each request cost at least cost; the next may start only once the
	// bucket is back to empty: at least cost/share after the one before
	// began (lower bounds only, so a slow machine cannot fail this).
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < time.Duration(float64(cost)/ExpensiveShare) {
			t.Errorf("expensive request %d began %v after the one before (cost %v, share %.2f)", i+1, gap, cost, ExpensiveShare)
		}
	}
}

// readAnswersInOrder reads the answers to requests 1..n from c and fails
// unless they come in that order.
func readAnswersInOrder(t *testing.T, c net.Conn, n uint64) {
	t.Helper()
	br := bufio.NewReader(c)
	for id := uint64(1); id <= n; id++ {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := ReadFrame(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", id, err)
		}
		if f, _ := DecodeFrame(b); f.ID != id {
			t.Fatalf("answer %d came as %d", id, f.ID)
		}
	}
}

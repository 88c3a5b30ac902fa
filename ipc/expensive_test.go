package ipc

import (
	"bufio"
	"bytes"
	"encoding/json"
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
	br := bufio.NewReader(c)
	for id := uint64(1); id <= 10; id++ {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := ReadFrame(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", id, err)
		}
		if f, _ := DecodeFrame(b); f.ID != id {
			t.Fatalf("answer %d came as %d", id, f.ID)
		}
	}
	if n := calls.Load(); n != 11 {
		t.Fatalf("%d expensive handlers ran", n)
	}
}

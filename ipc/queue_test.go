package ipc

import (
	"bufio"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// heapSampler records the peak of the heap while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > h.peak.Load() {
				h.peak.Store(ms.HeapAlloc)
			}
			select {
			case <-h.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 { close(h.stop); <-h.done; return h.peak.Load() }

func heapNow() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // and what sync.Pools held
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A client that pipelines requests with 1 MiB answers and never reads is
// closed, and the heap stays within a few bounds' worth while it happens
// and comes back once it is gone. Each answer is a fresh allocation, as
// journal_list's are. Answered at once, its requests stop being read once
// half the bound is queued, and the write deadline closes it; answered
// later, the answers pass the bound and that closes it.
func TestNonReaderIsClosedAndItsMemoryFreed(t *testing.T) {
	for _, inline := range []bool{true, false} {
		name := map[bool]string{true: "answered inline", false: "answered later"}[inline]
		t.Run(name, func(t *testing.T) {
			s := &Server{Handler: func(m Meta, r Request) <-chan Response {
				resp := StateResult{Part: strings.Repeat("x", 1<<20)}
				if inline {
					return Reply(resp)
				}
				ch := make(chan Response, 1)
				go func() { ch <- resp }()
				return ch
			}}
			if inline {
				s.WriteTimeout = 500 * time.Millisecond
			} else {
				// Answers that come later are produced before the server
				// sees their size: what they hold is bounded by
				// MaxInFlight, here 8.
				s.WriteTimeout, s.MaxInFlight = time.Minute, 8
			}
			path, _ := serve(t, s)
			base := heapNow()
			h := sampleHeap()
			c := rawConn(t, path)
			start := time.Now()
			bw := bufio.NewWriter(c)
			for id := uint64(1); id <= 1000; id++ {
				WriteFrame(bw, statusFrame(id))
			}
			go bw.Flush() // may block once the server stops reading
			waitFor(t, 10*time.Second, "the connection closed", func() bool {
				st := s.Stats()
				return st.QueueOverflows+st.WriteTimeouts == 1
			})
			waitFor(t, 10*time.Second, "the connection gone", func() bool { return s.Stats().Open == 0 })
			took := time.Since(start)
			peak := h.Stop()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := io.Copy(io.Discard, c) // what the kernel buffered, then the end
			if err != nil && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			after := heapNow()
			st := s.Stats()
			t.Logf("closed after %v (stats %+v); heap peak +%d MiB over the base, +%d KiB after; %d bytes had reached the client",
				took.Round(time.Millisecond), st, (int64(peak)-int64(base))>>20, (int64(after)-int64(base))>>10, n)
			if inline && st.WriteTimeouts != 1 || !inline && st.QueueOverflows != 1 {
				t.Fatalf("closed for the wrong reason: %+v", st)
			}
			if took > 5*time.Second {
				t.Fatalf("closed after %v", took)
			}
			// The queue, what is in flight, and the garbage of encoding that
			// the collector has not reclaimed yet (GOGC=100 lets the heap
			// reach twice what is live). Unbounded, 128 answers of 1 MiB
			// would be held.
			bound := uint64(DefaultMaxQueuedBytes)
			if peak > base+4*bound {
				t.Fatalf("heap peaked at %d MiB over the base, bound %d MiB", (peak-base)>>20, bound>>20)
			}
			if after > base+2<<20 {
				t.Fatalf("heap %d KiB over the base after the connection went", (after-base)>>10)
			}
		})
	}
}

// A client that stops reading is closed by the write deadline when its
// queue stays under the bound.
func TestNonReaderIsClosedByTheWriteDeadline(t *testing.T) {
	s := &Server{WriteTimeout: 200 * time.Millisecond, Handler: func(m Meta, r Request) <-chan Response {
		return Reply(StateResult{Part: strings.Repeat("y", 1<<20)})
	}}
	path, _ := serve(t, s)
	c := rawConn(t, path)
	WriteFrame(c, statusFrame(1)) // 1 MiB: more than the socket buffers hold
	waitFor(t, 5*time.Second, "closed by the write deadline", func() bool { return s.Stats().WriteTimeouts == 1 })
	waitFor(t, 5*time.Second, "gone", func() bool { return s.Stats().Open == 0 })
	if st := s.Stats(); st.QueueOverflows != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Events count against the bound too: a client that never reads is closed
// once they pass it, while a client that reads gets every event, and its
// answers after them.
func TestEventsCountAgainstTheBound(t *testing.T) {
	s := &Server{MaxQueuedBytes: 64 << 10}
	path, _ := serve(t, s)
	idle := rawConn(t, path) // never reads
	reader := rawConn(t, path)
	roundTrip(t, idle, 1)
	roundTrip(t, reader, 1)
	var events atomic.Int64
	answered := make(chan error, 1)
	go func() {
		br := bufio.NewReader(reader)
		for {
			reader.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, err := ReadFrame(br, nil)
			if err != nil {
				answered <- err
				return
			}
			if f, _ := DecodeFrame(b); f.Kind == "event" {
				events.Add(1)
				continue
			}
			answered <- nil
			return
		}
	}()
	// 30,000 events of about 70 bytes, 2 MB: far past the idle client's
	// socket buffers and bound, paced so that the reading client's queue
	// never holds more than a hundred.
	const batches, batch = 300, 100
	for i := 0; i < batches; i++ {
		for j := 0; j < batch; j++ {
			s.Broadcast(PeerHealthChanged{Pubkey: "k", Healthy: j%2 == 0})
		}
		waitFor(t, 10*time.Second, "the reader keeps up", func() bool { return events.Load() >= int64((i+1)*batch-batch) })
	}
	WriteFrame(reader, statusFrame(2))
	if err := <-answered; err != nil {
		t.Fatalf("reading client: %v after %d events", err, events.Load())
	}
	if n := events.Load(); n != batches*batch {
		t.Fatalf("the reading client got %d of %d events", n, batches*batch)
	}
	if st := s.Stats(); st.QueueOverflows != 1 {
		t.Fatalf("stats %+v", st)
	}
	expectGone(t, idle)
}

// expectGone reads until the connection ends (it may hold frames first).
func expectGone(t *testing.T, c interface {
	Read([]byte) (int, error)
	SetReadDeadline(time.Time) error
}) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			if strings.Contains(err.Error(), "timeout") {
				t.Fatal("connection still open")
			}
			return
		}
	}
}

// A client that pipelines requests with large answers and does read them
// is served, however many answers one read of its requests brings.
func TestPipelinedLargeAnswersToAReader(t *testing.T) {
	s := &Server{MaxQueuedBytes: 4 << 20, Handler: func(m Meta, r Request) <-chan Response {
		return Reply(StateResult{Part: strings.Repeat("z", 512<<10)})
	}}
	path, _ := serve(t, s)
	c := rawConn(t, path)
	const n = 60 // 30 MiB of answers, 8 bound's worth, asked for in one write
	var reqs []byte
	for id := uint64(1); id <= n; id++ {
		reqs = append(reqs, frameBytes(statusFrame(id))...)
	}
	if _, err := c.Write(reqs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for id := uint64(1); id <= n; id++ {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := ReadFrame(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v (stats %+v)", id, err, s.Stats())
		}
		if f, _ := DecodeFrame(b); f.ID != id {
			t.Fatalf("answer %d came as %d", id, f.ID)
		}
	}
	if st := s.Stats(); st.QueueOverflows != 0 {
		t.Fatalf("stats %+v", st)
	}
}

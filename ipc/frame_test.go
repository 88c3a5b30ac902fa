package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/zlayer/overlayd/tools/testseed"
)

func frameBytes(body []byte) []byte {
	out := make([]byte, 4, 4+len(body))
	binary.LittleEndian.PutUint32(out, uint32(len(body)))
	return append(out, body...)
}

// A declared length is not allocated up front: 8 MiB declared and 10
// bytes sent cost the first chunk, not 8 MiB.
func TestReadFrameDoesNotAllocateTheDeclaredLength(t *testing.T) {
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], MaxFrame)
	r := io.MultiReader(bytes.NewReader(hdr[:]), bytes.NewReader(make([]byte, 10)))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadFrame(r, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Fatalf("reading 10 bytes of a declared 8 MiB frame allocated %d bytes", grew)
	}
}

// Bodies of every size arrive intact whatever the read sizes, and the
// buffer grows by doubling: the allocations of a body are less than three
// times its size (and a few KiB).
func TestReadFrameGrowsAsBytesArrive(t *testing.T) {
	seed := uint64(testseed.New(t))
	rng := rand.New(rand.NewPCG(seed, seed))
	sizes := []int{0, 1, firstChunk - 1, firstChunk, firstChunk + 1, 3*firstChunk + 7, 1 << 20, MaxFrame}
	for i := 0; i < 8; i++ {
		sizes = append(sizes, rng.IntN(2<<20))
	}
	for _, n := range sizes {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
		in := frameBytes(body)
		for _, wrap := range []struct {
			name string
			r    func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"half", iotest.HalfReader},
			{"data-err", iotest.DataErrReader},
		} {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, err := ReadFrame(wrap.r(bytes.NewReader(in)), nil)
			runtime.ReadMemStats(&after)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%d bytes, %s reads: err %v, equal %v", n, wrap.name, err, bytes.Equal(got, body))
			}
			// Doubling from firstChunk allocates less than 2n before the
			// last buffer of n; the rest is a few small allocations of the
			// reader and the runtime (up to 8 KiB seen).
			if grew := after.TotalAlloc - before.TotalAlloc; n > firstChunk && grew > uint64(3*n+16<<10) {
				t.Fatalf("%d bytes, %s reads: allocated %d", n, wrap.name, grew)
			}
		}
		// A large enough buffer is reused as is.
		buf := make([]byte, n+10)
		got, err := ReadFrame(bytes.NewReader(in), buf)
		if err != nil || !bytes.Equal(got, body) || (n > 0 && &got[0] != &buf[0]) {
			t.Fatalf("%d bytes into a buffer of %d: reused %v, err %v", n, len(buf), n > 0 && &got[0] == &buf[0], err)
		}
	}
	// MaxFrame+1 is refused before anything is read.
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], MaxFrame+1)
	if _, err := ReadFrame(bytes.NewReader(hdr[:]), nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("MaxFrame+1: %v", err)
	}
}

// 200 connections that each declare 8 MiB and send 10 bytes hold about a
// read buffer and a first chunk each, not 8 MiB: well under 4 MiB in all.
func TestPartialFramesHoldLittleMemory(t *testing.T) {
	const conns = 200
	var waiting atomic.Int64
	testHookBodyWait = func() { waiting.Add(1) }
	t.Cleanup(func() { testHookBodyWait = nil })
	path, _ := serve(t, &Server{})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], MaxFrame)
	cs := make([]net.Conn, 0, conns)
	for i := 0; i < conns; i++ {
		c := rawConn(t, path)
		cs = append(cs, c)
		if _, err := c.Write(append(hdr[:], make([]byte, 6)...)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "every connection waiting for its body", func() bool { return waiting.Load() == conns })
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d connections, each 10 bytes into a declared 8 MiB frame: %d KiB of heap in all (%d bytes each)", conns, held>>10, held/conns)
	if held > 4<<20 {
		t.Fatalf("%d connections mid-frame hold %d bytes of heap", conns, held)
	}
	runtime.KeepAlive(cs)
}

// Frames are split out of a pipelined stream intact, in place and through
// the growing buffer, whatever the mix of sizes.
func TestPipelinedMixedSizesAreAnswered(t *testing.T) {
	var mu sync.Mutex
	seen := map[uint64]int{}
	s := &Server{Handler: func(m Meta, r Request) <-chan Response {
		mu.Lock()
		seen[m.RequestID]++
		mu.Unlock()
		return Reply(OK{})
	}}
	path, _ := serve(t, s)
	c := rawConn(t, path)
	var stream []byte
	const n = 300
	for id := uint64(1); id <= n; id++ {
		// Unknown fields are ignored: pad some frames past the read buffer.
		pad := ""
		if id%7 == 0 {
			pad = `,"pad":"` + string(bytes.Repeat([]byte("p"), int(id)*37)) + `"`
		}
		stream = append(stream, frameBytes([]byte(`{"frame":"request","id":`+strconv.FormatUint(id, 10)+pad+`,"request":{"op":"status"}}`))...)
	}
	go func() {
		// Odd write sizes, so that frames straddle reads.
		for len(stream) > 0 {
			k := min(len(stream), 1+len(stream)%1013)
			if _, err := c.Write(stream[:k]); err != nil {
				return
			}
			stream = stream[k:]
		}
	}()
	for id := uint64(1); id <= n; id++ {
		if f := readResp(t, c); f.ID != id {
			t.Fatalf("response %d for request %d", f.ID, id)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Fatalf("%d distinct requests handled", len(seen))
	}
}

package ipc

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// Once the first byte of a frame has arrived the whole frame must arrive
// within FrameTimeout, in the length prefix, a body in the read buffer or
// a body larger than it; a connection idle between frames has no deadline,
// and a slow frame that makes it in time is served.
func TestStartedFramesMustFinish(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := &Server{FrameTimeout: timeout}
	path, rec := serve(t, s)
	var wg sync.WaitGroup
	run := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, f)
		}()
	}
	closedAfter := func(t *testing.T, first []byte) {
		c := rawConn(t, path)
		start := time.Now()
		c.Write(first)
		expectClosed(t, c)
		if d := time.Since(start); d < timeout*9/10 || d > 10*timeout {
			t.Fatalf("closed after %v (frame timeout %v)", d, timeout)
		}
	}
	var big [4]byte
	binary.LittleEndian.PutUint32(big[:], 100<<10)
	run("half a length prefix", func(t *testing.T) { closedAfter(t, []byte{1, 0}) })
	run("half a small body", func(t *testing.T) { closedAfter(t, []byte{100, 0, 0, 0, '{', '"'}) })
	run("part of a large body", func(t *testing.T) { closedAfter(t, append(big[:], make([]byte, 5000)...)) })
	run("idle from the start", func(t *testing.T) {
		c := rawConn(t, path)
		time.Sleep(3 * timeout)
		if f := roundTrip(t, c, 1); f.ID != 1 {
			t.Fatalf("%+v", f)
		}
	})
	run("idle between frames", func(t *testing.T) {
		c := rawConn(t, path)
		roundTrip(t, c, 1)
		time.Sleep(3 * timeout)
		if f := roundTrip(t, c, 2); f.ID != 2 {
			t.Fatalf("%+v", f)
		}
	})
	run("slow but in time", func(t *testing.T) {
		c := rawConn(t, path)
		fr := frameBytes(statusFrame(3))
		for i := 0; i < 4; i++ { // 3 pauses of timeout/6
			c.Write(fr[i*len(fr)/4 : (i+1)*len(fr)/4])
			if i < 3 {
				time.Sleep(timeout / 6)
			}
		}
		if f := readResp(t, c); f.ID != 3 {
			t.Fatalf("%+v", f)
		}
	})
	wg.Wait()
	if st := s.Stats(); st.FrameTimeouts != 3 || st.PartialFrames != 0 {
		t.Fatalf("stats %+v", st)
	}
	if r := rec.atLeast(slog.LevelInfo); len(r) > 0 {
		t.Fatalf("frame timeouts logged above debug: %s", r[0].Message)
	}
}

// Drain stops every reader at once (idle, mid-frame, or reading a steady
// stream of frames whose deadlines come and go) and still writes the
// answers of what was read.
func TestDrainStopsReadersPromptly(t *testing.T) {
	for round := 0; round < 5; round++ {
		s := &Server{Handler: func(m Meta, r Request) <-chan Response {
			if _, ok := r.(NatTick); ok {
				ch := make(chan Response, 1)
				time.AfterFunc(100*time.Millisecond, func() { ch <- OK{} })
				return ch
			}
			return Reply(OK{})
		}}
		path, _ := serve(t, s)
		idle := rawConn(t, path)
		mid := rawConn(t, path)
		mid.Write([]byte{50, 0, 0})
		slow := rawConn(t, path)
		WriteFrame(slow, requestFrame(1, "nat_tick"))
		var streams []net.Conn
		for i := 0; i < 4; i++ {
			c := rawConn(t, path)
			streams = append(streams, c)
			go func() { // a frame at a time, in pieces: deadlines armed and cleared all along
				fr := frameBytes(statusFrame(1))
				for {
					if _, err := c.Write(fr[:3]); err != nil {
						return
					}
					if _, err := c.Write(fr[3:]); err != nil {
						return
					}
				}
			}()
			go func() {
				var buf [4096]byte
				for {
					if _, err := c.Read(buf[:]); err != nil {
						return
					}
				}
			}()
		}
		waitFor(t, 5*time.Second, "7 open", func() bool { return s.Stats().Open == 7 })
		time.Sleep(20 * time.Millisecond) // the streams run
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Drain(ctx)
		cancel()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("round %d: Drain took %v", round, d)
		}
		if f := readResp(t, slow); f.ID != 1 {
			t.Fatalf("the slow request's answer: %+v", f)
		}
		expectClosed(t, slow)
		expectClosed(t, idle)
		mid.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := mid.Read(make([]byte, 1)); err == nil {
			t.Fatal("mid-frame connection open after Drain")
		}
		if st := s.Stats(); st.Open != 0 || st.FrameTimeouts != 0 {
			t.Fatalf("after Drain: %+v", st)
		}
	}
}

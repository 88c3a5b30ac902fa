package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"github.com/zlayer/overlayd/tools/testtemp"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServer answers status with a fixed result, delays "nat_tick" so
// that ordering can be observed, and answers ok otherwise.
func startServer(t *testing.T) (string, *Server) {
	t.Helper()
	s := &Server{Handler: func(m Meta, r Request) <-chan Response {
		switch r.(type) {
		case NatTick:
			ch := make(chan Response, 1)
			go func() { time.Sleep(20 * time.Millisecond); ch <- OK{} }()
			return ch
		case Status:
			return Reply(StatusResult{PeerCount: uint32(m.RequestID)})
		}
		return Reply(OK{})
	}}
	path, _ := serve(t, s)
	return path, s
}

func rawConn(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := testDial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readResp(t *testing.T, c net.Conn) Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := ReadFrame(c, nil)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	f, err := DecodeFrame(b)
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return f
}

func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := ReadFrame(c, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed: %q %v", b, err)
	}
}

// The server honours decode-v1.tsv: accepted rows are answered (here: not
// err), readable rejected rows get err with their id and the connection
// stays open, unreadable rows close the connection.
func TestServerHonoursDecodeVectors(t *testing.T) {
	path, _ := startServer(t)
	for _, row := range readTSV(t, "testdata/decode-v1.tsv") {
		verdict, name, frame := row[0], row[1], row[2]
		t.Run(name, func(t *testing.T) {
			c := rawConn(t, path)
			if err := WriteFrame(c, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			f0, derr := DecodeFrame([]byte(frame))
			var de *DecodeError
			errors.As(derr, &de)
			switch {
			case verdict == "accept":
				f := readResp(t, c)
				if _, isErr := f.Response.(Err); isErr || f.ID != f0.ID {
					t.Fatalf("accepted frame answered %+v", f)
				}
			case de != nil && de.HasID:
				f := readResp(t, c)
				e, isErr := f.Response.(Err)
				if !isErr || f.ID != de.ID || e.Message == "" {
					t.Fatalf("want err with id %d, got %+v", de.ID, f)
				}
				// Still open and serving.
				if err := WriteFrame(c, statusFrame(77)); err != nil {
					t.Fatalf("connection unusable after err: %v", err)
				}
				if f := readResp(t, c); f.ID != 77 {
					t.Fatalf("connection unusable after err: %+v", f)
				}
			default:
				expectClosed(t, c)
			}
		})
	}
}

func TestHugeLengthPrefixClosesWithoutAllocating(t *testing.T) {
	path, _ := startServer(t)
	c := rawConn(t, path)
	// Warm up so that the server's goroutines exist before measuring.
	if err := WriteFrame(c, statusFrame(1)); err != nil {
		t.Fatal(err)
	}
	readResp(t, c)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], 0xFFFFFFFF)
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("server allocated %d bytes for a 4 GiB length prefix", grew)
	}
	// Exactly MaxFrame is allowed; MaxFrame+1 is not.
	c2 := rawConn(t, path)
	binary.LittleEndian.PutUint32(hdr[:], MaxFrame+1)
	if _, err := c2.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c2)
}

func TestGarbageConnectionsLeaveServerServing(t *testing.T) {
	path, _ := startServer(t)
	garbage := [][]byte{
		{0xff, 0xff, 0xff, 0xff},
		{5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'},
		{3, 0, 0, 0, '{', '}', '}'},
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{2, 0, 0, 0, '[', ']'},
		{1, 0},
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := testDial(path)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Write(garbage[i%len(garbage)])
			c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			io.Copy(io.Discard, c)
		}(i)
	}
	wg.Wait()
	cl, err := Dial(context.Background(), path, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Call(context.Background(), Status{}); err != nil {
		t.Fatalf("after 1000 garbage connections: %v", err)
	}
}

func TestResponsesInRequestOrderPerConnection(t *testing.T) {
	path, _ := startServer(t)
	c := rawConn(t, path)
	// A slow request followed by fast ones: answers come back in order.
	if err := WriteFrame(c, requestFrame(1, "nat_tick")); err != nil {
		t.Fatal(err)
	}
	for id := uint64(2); id <= 20; id++ {
		if err := WriteFrame(c, statusFrame(id)); err != nil {
			t.Fatal(err)
		}
	}
	for id := uint64(1); id <= 20; id++ {
		if f := readResp(t, c); f.ID != id {
			t.Fatalf("response %d came for request %d", f.ID, id)
		}
	}
}

func TestClientConcurrentCallsAndEvents(t *testing.T) {
	path, srv := startServer(t)
	events := make(chan Event, 4)
	cl, err := Dial(context.Background(), path, DialOptions{Events: events})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Call(context.Background(), Status{}); err != nil {
		t.Fatal(err)
	}
	srv.Broadcast(PeerHealthChanged{Pubkey: "k", Healthy: true})
	select {
	case ev := <-events:
		if ev.(PeerHealthChanged).Pubkey != "k" {
			t.Fatalf("%+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.Call(context.Background(), Status{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestDialRetriesUntilTheServerAppears(t *testing.T) {
	path := filepath.Join(testtemp.Dir(t), "late.sock")
	// The server appears 300 ms after the first attempt (the delay is the
	// point of the test); the test goroutine owns its cleanup.
	served := make(chan *Server, 1)
	listenErr := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := Listen(path)
		if err != nil {
			listenErr <- err
			return
		}
		s := &Server{Handler: func(Meta, Request) <-chan Response { return Reply(OK{}) }}
		served <- s
		s.Serve(l)
	}()
	cl, err := Dial(context.Background(), path, DialOptions{Attempts: 10, Backoff: 50 * time.Millisecond})
	select {
	case s := <-served:
		t.Cleanup(func() { s.Close() })
	case err := <-listenErr:
		t.Fatalf("listen: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if _, err := Dial(context.Background(), filepath.Join(testtemp.Dir(t), "none.sock"), DialOptions{Attempts: 2, Backoff: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "2 attempt") {
		t.Fatalf("dial to nothing: %v", err)
	}
}

func TestListenRefusesLiveSocketAndReplacesStale(t *testing.T) {
	path, _ := startServer(t)
	if _, err := Listen(path); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second listener on a live path: %v", err)
	}
	// A stale socket file (nobody listening, no lock held) is replaced.
	stale := filepath.Join(testtemp.Dir(t), "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen(stale)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l2.Close()
}

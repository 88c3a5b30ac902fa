package ipc

import (
	"bufio"
	"context"
	"testing"
)

// benchServer serves h, or a handler that answers status at once.
func benchServer(b *testing.B, h Handler) string {
	b.Helper()
	if h == nil {
		h = func(m Meta, r Request) <-chan Response { return Reply(StatusResult{PeerCount: 1}) }
	}
	path, _ := serve(b, &Server{Handler: h})
	return path
}

// benchCalls is one client doing b.N round trips, one at a time.
func benchCalls(b *testing.B, path string) {
	b.Helper()
	cl, err := Dial(context.Background(), path, DialOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cl.Call(context.Background(), Status{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCall is one client doing round trips, one at a time.
func BenchmarkCall(b *testing.B) { benchCalls(b, benchServer(b, nil)) }

// BenchmarkPipelined writes b.N status requests on one connection while
// another goroutine reads the answers: the server's batching of many small
// frames per read and per write.
func BenchmarkPipelined(b *testing.B) {
	path := benchServer(b, nil)
	nc, err := testDial(path)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	done := make(chan error, 1)
	go func() {
		br := bufio.NewReaderSize(nc, 64<<10)
		var buf []byte
		for i := 0; i < b.N; i++ {
			body, err := ReadFrame(br, buf)
			if err != nil {
				done <- err
				return
			}
			buf = body
		}
		done <- nil
	}()
	bw := bufio.NewWriterSize(nc, 64<<10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := WriteFrame(bw, statusFrame(uint64(i+1))); err != nil {
			b.Fatal(err)
		}
	}
	bw.Flush()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConcurrentCalls is 16 clients doing round trips at once.
func BenchmarkConcurrentCalls(b *testing.B) {
	path := benchServer(b, nil)
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		cl, err := Dial(context.Background(), path, DialOptions{})
		if err != nil {
			b.Error(err)
			return
		}
		defer cl.Close()
		for pb.Next() {
			if _, err := cl.Call(context.Background(), Status{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCallAsync is round trips through a handler that answers from
// another goroutine, as the daemon's sequencer does.
func BenchmarkCallAsync(b *testing.B) {
	jobs := make(chan chan Response, 64)
	go func() {
		for ch := range jobs {
			ch <- StatusResult{PeerCount: 1}
		}
	}()
	b.Cleanup(func() { close(jobs) }) // after the server's Close (cleanups run last first)
	benchCalls(b, benchServer(b, func(m Meta, r Request) <-chan Response {
		ch := make(chan Response, 1)
		jobs <- ch
		return ch
	}))
}

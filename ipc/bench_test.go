package ipc

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"testing"
)

func benchServer(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "b.sock")
	l, err := Listen(path)
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Handler: func(m Meta, r Request) <-chan Response { return Reply(StatusResult{PeerCount: 1}) }}
	go s.Serve(l)
	b.Cleanup(func() { s.Close() })
	return path
}

// BenchmarkCall is one client doing round trips, one at a time.
func BenchmarkCall(b *testing.B) {
	path := benchServer(b)
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

// BenchmarkPipelined writes b.N status requests on one connection while
// another goroutine reads the answers: the server's batching of many small
// frames per read and per write.
func BenchmarkPipelined(b *testing.B) {
	path := benchServer(b)
	nc, err := net.Dial("unix", path)
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
	path := benchServer(b)
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
	defer close(jobs)
	path := filepath.Join(b.TempDir(), "b.sock")
	l, err := Listen(path)
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Handler: func(m Meta, r Request) <-chan Response {
		ch := make(chan Response, 1)
		jobs <- ch
		return ch
	}}
	go s.Serve(l)
	defer s.Close()
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

// Command stormclient floods a zlayer-overlayd socket with hostile clients
// for the netlab storm test (issue 9). Each mode runs for -for, then
// prints one line: `<mode> <count>` (connections dialled, or answers
// read for -mode verify). Several processes share a storm, since one
// process may hold only RLIMIT_NOFILE descriptors.
//
//	stormclient -socket S -mode idle  -conns 10000   two bytes of a length prefix each
//	stormclient -socket S -mode half  -conns 2000    an 8 MiB frame declared, 1 KiB sent
//	stormclient -socket S -mode neverread -conns 8   pipelined journal_list, never read
//	stormclient -socket S -mode verify               128 pipelined journal_verify, read
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

func main() {
	sock := flag.String("socket", "", "the daemon's socket")
	mode := flag.String("mode", "idle", "idle, half, neverread or verify")
	conns := flag.Int("conns", 1000, "connections to hold (idle, half, neverread)")
	dur := flag.Duration("for", 60*time.Second, "how long the storm lasts")
	flag.Parse()
	if *sock == "" {
		fmt.Fprintln(os.Stderr, "stormclient: -socket is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var count atomic.Int64
	var wg sync.WaitGroup
	switch *mode {
	case "idle", "half":
		prefix := []byte{0x10, 0x00}
		if *mode == "half" {
			prefix = make([]byte, 4+1024)
			binary.LittleEndian.PutUint32(prefix, ipc.MaxFrame)
		}
		per := 1000
		for n := *conns; n > 0; n -= per {
			wg.Add(1)
			go func(n int) { defer wg.Done(); hold(ctx, *sock, n, prefix, &count) }(min(n, per))
		}
	case "neverread":
		for i := range *conns {
			wg.Add(1)
			go func() { defer wg.Done(); neverRead(ctx, *sock, uint64(i), &count) }()
		}
	case "verify":
		wg.Add(1)
		go func() { defer wg.Done(); verify(ctx, *sock, &count) }()
	default:
		fmt.Fprintf(os.Stderr, "stormclient: unknown -mode %q\n", *mode)
		os.Exit(2)
	}
	wg.Wait()
	fmt.Printf("%s %d\n", *mode, count.Load())
}

// hold keeps up to n connections open, each having sent prefix, and
// dials again, every few seconds, those older than the daemon's 10 s
// deadline for a started frame.
func hold(ctx context.Context, sock string, n int, prefix []byte, dialled *atomic.Int64) {
	conns := make([]net.Conn, n)
	born := make([]time.Time, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for ctx.Err() == nil {
		for i := range conns {
			if ctx.Err() != nil {
				return
			}
			if conns[i] != nil && time.Since(born[i]) < 12*time.Second {
				continue
			}
			if conns[i] != nil {
				conns[i].Close()
				conns[i] = nil
			}
			c, err := net.DialTimeout("unix", sock, time.Second)
			if err != nil {
				time.Sleep(5 * time.Millisecond) // the backlog is full
				continue
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write(prefix)
			conns[i], born[i] = c, time.Now()
			dialled.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// neverRead pipelines journal_list (limit 10000) and never reads; when the
// daemon cuts it off, it connects again.
func neverRead(ctx context.Context, sock string, id uint64, dialled *atomic.Int64) {
	limit := uint32(10000)
	for ctx.Err() == nil {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		dialled.Add(1)
		for seq := id << 32; ctx.Err() == nil; seq++ {
			b, _ := ipc.EncodeRequest(seq, ipc.JournalList{Limit: &limit})
			c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			if err := ipc.WriteFrame(c, b); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue // the daemon reads no more of ours for now
				}
				break // cut off
			}
		}
		c.Close()
	}
}

// verify sends 128 journal_verify at once and reads the answers, again and
// again.
func verify(ctx context.Context, sock string, answered *atomic.Int64) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		br := bufio.NewReader(c)
		for ctx.Err() == nil {
			ok := true
			for i := range 128 {
				b, _ := ipc.EncodeRequest(uint64(i+1), ipc.JournalVerify{})
				if err := ipc.WriteFrame(c, b); err != nil {
					ok = false
					break
				}
			}
			for i := 0; ok && i < 128; i++ {
				if _, err := ipc.ReadFrame(br, nil); err != nil {
					ok = false
					break
				}
				answered.Add(1)
			}
			if !ok {
				break
			}
		}
		stop()
		c.Close()
	}
}

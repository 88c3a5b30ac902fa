//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/zlayer/overlayd/ipc"
)

// A state larger than one frame is read in parts, online, and equals the
// state read from the journal file offline.
func TestLargeStateReadInParts(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 48,000 commands")
	}
	n := newNode(t)
	n.start()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		c := n.client() // here: it fails the test with t.Fatal
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer c.Close()
			for i := 0; i < 3000; i++ {
				name := fmt.Sprintf("a-rather-long-task-name-%02d-%05d.some-service.prod.overlay.local", w, i)
				if _, err := c.Call(context.Background(), ipc.RegisterDNS{Name: name, IP: ipc.AddrOf(netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)}))}); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	c := n.client()
	defer c.Close()
	first, err := c.Call(context.Background(), ipc.StateDump{})
	if err != nil {
		t.Fatal(err)
	}
	if r := first.(ipc.StateResult); uint64(len(r.Part)) >= r.Total {
		t.Fatalf("state of %d bytes came in one part: the test does not test parts", r.Total)
	}
	online := n.mustCtl("state", "-o", "json")
	st := n.state()
	if len(st.DNS) != 48000 {
		t.Fatalf("%d names", len(st.DNS))
	}
	n.stop()
	if offline := n.mustCtl("state", "-o", "json"); offline != online {
		t.Fatal("online and offline states differ")
	}
}

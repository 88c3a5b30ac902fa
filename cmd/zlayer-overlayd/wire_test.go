//go:build linux

package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

func readVectors(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open("../../ipc/testdata/decode-v1.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		if sc.Text() != "" {
			rows = append(rows, strings.Split(sc.Text(), "\t"))
		}
	}
	return rows
}

func rawFrame(t *testing.T, c net.Conn) (ipc.Frame, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := ipc.ReadFrame(c, nil)
	if err != nil {
		return ipc.Frame{}, err
	}
	return ipc.DecodeFrame(b)
}

// The real daemon honours decode-v1.tsv: accepted frames are served (with
// the global overlay set up, none of them is refused), readable rejected
// frames get err with their id on a connection that stays open, unreadable
// ones close the connection.
func TestDaemonHonoursDecodeVectors(t *testing.T) {
	n := newNode(t)
	n.start()
	c := n.client()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "42", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.200.9.0/24"), WgPort: 51820, NatEnabled: true})
	c.Close()
	for _, row := range readVectors(t) {
		verdict, name, frame := row[0], row[1], row[2]
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("unix", n.socket)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := ipc.WriteFrame(conn, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			f, err := rawFrame(t, conn)
			_, derr := ipc.DecodeFrame([]byte(frame))
			var de *ipc.DecodeError
			if verdict != "accept" && !errors.As(derr, &de) {
				t.Fatalf("the %s vector decodes without a DecodeError: %v", verdict, derr)
			}
			switch {
			case verdict == "accept":
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				if e, isErr := f.Response.(ipc.Err); isErr {
					t.Fatalf("accepted frame refused: %s", e.Message)
				}
			case de.HasID:
				e, isErr := f.Response.(ipc.Err)
				if err != nil || !isErr || f.ID != de.ID {
					t.Fatalf("want err with id %d, got %+v %v", de.ID, f, err)
				}
				if err := ipc.WriteFrame(conn, []byte(`{"frame":"request","id":9,"request":{"op":"status"}}`)); err != nil {
					t.Fatalf("connection unusable after err (%s): %v", e.Message, err)
				}
				if f, err := rawFrame(t, conn); err != nil || f.ID != 9 {
					t.Fatalf("connection unusable after err (%s): %+v %v", e.Message, f, err)
				}
			default:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("unreadable frame: connection not closed (%+v, %v)", f, err)
				}
			}
		})
	}
}

// A 0xFFFFFFFF length prefix closes that connection; 1,000 connections
// sending garbage leave the daemon serving the next valid request.
func TestDaemonSurvivesGarbage(t *testing.T) {
	n := newNode(t)
	n.start()
	conn, err := net.Dial("unix", n.socket)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], 0xFFFFFFFF)
	if _, err := conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := rawFrame(t, conn); !errors.Is(err, io.EOF) {
		t.Fatalf("huge length prefix: %v", err)
	}
	conn.Close()
	garbage := [][]byte{{0xff, 0xff, 0xff, 0xff}, {4, 0, 0, 0, 0xc3, 0x28, 'a', 'b'}, []byte("\x05\x00\x00\x00hello"), []byte("GET / HTTP/1.0\r\n\r\n"), {2, 0, 0, 0, '{', '}'}}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("unix", n.socket)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Write(garbage[i%len(garbage)])
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			io.Copy(io.Discard, c)
		}(i)
	}
	wg.Wait()
	c := n.client()
	defer c.Close()
	call(t, c, ipc.Status{})
	fi, err := os.Stat(n.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v", fi.Mode())
	}
}

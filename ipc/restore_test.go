//go:build unix

package ipc

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A socket file removed by hand is bound again; a connection accepted
// before keeps working, and Accept goes on with the new socket. A file a
// live server answers on is never taken.
func TestRestoreRemovedSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-accepted:
		case <-time.After(2 * time.Second):
			t.Fatal("not accepted")
		}
		return c
	}
	before := dial()
	defer before.Close()
	r := l.(Restorer)
	if done, err := r.Restore(); done || err != nil {
		t.Fatalf("Restore of an intact socket: %v %v", done, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if done, err := r.Restore(); !done || err != nil {
		t.Fatalf("Restore of a removed socket: %v %v", done, err)
	}
	after := dial()
	after.Close()
	if _, err := before.Write([]byte{0}); err != nil {
		t.Fatalf("the connection from before the restore broke: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("restored socket file: %v %v", fi, err)
	}
	// Replaced by a socket another server answers on: left alone.
	os.Remove(path)
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if done, err := r.Restore(); done || err == nil {
		t.Fatalf("Restore took a path a live server answers on: %v %v", done, err)
	}
}

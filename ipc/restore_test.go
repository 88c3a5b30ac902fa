//go:build unix

package ipc

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// A socket file removed by hand is bound again; a connection accepted
// before keeps working, and Accept goes on with the new socket. A file a
// live server answers on is never taken, nor removed by Close.
func TestRestoreRemovedSocket(t *testing.T) {
	path, l := listen(t)
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
	// dial returns the client's end and the server's.
	dial := func() (net.Conn, net.Conn) {
		t.Helper()
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case sc := <-accepted:
			return c, sc
		case <-time.After(2 * time.Second):
			t.Fatal("not accepted")
			return nil, nil
		}
	}
	before, beforeServer := dial()
	defer before.Close()
	defer beforeServer.Close()
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
	after, afterServer := dial()
	after.Close()
	afterServer.Close()
	if _, err := before.Write([]byte{42}); err != nil {
		t.Fatalf("the connection from before the restore broke: %v", err)
	}
	got := make([]byte, 1)
	beforeServer.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(beforeServer, got); err != nil || got[0] != 42 {
		t.Fatalf("the connection from before the restore does not carry bytes: %v %v", got, err)
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
	if done, err := r.Restore(); done || !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("Restore took a path a live server answers on: %v %v", done, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed the other server's socket file: %v", err)
	}
}

// An accept deadline set before a Restore holds on the new socket (the
// server's accepts on its reserved descriptor must not block).
func TestRestoreCarriesTheAcceptDeadline(t *testing.T) {
	path, l := listen(t)
	defer l.Close()
	if err := l.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if done, err := l.(Restorer).Restore(); !done || err != nil {
		t.Fatalf("Restore of a removed socket: %v %v", done, err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Accept after the deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept on the restored socket ignores the deadline")
	}
	// The restored file is this listener's own: Close removes it.
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the restored socket file after Close: %v", err)
	}
}

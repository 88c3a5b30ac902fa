package daemon

import (
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// The daemon goes starting → replaying → reconciling → serving →
// stopping → stopped, and is ready only while it serves.
func TestPhasesAndReadiness(t *testing.T) {
	var mu sync.Mutex
	var seen []Phase
	d, err := Open(Config{DataDir: t.TempDir(), Log: slog.New(slog.DiscardHandler), NoDataPlane: true,
		OnPhase: func(p Phase, _ string) { mu.Lock(); seen = append(seen, p); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := d.Readiness(); ok || len(why) == 0 {
		t.Fatalf("ready before serving: %v %v", ok, why)
	}
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go d.ServeListener(l)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ok, _ := d.Readiness(); ok {
			break
		}
		if time.Now().After(deadline) {
			_, why := d.Readiness()
			t.Fatalf("not ready 5 s after serving: %v", why)
		}
		time.Sleep(time.Millisecond)
	}
	d.Stop()
	<-d.Done()
	if ok, _ := d.Readiness(); ok {
		t.Fatal("ready after stop")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []Phase{PhaseStarting, PhaseReplaying, PhaseReconciling, PhaseServing, PhaseStopping, PhaseStopped}
	if !slices.Equal(seen, want) {
		t.Fatalf("phases %v, want %v", seen, want)
	}
}

// A daemon stopped before it serves never serves: ServeListener returns,
// closes the listener it was given, and the phase stays stopped.
func TestStopBeforeServeNeverServes(t *testing.T) {
	d, err := Open(Config{DataDir: t.TempDir(), Log: slog.New(slog.DiscardHandler), NoDataPlane: true})
	if err != nil {
		t.Fatal(err)
	}
	d.Stop()
	<-d.Done()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.ServeListener(l) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener on a stopped daemon did not return")
	}
	if p, _, _ := d.Phase(); p != PhaseStopped {
		t.Fatalf("phase %v after serving a stopped daemon", p)
	}
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Fatal("the listener of a stopped daemon still accepts")
	}
}

package metrics

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func startTest(t *testing.T, o ServerOptions) *Server {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Metrics == nil {
		o.Metrics = New(Options{Version: "test", Commit: "c", Protocol: 1}).Handler()
	}
	if o.Ready == nil {
		o.Ready = func() (bool, []string) { return true, nil }
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := StartServer(o)
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for s.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the server did not bind")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

func do(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// Only GET and HEAD are served; POST, PUT and DELETE get 405 with Allow.
func TestServerRefusesOtherMethods(t *testing.T) {
	s := startTest(t, ServerOptions{})
	base := "http://" + s.Addr().String()
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if code, _, _ := do(t, "GET", base+path); code != 200 {
			t.Errorf("GET %s: %d", path, code)
		}
		if code, _, _ := do(t, "HEAD", base+path); code != 200 {
			t.Errorf("HEAD %s: %d", path, code)
		}
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			code, _, h := do(t, m, base+path)
			if code != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d, Allow %q", m, path, code, h.Get("Allow"))
			}
		}
	}
	if code, _, _ := do(t, "GET", base+"/other"); code != 404 {
		t.Errorf("GET /other: %d", code)
	}
}

// /readyz: 200 "ready", or 503 with one reason per line.
func TestReadyzReasons(t *testing.T) {
	var mu sync.Mutex
	ready, reasons := false, []string{"replaying: loading the state of 12 events"}
	s := startTest(t, ServerOptions{Ready: func() (bool, []string) { mu.Lock(); defer mu.Unlock(); return ready, reasons }})
	base := "http://" + s.Addr().String()
	if code, body, _ := do(t, "GET", base+"/readyz"); code != 503 || body != "replaying: loading the state of 12 events\n" {
		t.Fatalf("/readyz while replaying: %d %q", code, body)
	}
	mu.Lock()
	reasons = []string{"degraded: the journal is read-only: x", "degraded: socket: y"}
	mu.Unlock()
	if code, body, _ := do(t, "GET", base+"/readyz"); code != 503 || body != "degraded: the journal is read-only: x\ndegraded: socket: y\n" {
		t.Fatalf("/readyz degraded: %d %q", code, body)
	}
	mu.Lock()
	ready, reasons = true, nil
	mu.Unlock()
	if code, body, _ := do(t, "GET", base+"/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz ready: %d %q", code, body)
	}
	if code, body, _ := do(t, "GET", base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
}

// A client that sends half a request header is cut off after
// ReadHeaderTimeout; others are served meanwhile. Headers past
// MaxHeaderBytes are refused.
func TestServerSurvivesSlowClient(t *testing.T) {
	s := startTest(t, ServerOptions{ReadHeaderTimeout: 300 * time.Millisecond})
	addr := s.Addr().String()
	var slow []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n") // never ends
		slow = append(slow, c)
	}
	start := time.Now()
	if code, body, _ := do(t, "GET", "http://"+addr+"/metrics"); code != 200 || !strings.Contains(body, "overlayd_build_info") {
		t.Fatalf("GET while slow clients wait: %d", code)
	}
	for _, c := range slow {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := bufio.NewReader(c).ReadString('\n')
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("a slow client was not cut off within 5 s")
		}
	}
	took := time.Since(start)
	t.Logf("20 slow clients cut off after %v", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Fatalf("slow clients cut off after %v, ReadHeaderTimeout 300ms", took)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2*MaxHeaderBytes)+"\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, "431") {
		t.Fatalf("an oversized header was answered %q", line)
	}
}

// An address that cannot be bound is reported, retried, and taken once
// free.
func TestServerRetriesBinding(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reports []error
	s := StartServer(ServerOptions{Addr: taken.Addr().String(), Metrics: http.NotFoundHandler(),
		Ready: func() (bool, []string) { return true, nil }, Log: slog.New(slog.DiscardHandler), RetryEvery: 20 * time.Millisecond,
		Problem: func(err error) { mu.Lock(); reports = append(reports, err); mu.Unlock() }})
	defer s.Close()
	snapshot := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), reports...)
	}
	waitFor := func(what string, cond func([]error) bool) []error {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := snapshot()
			if cond(r) {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: reports %v, addr %v", what, r, s.Addr())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Two failed attempts at least, each reported, nothing bound.
	r := waitFor("two failed attempts", func(r []error) bool { return len(r) >= 2 })
	for _, err := range r {
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("while the address is taken: %v", r)
		}
	}
	if s.Addr() != nil {
		t.Fatalf("bound %v while the address is taken", s.Addr())
	}
	taken.Close()
	waitFor("a nil report once bound", func(r []error) bool { return len(r) > 0 && r[len(r)-1] == nil })
	if s.Addr() == nil {
		t.Fatal("reported bound without an address")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9464": true, "[::1]:9464": true, "localhost:9464": true,
		":9464": false, "0.0.0.0:9464": false, "10.0.0.1:9464": false, "[::]:9464": false, "metrics.example:1": false} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v", addr, got)
		}
	}
}

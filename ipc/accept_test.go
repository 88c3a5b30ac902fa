//go:build unix

package ipc

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeListener fails its accepts with err while err is set, then hands out
// the connections queued on conns. With deadlines, an accept past the
// deadline with nothing queued times out, as a real listener's does.
type fakeListener struct {
	mu        sync.Mutex
	err       error
	failFirst int // when set, only the first failFirst accepts fail
	calls     int
	deadline  time.Time
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	onAccept  func() // called on every accept, on the accepting goroutine
}

func newFakeListener(err error) *fakeListener {
	return &fakeListener{err: err, conns: make(chan net.Conn, 16), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	err, dl, hook := l.err, l.deadline, l.onAccept
	if l.failFirst > 0 && l.calls > l.failFirst {
		err = nil
	}
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if !dl.IsZero() {
		timeout = time.After(time.Until(dl))
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-timeout:
		return nil, &net.OpError{Op: "accept", Net: "fake", Err: os.ErrDeadlineExceeded}
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) setErr(err error) { l.mu.Lock(); l.err = err; l.mu.Unlock() }
func (l *fakeListener) Calls() int       { l.mu.Lock(); defer l.mu.Unlock(); return l.calls }
func (l *fakeListener) Close() error     { l.closeOnce.Do(func() { close(l.closed) }); return nil }
func (l *fakeListener) Addr() net.Addr   { return &net.UnixAddr{Name: "fake", Net: "unix"} }

// deadlineListener is a fakeListener that takes accept deadlines.
type deadlineListener struct{ *fakeListener }

func (l deadlineListener) SetDeadline(t time.Time) error {
	l.mu.Lock()
	l.deadline = t
	l.mu.Unlock()
	return nil
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", errno)}
}

// Failed accepts back off exponentially from 5 ms to 1 s instead of
// spinning, are logged once per burst (and once more with the count when
// accepting works again), and are counted.
func TestAcceptErrorsBackOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"EMFILE", acceptErr(syscall.EMFILE)},
		{"ENFILE", acceptErr(syscall.ENFILE)},
		{"ENOBUFS", acceptErr(syscall.ENOBUFS)},
		{"other", errors.New("something else")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newFakeListener(tc.err)
			rec := &logRecorder{}
			s := &Server{Log: slog.New(rec), Handler: func(Meta, Request) <-chan Response { return Reply(OK{}) }}
			served := make(chan error, 1)
			go func() { served <- s.Serve(l) }()
			time.Sleep(600 * time.Millisecond) // what is measured: calls over a period
			calls := l.Calls()
			// 5+10+20+40+80+160+320 ms: 7 or 8 tries in 600 ms; a spin
			// would be millions.
			if calls < 4 || calls > 12 {
				t.Fatalf("%d accepts in 600 ms", calls)
			}
			if got := s.Stats().AcceptErrors; got != uint64(calls) && got != uint64(calls-1) {
				t.Fatalf("AcceptErrors %d after %d calls", got, calls)
			}
			warns := rec.atLeast(slog.LevelWarn)
			if len(warns) != 1 || !strings.HasPrefix(warns[0].Message, "accept failed") {
				t.Fatalf("%d warnings for one burst: %v", len(warns), warns)
			}
			// Accepting works again: one summary with the count.
			l.setErr(nil)
			a, b := net.Pipe()
			defer a.Close()
			l.conns <- b
			waitFor(t, 3*time.Second, "served again", func() bool { return s.Stats().Open == 1 })
			var sum []slog.Record
			for _, r := range rec.atLeast(slog.LevelInfo) {
				if r.Message == "accepting connections again" {
					sum = append(sum, r)
				}
			}
			if len(sum) != 1 || rec.attr(sum[0], "failed_accepts").Uint64() != s.Stats().AcceptErrors {
				t.Fatalf("summaries %v, errors %d", sum, s.Stats().AcceptErrors)
			}
			s.Close()
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}

// Close ends Serve at once, even in the middle of a long backoff.
func TestCloseInterruptsTheBackoff(t *testing.T) {
	l := newFakeListener(acceptErr(syscall.EMFILE))
	s := &Server{Log: slog.New(&logRecorder{})}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	time.Sleep(700 * time.Millisecond) // the backoff is at 640 ms or 1 s
	start := time.Now()
	s.Close()
	select {
	case <-served:
	case <-time.After(2 * time.Second):
		t.Fatal("Serve still running after Close")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Serve returned %v after Close", d)
	}
}

// Out of descriptors, Serve gives back its reserved descriptor, accepts
// the connections that wait, answers each the reason and closes it, then
// takes the reserve again.
func TestReserveRefusesWaitingConnections(t *testing.T) {
	fl := newFakeListener(acceptErr(syscall.EMFILE))
	fl.failFirst = 1 // the first accept fails, the next ones find the backlog
	s := &Server{Log: slog.New(&logRecorder{})}
	var clients []net.Conn
	for i := 0; i < 3; i++ {
		a, b := net.Pipe()
		clients = append(clients, a)
		fl.conns <- b
	}
	got := make(chan string, len(clients))
	for _, c := range clients {
		go func(c net.Conn) {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := ReadFrame(c, nil)
			if err != nil {
				got <- "read: " + err.Error()
				return
			}
			f, _ := DecodeFrame(b)
			msg, _ := isRefusal(f)
			got <- msg
		}(c)
	}
	var mu sync.Mutex
	var reserveHeld []bool // at the accepts of the backlog and the one that finds it empty
	fl.onAccept = func() {
		if n := fl.Calls(); n >= 2 && n <= 5 {
			held := s.reserve != nil // the accepting goroutine holds reserveMu
			mu.Lock()
			reserveHeld = append(reserveHeld, held)
			mu.Unlock()
		}
	}
	go s.Serve(deadlineListener{fl})
	for range clients {
		if msg := <-got; msg != "out of file descriptors (too many open files); try again later" {
			t.Fatalf("waiting connection told %q", msg)
		}
	}
	// Refused, not served.
	waitFor(t, 5*time.Second, "the reserve taken back", func() bool {
		s.reserveMu.Lock()
		defer s.reserveMu.Unlock()
		return s.reserve != nil && fl.Calls() >= 6
	})
	mu.Lock()
	if len(reserveHeld) != 4 {
		t.Errorf("%d accepts on the reserve", len(reserveHeld))
	}
	for i, held := range reserveHeld {
		if held {
			t.Errorf("accept %d ran with the reserve held", i+2)
		}
	}
	mu.Unlock()
	if st := s.Stats(); st.RefusedNoDescriptors != 3 || st.Open != 0 || st.AcceptErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
	s.Close()
	if s.reserve != nil {
		t.Fatal("Close kept the reserve")
	}
}

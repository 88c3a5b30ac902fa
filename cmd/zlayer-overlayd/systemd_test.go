//go:build linux

package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

// fakeSystemd is a NOTIFY_SOCKET: a unixgram socket that records every
// datagram with the time it arrived.
type fakeSystemd struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []sdMsg
	// onReady runs on the reader goroutine the moment a READY=1 arrives,
	// before the next datagram is read.
	onReady func()
}

type sdMsg struct {
	at    time.Time
	lines []string
}

// has reports whether the datagram holds line; a line ending in "*"
// matches every line that starts with the rest.
func (m sdMsg) has(line string) bool {
	prefix, wild := strings.CutSuffix(line, "*")
	for _, l := range m.lines {
		if l == line || (wild && strings.HasPrefix(l, prefix)) {
			return true
		}
	}
	return false
}

func newFakeSystemd(t *testing.T, dir string) *fakeSystemd {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSystemd{path: path, conn: conn}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := sdMsg{at: time.Now(), lines: strings.Split(string(buf[:n]), "\n")}
			f.mu.Lock()
			f.msgs = append(f.msgs, m)
			hook := f.onReady
			f.mu.Unlock()
			if m.has("READY=1") && hook != nil {
				hook()
			}
		}
	}()
	return f
}

func (f *fakeSystemd) all() []sdMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sdMsg(nil), f.msgs...)
}

// waitFor waits for a datagram (the from-th or later) holding line.
func (f *fakeSystemd) waitFor(t *testing.T, line string, from int, timeout time.Duration, logs func() string) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, m := range f.all() {
			if i >= from && m.has(line) {
				return i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q from the daemon within %v; got %v\n%s", line, timeout, f.all(), logs())
	return 0
}

func (f *fakeSystemd) pings(after, before time.Time) []time.Time {
	var out []time.Time
	for _, m := range f.all() {
		if m.has("WATCHDOG=1") && m.at.After(after) && m.at.Before(before) {
			out = append(out, m.at)
		}
	}
	return out
}

// buildFailpoints builds the daemon with failpoints compiled in.
func buildFailpoints(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zlayer-overlayd-failpoints")
	if out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build with failpoints: %v\n%s", err, out)
	}
	return bin
}

// The daemon under a (fake) systemd: Type=notify with WatchdogSec. It
// says READY=1 only once its socket answers (a status dialled at the
// moment READY=1 arrives is answered at once), then STATUS= lines and
// WATCHDOG=1 at about a third of the interval; a sequencer blocked by the
// failpoint daemon/sequencer stops the pings for as long as it is blocked
// (none in a window longer than the interval) and they resume after it;
// SIGTERM gives STOPPING=1 and no ping after it.
func TestSystemdNotifyAndWatchdog(t *testing.T) {
	const interval = 600 * time.Millisecond
	dir := t.TempDir()
	sdm := newFakeSystemd(t, dir)
	fpFile := filepath.Join(dir, "failpoints")
	// systemd gives WATCHDOG_PID as the service's main pid; the wrapper
	// sets it to its own, which exec hands on to the daemon (also through
	// netlab's `ip netns exec … unshare … sh -c exec`, which all exec).
	wrapper := filepath.Join(dir, "zlayer-overlayd")
	script := "#!/bin/sh\nexport WATCHDOG_PID=$$\nexec " + buildFailpoints(t) + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dataDir: filepath.Join(dir, "data")}
	n.socket = filepath.Join(n.dataDir, "run", "zlayer-overlayd.sock")
	if netlab.Root() {
		lab, err := netlab.New(1, netlab.Options{Daemon: wrapper, Dir: filepath.Join(dir, "lab")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lab.Close() })
		nd := lab.Nodes[0]
		n.dataDir, n.socket, n.ns = nd.DataDir, nd.Socket, nd
	}
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := n.command("--log-level", "debug")
	if n.ns == nil {
		cmd = exec.Command(wrapper, cmd.Args[1:]...)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "WATCHDOG_") && !strings.HasPrefix(kv, "OVERLAYD_FAILPOINTS") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sdm.path, "WATCHDOG_USEC=600000", "OVERLAYD_FAILPOINTS_FILE="+fpFile)

	// At READY=1, at once: the socket file exists and a status is answered
	// on the first dial.
	type readyCheck struct {
		err  error
		took time.Duration
	}
	readyChecked := make(chan readyCheck, 1)
	sdm.mu.Lock()
	sdm.onReady = func() {
		start := time.Now()
		var rc readyCheck
		if _, err := os.Stat(n.socket); err != nil {
			rc.err = err
		} else if c, err := ipc.Dial(context.Background(), n.socket, ipc.DialOptions{Attempts: 1, CallTimeout: 10 * time.Second}); err != nil {
			rc.err = err
		} else {
			_, rc.err = c.Call(context.Background(), ipc.Status{})
			c.Close()
		}
		rc.took = time.Since(start)
		select {
		case readyChecked <- rc:
		default:
		}
	}
	sdm.mu.Unlock()

	f, err := os.OpenFile(n.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	})

	r := sdm.waitFor(t, "READY=1", 0, 60*time.Second, n.logs)
	rc := <-readyChecked
	if rc.err != nil {
		t.Fatalf("READY=1 arrived but the socket did not answer a status at once: %v\n%s", rc.err, n.logs())
	}
	t.Logf("a status dialled at READY=1 was answered in %v", rc.took.Round(time.Microsecond))
	msgs := sdm.all()
	if !msgs[r].has("STATUS=serving: *") {
		t.Errorf("READY=1 came with %q, want a STATUS=serving: line", msgs[r].lines)
	}
	var early []string
	for _, m := range msgs[:r] {
		for _, l := range m.lines {
			if !strings.HasPrefix(l, "STATUS=") {
				t.Errorf("%q before READY=1", l)
			}
			early = append(early, l)
		}
	}
	for _, want := range []string{"STATUS=starting\n", "STATUS=replaying: ", "STATUS=reconciling: "} {
		if !strings.Contains(strings.Join(early, "\n")+"\n", want) {
			t.Errorf("no %q before READY=1; got %q", want, early)
		}
	}

	// A decision changes the serving line: a new STATUS= follows.
	c := n.client()
	defer c.Close()
	before := len(sdm.all())
	call(t, c, ipc.RegisterDNS{Name: "watchdog.sysd.test", IP: ipc.AddrOf(mustAddr("10.99.0.1"))})
	st := sdm.waitFor(t, "STATUS=serving: *", before, 10*time.Second, n.logs)
	t.Logf("after a decision: %q", sdm.all()[st].lines)

	// Pings at about interval/3.
	from := time.Now()
	time.Sleep(3 * time.Second)
	pings := sdm.pings(from, time.Now())
	if len(pings) < 6 {
		t.Fatalf("%d WATCHDOG=1 in 3 s at WATCHDOG_USEC=600000; want about 15\n%s", len(pings), n.logs())
	}
	t.Logf("%d pings in 3 s", len(pings))

	// Block the sequencer for 3 s (the next job it takes: a probe or the
	// status below).
	if err := os.WriteFile(fpFile, []byte("daemon/sequencer=1*sleep(3000)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	armed := time.Now()
	start := time.Now()
	if _, err := c.Call(context.Background(), ipc.Status{}); err != nil {
		t.Fatalf("status through a stalled sequencer: %v", err)
	}
	t.Logf("a status sent after arming was answered in %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	end := time.Now()
	pings = sdm.pings(armed, end)
	if len(pings) < 2 {
		t.Fatalf("%d pings in the 6 s after arming; want them to resume after the stall\n%s", len(pings), n.logs())
	}
	var gap time.Duration
	var resumed time.Time
	prev := armed
	for _, p := range pings {
		if g := p.Sub(prev); g > gap {
			gap, resumed = g, p
		}
		prev = p
	}
	if gap < 2500*time.Millisecond {
		t.Fatalf("the longest gap between pings after the 3 s stall was armed is %v; want the stall (no ping for > %v)\n%s", gap, interval, n.logs())
	}
	if after := sdm.pings(resumed, end); len(after) < 2 {
		t.Fatalf("%d pings after the stall ended; want them to resume", len(after))
	}
	t.Logf("no ping for %v during the stall; %d pings after it", gap.Round(time.Millisecond), len(sdm.pings(resumed, end)))
	if logs := n.logs(); !strings.Contains(logs, "has not answered a probe") || !strings.Contains(logs, "answered again") {
		t.Errorf("the stall is not in the log:\n%s", logs)
	}

	// SIGTERM: STOPPING=1, then no ping.
	before = len(sdm.all())
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("daemon exited with %v\n%s", err, n.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not stop\n%s", n.logs())
	}
	s := sdm.waitFor(t, "STOPPING=1", before, 5*time.Second, n.logs)
	if p := sdm.pings(sdm.all()[s].at, time.Now().Add(time.Hour)); len(p) > 0 {
		t.Fatalf("%d pings after STOPPING=1", len(p))
	}
}

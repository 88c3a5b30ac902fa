package ipc

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childEnv selects what a re-executed test binary does instead of testing.
const childEnv = "IPC_TEST_CHILD"

// startChild re-executes the test binary (exe, or this one) running only
// test, with env added, and returns it with its stdout as lines. The child
// is killed at cleanup if it is still running.
func startChild(t *testing.T, exe, test string, attr *syscall.SysProcAttr, env ...string) (*exec.Cmd, *bufio.Scanner, io.WriteCloser, *strings.Builder) {
	t.Helper()
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = attr
	stderr := &strings.Builder{}
	cmd.Stderr = &lockedWriter{w: stderr}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, bufio.NewScanner(out), in, stderr
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// nextLine reads the child's next line, failing after d.
func nextLine(t *testing.T, sc *bufio.Scanner, d time.Duration) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		if sc.Scan() {
			got <- sc.Text()
		} else {
			got <- "EOF " + fmt.Sprint(sc.Err())
		}
	}()
	select {
	case l := <-got:
		return l
	case <-time.After(d):
		t.Fatalf("no line from the child in %v", d)
		return ""
	}
}

// A daemon out of descriptors (RLIMIT_NOFILE lowered in a child process)
// neither spins nor leaves connections hanging in the backlog: each one
// that arrives is accepted on the reserved descriptor, answered "out of
// file descriptors" and closed; the burst is logged once; once descriptors
// are free again, connections are served.
func TestDescriptorExhaustion(t *testing.T) {
	if os.Getenv(childEnv) == "emfile" {
		emfileChild()
		return
	}
	path := filepath.Join(testtemp.Dir(t), "s.sock")
	start := time.Now()
	cmd, lines, _, stderr := startChild(t, "", "TestDescriptorExhaustion", nil, childEnv+"=emfile", "IPC_TEST_SOCK="+path)
	if l := nextLine(t, lines, 20*time.Second); !strings.HasPrefix(l, "ready") {
		t.Fatalf("child: %q; stderr:\n%s", l, stderr)
	}
	var held []net.Conn
	refused := 0
	try := func() (admitted bool, c net.Conn) {
		t.Helper()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		WriteFrame(c, statusFrame(1)) // may fail: a refused connection is closed at once
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := ReadFrame(c, nil)
		if err != nil {
			t.Fatalf("no answer in 5 s (left in the backlog?): %v; %d held, %d refused; child:\n%s", err, len(held), refused, stderr)
		}
		f, err := DecodeFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		if msg, ok := isRefusal(f); ok {
			if msg != "out of file descriptors (too many open files); try again later" {
				t.Fatalf("refused with %q", msg)
			}
			c.Close()
			return false, nil
		}
		if f.ID != 1 {
			t.Fatalf("answered %+v", f)
		}
		return true, c
	}
	for i := 0; i < 60; i++ {
		t0 := time.Now()
		ok, c := try()
		if ok {
			if refused > 0 {
				t.Fatalf("connection %d admitted after %d refusals while every admitted one is held", i, refused)
			}
			held = append(held, c)
			continue
		}
		refused++
		if d := time.Since(t0); d > 3*time.Second {
			t.Fatalf("refusal %d took %v", refused, d)
		}
	}
	if len(held) == 0 || refused < 40 {
		t.Fatalf("%d admitted, %d refused", len(held), refused)
	}
	time.Sleep(time.Second) // idle at the limit: the accept loop must not spin
	for _, c := range held {
		c.Close()
	}
	var c net.Conn
	waitFor(t, 10*time.Second, "a connection served once descriptors are free", func() bool {
		ok, cc := try()
		c = cc
		return ok
	})
	WriteFrame(c, requestFrame(2, "shutdown"))
	readResp(t, c)
	l := nextLine(t, lines, 10*time.Second)
	var st Stats
	if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "stats ")), &st); err != nil {
		t.Fatalf("child: %q: %v", l, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr)
	}
	wall := time.Since(start)
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	logs := stderr.String()
	t.Logf("%d admitted, %d refused; child stats %+v; cpu %v over %v", len(held), refused, st, cpu, wall.Round(time.Millisecond))
	if st.RefusedNoDescriptors != uint64(refused) || st.AcceptErrors == 0 {
		t.Fatalf("child stats %+v after %d refusals", st, refused)
	}
	if n := strings.Count(logs, "accept failed"); n != 1 {
		t.Fatalf("%d accept warnings for one burst:\n%s", n, logs)
	}
	if n := strings.Count(logs, "accepting connections again"); n != 1 {
		t.Fatalf("%d summaries:\n%s", n, logs)
	}
	if cpu > wall/2 {
		t.Fatalf("child used %v of CPU in %v: spinning", cpu, wall)
	}
}

func emfileChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, err := Listen(os.Getenv("IPC_TEST_SOCK"))
	if err != nil {
		fail(err)
	}
	stop := make(chan struct{})
	var once sync.Once
	s := &Server{MaxConns: 100000, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Handler: func(_ Meta, r Request) <-chan Response {
			if _, ok := r.(Shutdown); ok {
				once.Do(func() { close(stop) })
			}
			return Reply(OK{})
		}}
	go s.Serve(l)
	for {
		s.reserveMu.Lock()
		held := s.reserve != nil
		s.reserveMu.Unlock()
		if held {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fail(err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fail(err)
	}
	rl.Cur = uint64(len(ents) + 8)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		fail(err)
	}
	fmt.Println("ready", rl.Cur)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.Drain(ctx) // the shutdown's answer goes out
	cancel()
	b, _ := json.Marshal(s.Stats())
	fmt.Println("stats " + string(b))
	os.Exit(0)
}

// Peers that are not root cannot take the slots kept for root, even with
// connections that complete frames: a real uid-65534 process (this test
// binary, re-executed) holds its share, is refused beyond it, and root
// still gets in.
func TestRootReserveAgainstNonRootPeers(t *testing.T) {
	if os.Getenv(childEnv) == "dial" {
		dialChild()
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: connects as uid 65534 to check the slots kept for root")
	}
	dir, err := os.MkdirTemp("", "ipc-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "ipc.test")
	if err := copyFile(self, exe); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	uids := map[uint32]int{}
	s := &Server{MaxConns: 6, ReservedForRoot: 2, Log: slog.New(&logRecorder{}), Handler: func(m Meta, r Request) <-chan Response {
		mu.Lock()
		uids[m.Peer.UID]++
		mu.Unlock()
		return Reply(OK{})
	}}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	_, lines, stdin, stderr := startChild(t, exe, "TestRootReserveAgainstNonRootPeers",
		&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}},
		childEnv+"=dial", "IPC_TEST_SOCK="+path, "IPC_TEST_N=6")
	for i := 0; i < 6; i++ {
		l := nextLine(t, lines, 20*time.Second)
		want := "served"
		if i >= 4 {
			want = "refused: too many connections from non-root peers: 4 open (limit 4; 2 more are kept for root); try again later"
		}
		if l != want {
			t.Fatalf("non-root connection %d: %q, want %q; stderr:\n%s", i, l, want, stderr)
		}
	}
	for i := 0; i < 2; i++ {
		if f := roundTrip(t, rawConn(t, path), 5); f.ID != 5 {
			t.Fatalf("root connection %d in the reserve: %+v", i, f)
		}
	}
	if msg, ok := isRefusal(readResp(t, rawConn(t, path))); !ok || !strings.HasPrefix(msg, "too many connections: 6 open (limit 6)") {
		t.Fatalf("root beyond the limit: %q", msg)
	}
	mu.Lock()
	if uids[65534] != 4 || uids[0] != 2 {
		t.Fatalf("requests by uid: %v", uids)
	}
	mu.Unlock()
	stdin.Close()
}

// dialChild opens IPC_TEST_N connections, sends each a status request and
// prints "served" or "refused: <message>", then holds them until stdin
// closes.
func dialChild() {
	n, _ := strconv.Atoi(os.Getenv("IPC_TEST_N"))
	var held []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("unix", os.Getenv("IPC_TEST_SOCK"))
		if err != nil {
			fmt.Println("dial:", err)
			continue
		}
		held = append(held, c)
		WriteFrame(c, statusFrame(1))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := ReadFrame(c, nil)
		if err != nil {
			fmt.Println("read:", err)
			continue
		}
		f, err := DecodeFrame(b)
		if err != nil {
			fmt.Println("decode:", err)
			continue
		}
		if msg, ok := isRefusal(f); ok {
			fmt.Println("refused: " + msg)
			continue
		}
		fmt.Println("served")
	}
	io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
	os.Exit(0)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

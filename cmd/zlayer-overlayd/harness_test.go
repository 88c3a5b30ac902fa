//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
	"github.com/zlayer/overlayd/tools/netlab"
)

var daemonBin, ctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "overlayd-bin-")
	if err != nil {
		panic(err)
	}
	daemonBin = filepath.Join(dir, "zlayer-overlayd")
	ctlBin = filepath.Join(dir, "overlayctl")
	for bin, pkg := range map[string]string{daemonBin: ".", ctlBin: "../overlayctl"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one daemon process under test. As root it runs in a network
// namespace of its own (a one-node netlab), so that its WireGuard device and
// routes never touch the machine's namespace; otherwise it runs directly
// and its effects fail (logged), which these tests of the journal and the
// protocol do not depend on.
type node struct {
	t       *testing.T
	dataDir string
	socket  string
	cmd     *exec.Cmd
	log     *os.File
	logPath string // default: daemon.log in the data dir
	logFrom int64  // the log's size when the daemon last started
	exited  chan error
	args    []string
	ns      *netlab.Node // nil when not root
}

func newNode(t *testing.T, args ...string) *node {
	t.Helper()
	if netlab.Root() {
		lab, err := netlab.New(1, netlab.Options{Daemon: daemonBin, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lab.Close() })
		nd := lab.Nodes[0]
		return &node{t: t, dataDir: nd.DataDir, socket: nd.Socket, args: args, ns: nd}
	}
	dir := t.TempDir()
	return &node{t: t, dataDir: dir, socket: filepath.Join(dir, "run", "zlayer-overlayd.sock"), args: args}
}

// start launches the daemon and waits until it answers status.
func (n *node) start() {
	n.t.Helper()
	if err := n.startNoWait(); err != nil {
		n.t.Fatal(err)
	}
	c := n.client()
	defer c.Close()
	if _, err := c.Call(context.Background(), ipc.Status{}); err != nil {
		n.t.Fatalf("daemon not answering: %v\n%s", err, n.logs())
	}
}

// startNoWait launches the daemon. One goroutine waits for the process and
// reports its exit on n.exited; nothing else touches the exec.Cmd's
// ProcessState, which that wait writes. At cleanup a daemon still running
// is killed and reaped.
func (n *node) startNoWait() error {
	cmd := n.command(append([]string{"--log-level", "debug"}, n.args...)...)
	f, err := os.OpenFile(n.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	n.cmd, n.log, n.logFrom = cmd, f, fi.Size()
	exited, done := make(chan error, 1), make(chan struct{})
	n.exited = exited
	go func() {
		exited <- cmd.Wait()
		close(done)
	}()
	t := n.t
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("daemon %d did not exit after SIGKILL", cmd.Process.Pid)
			}
		}
		f.Close()
	})
	return nil
}

// wait waits for the daemon to exit by itself and returns its exit error.
func (n *node) wait(timeout time.Duration) error {
	n.t.Helper()
	select {
	case err := <-n.exited:
		return err
	case <-time.After(timeout):
		n.t.Fatalf("daemon still runs after %v\n%s", timeout, n.logs())
		return nil
	}
}

func (n *node) logFile() string {
	if n.logPath != "" {
		return n.logPath
	}
	return filepath.Join(n.dataDir, "daemon.log")
}

// command is the daemon command for this node: in its namespace as root.
func (n *node) command(args ...string) *exec.Cmd {
	args = append([]string{"--data-dir", n.dataDir}, args...)
	if n.ns != nil {
		return n.ns.DaemonCommand(args...)
	}
	return exec.Command(daemonBin, args...)
}

// logs returns the end of the daemon's log (of every start), for failure
// messages.
func (n *node) logs() string {
	b, _ := os.ReadFile(n.logFile())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// fullLog returns the daemon's whole log, of every start.
func (n *node) fullLog() string {
	n.t.Helper()
	b, err := os.ReadFile(n.logFile())
	if err != nil {
		n.t.Fatal(err)
	}
	return string(b)
}

// logSinceStart returns what the daemon logged since it last started: what
// a check of one boot must look at, since every start appends to the file.
func (n *node) logSinceStart() string {
	n.t.Helper()
	b, err := os.ReadFile(n.logFile())
	if err != nil {
		n.t.Fatal(err)
	}
	if int64(len(b)) < n.logFrom {
		n.t.Fatalf("%s shrank below %d bytes", n.logFile(), n.logFrom)
	}
	return string(b[n.logFrom:])
}

func (n *node) client() *ipc.Client {
	n.t.Helper()
	c, err := ipc.Dial(context.Background(), n.socket, ipc.DialOptions{Attempts: 60, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, CallTimeout: 20 * time.Second})
	if err != nil {
		n.t.Fatalf("dial: %v\n%s", err, n.logs())
	}
	return c
}

// kill9 kills the daemon with SIGKILL and waits for it.
func (n *node) kill9() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		n.t.Fatalf("kill -9: %v", err)
	}
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		n.t.Fatalf("daemon did not exit after SIGKILL")
	}
	n.log.Close()
}

// stop sends SIGTERM and expects a clean exit.
func (n *node) stop() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-n.exited:
		if err != nil {
			n.t.Fatalf("daemon exited with %v\n%s", err, n.logs())
		}
	case <-time.After(20 * time.Second):
		n.t.Fatalf("daemon did not stop\n%s", n.logs())
	}
	n.log.Close()
}

// ctl runs overlayctl against the node and returns stdout.
func (n *node) ctl(args ...string) (string, error) {
	cmd := exec.Command(ctlBin, append([]string{"--data-dir", n.dataDir}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("overlayctl %v: %v: %s", args, err, errb.String())
	}
	return out.String(), nil
}

func (n *node) mustCtl(args ...string) string {
	n.t.Helper()
	out, err := n.ctl(args...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

func (n *node) state() *projections.State {
	n.t.Helper()
	st, err := projections.ParseCanonicalJSON([]byte(n.mustCtl("state", "-o", "json")))
	if err != nil {
		n.t.Fatal(err)
	}
	return st
}

func call(t *testing.T, c *ipc.Client, req ipc.Request) ipc.Response {
	t.Helper()
	r, err := c.Call(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", req.Op(), err)
	}
	return r
}

func callErr(t *testing.T, c *ipc.Client, req ipc.Request) string {
	t.Helper()
	r, err := c.Call(context.Background(), req)
	if err == nil {
		t.Fatalf("%s succeeded (%+v), want an error", req.Op(), r)
	}
	return err.Error()
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func strp(s string) *string { return &s }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// sleeper starts a process to stand for a container: as root, in a network
// namespace of its own, which its death removes (and with it anything the
// daemon wired into it).
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if netlab.Root() {
		cmd = exec.Command("unshare", "--net", "sleep", "600")
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

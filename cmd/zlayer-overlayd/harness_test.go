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

func (n *node) startNoWait() error {
	n.cmd = n.command(append([]string{"--log-level", "debug"}, n.args...)...)
	f, err := os.OpenFile(filepath.Join(n.dataDir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	n.log = f
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan error, 1)
	cmd := n.cmd
	go func() { n.exited <- cmd.Wait() }()
	n.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return nil
}

// command is the daemon command for this node: in its namespace as root.
func (n *node) command(args ...string) *exec.Cmd {
	args = append([]string{"--data-dir", n.dataDir}, args...)
	if n.ns != nil {
		return n.ns.DaemonCommand(args...)
	}
	return exec.Command(daemonBin, args...)
}

func (n *node) logs() string {
	b, _ := os.ReadFile(filepath.Join(n.dataDir, "daemon.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
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
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.log.Close()
}

// stop sends SIGTERM and expects a clean exit.
func (n *node) stop() {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
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

//go:build linux

// Package netlab builds a cluster of overlayd nodes on one machine: each
// node is a network namespace with its own daemon (own data dir, socket
// and a private /run/wireguard), and the nodes reach each other over an
// underlay bridge that lives in a namespace of its own. Nothing is created
// in the root namespace; Close removes everything, by the exact names it
// created. The tests, the demo (`go run ./tools/netlab demo`) and the
// benchmarks share it.
package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// Lab is a set of node namespaces joined by an underlay bridge.
type Lab struct {
	Name     string // prefix of every namespace and link name
	Dir      string // holds the nodes' data dirs and logs
	Daemon   string // path of the zlayer-overlayd binary
	Cluster  string // cluster CIDR Setup uses (default 10.200.0.0/16)
	Nodes    []*Node
	underlay string // namespace of the bridge

	mu         sync.Mutex
	closed     bool
	created    []string // namespaces, in creation order
	containers []*Container
}

// Node is one namespace of the lab and its daemon.
type Node struct {
	Lab      *Lab
	Index    int
	NS       string
	Underlay netip.Addr // the node's address on the underlay
	DataDir  string
	Socket   string
	// Args are extra daemon flags, used by Start.
	Args []string
	// Env is added to the daemon's environment (failpoints in tests).
	Env []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	dead   chan struct{} // closed once cmd has exited
	logf   *os.File
}

// runningLocked reports whether the daemon runs (n.mu held). It never reads
// cmd.ProcessState, which the goroutine waiting on cmd writes.
func (n *Node) runningLocked() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.dead:
		return false
	default:
		return true
	}
}

// Options tune New.
type Options struct {
	// Daemon is the zlayer-overlayd binary (required).
	Daemon string
	// Dir holds data dirs and logs (default: a new temporary directory).
	Dir string
}

// Root reports whether the process can build a lab.
func Root() bool { return os.Geteuid() == 0 }

// New creates n node namespaces joined by an underlay bridge. Node i has
// underlay address 172.31.0.(10+i)/24 on interface ul0.
func New(n int, opt Options) (*Lab, error) {
	if !Root() {
		return nil, errors.New("netlab: network namespaces need root")
	}
	if opt.Daemon == "" {
		return nil, errors.New("netlab: Options.Daemon is required")
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	l := &Lab{Name: "ovl" + hex.EncodeToString(rnd[:]), Daemon: opt.Daemon, Dir: opt.Dir}
	if l.Dir == "" {
		d, err := os.MkdirTemp("", "netlab-")
		if err != nil {
			return nil, err
		}
		l.Dir = d
	}
	l.underlay = l.Name + "-ul"
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	if err := l.addNS(l.underlay); err != nil {
		return nil, err
	}
	if err := l.run("ip", "netns", "exec", l.underlay, "ip", "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := l.run("ip", "netns", "exec", l.underlay, "ip", "link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		if _, err := l.AddNode(); err != nil {
			return nil, err
		}
	}
	ok = true
	return l, nil
}

// AddNode adds one more node namespace to the lab.
func (l *Lab) AddNode() (*Node, error) {
	i := len(l.Nodes)
	nd := &Node{Lab: l, Index: i, NS: fmt.Sprintf("%s-n%d", l.Name, i),
		Underlay: netip.AddrFrom4([4]byte{172, 31, 0, byte(10 + i)})}
	nd.DataDir = filepath.Join(l.Dir, fmt.Sprintf("node%d", i))
	nd.Socket = filepath.Join(nd.DataDir, "run", "zlayer-overlayd.sock")
	if err := os.MkdirAll(nd.DataDir, 0o700); err != nil {
		return nil, err
	}
	if err := l.addNS(nd.NS); err != nil {
		return nil, err
	}
	veth := fmt.Sprintf("v%d", i)
	steps := [][]string{
		{"ip", "netns", "exec", l.underlay, "ip", "link", "add", veth, "type", "veth", "peer", "name", "ul0", "netns", nd.NS},
		{"ip", "netns", "exec", l.underlay, "ip", "link", "set", veth, "master", "br0", "up"},
		{"ip", "netns", "exec", nd.NS, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", nd.NS, "ip", "addr", "add", nd.Underlay.String() + "/24", "dev", "ul0"},
		{"ip", "netns", "exec", nd.NS, "ip", "link", "set", "ul0", "up"},
	}
	for _, s := range steps {
		if err := l.run(s...); err != nil {
			return nil, err
		}
	}
	l.Nodes = append(l.Nodes, nd)
	return nd, nil
}

func (l *Lab) addNS(name string) error {
	if err := l.run("ip", "netns", "add", name); err != nil {
		return err
	}
	l.mu.Lock()
	l.created = append(l.created, name)
	l.mu.Unlock()
	return nil
}

func (l *Lab) run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close stops every daemon and deletes every namespace the lab created
// (their links go with them). It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	names := append([]string(nil), l.created...)
	containers := append([]*Container(nil), l.containers...)
	l.mu.Unlock()
	for _, nd := range l.Nodes {
		nd.Kill9()
	}
	for _, c := range containers {
		c.Kill()
	}
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		if err := l.run("ip", "netns", "delete", names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if os.Getenv("NETLAB_KEEP") == "" {
		os.RemoveAll(l.Dir)
	}
	return errors.Join(errs...)
}

// Command returns a command that runs args inside the node's namespace.
func (n *Node) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS}, args...)...)
}

// Run runs args inside the node's namespace and returns its output.
func (n *Node) Run(ctx context.Context, args ...string) (string, error) {
	out, err := n.Command(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %v: %s", strings.Join(args, " "), n.NS, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// DaemonCommand is the command that runs the daemon as node n: in the
// node's namespace, in a private mount namespace with its own
// /run/wireguard (so that devices of the same name on several nodes do not
// fight over one UAPI socket), with the node's data dir and socket.
func (n *Node) DaemonCommand(args ...string) *exec.Cmd {
	base := []string{"--data-dir", n.DataDir, "--socket", n.Socket, "--advertise-address", n.Underlay.String()}
	script := `mkdir -p /run/wireguard && mount -t tmpfs netlab-wg /run/wireguard && exec "$0" "$@"`
	full := append([]string{"netns", "exec", n.NS, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, n.Lab.Daemon}, base...)
	return exec.Command("ip", append(full, args...)...)
}

// Start starts the node's daemon (with n.Args) and waits until it answers.
func (n *Node) Start() error {
	n.mu.Lock()
	if n.runningLocked() {
		n.mu.Unlock()
		return fmt.Errorf("netlab: node %d already runs", n.Index)
	}
	cmd := n.DaemonCommand(n.Args...)
	if len(n.Env) > 0 {
		cmd.Env = append(os.Environ(), n.Env...)
	}
	f, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.mu.Unlock()
		return err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		f.Close()
		return err
	}
	exited, dead := make(chan error, 1), make(chan struct{})
	go func() { err := cmd.Wait(); f.Close(); close(dead); exited <- err }()
	n.cmd, n.exited, n.dead, n.logf = cmd, exited, dead, f
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := ipc.Dial(ctx, n.Socket, ipc.DialOptions{})
		if err == nil {
			_, err = c.Call(ctx, ipc.Status{})
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("netlab: node %d daemon exited (%v):\n%s", n.Index, err, n.Logs())
		case <-ctx.Done():
			return fmt.Errorf("netlab: node %d daemon does not answer:\n%s", n.Index, n.Logs())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Wait waits up to timeout for the daemon to exit on its own and returns
// its exit error.
func (n *Node) Wait(timeout time.Duration) error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return errors.New("netlab: the daemon was never started")
	}
	select {
	case err := <-exited:
		exited <- err
		return err
	case <-time.After(timeout):
		return fmt.Errorf("netlab: node %d's daemon still runs after %v", n.Index, timeout)
	}
}

// PID is the daemon's process id (0 when it does not run).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Kill9 kills the daemon with SIGKILL and waits for it.
func (n *Node) Kill9() {
	n.signal(syscall.SIGKILL)
}

// Stop sends SIGTERM and waits for the daemon to exit; it returns its
// exit error.
func (n *Node) Stop() error { return n.signal(syscall.SIGTERM) }

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	cmd, exited, running := n.cmd, n.exited, n.runningLocked()
	n.mu.Unlock()
	if !running {
		return nil
	}
	cmd.Process.Signal(sig)
	select {
	case err := <-exited:
		exited <- err
		return err
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("netlab: node %d did not stop", n.Index)
	}
}

// LogPath is the daemon's log file (all starts appended).
func (n *Node) LogPath() string { return filepath.Join(n.DataDir, "daemon.log") }

// Logs returns the end of the daemon's log.
func (n *Node) Logs() string {
	b, _ := os.ReadFile(n.LogPath())
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// Client connects to the node's daemon.
func (n *Node) Client(events chan<- ipc.Event) (*ipc.Client, error) {
	return ipc.Dial(context.Background(), n.Socket, ipc.DialOptions{Attempts: 50, Backoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, CallTimeout: 30 * time.Second, Events: events})
}

// WG runs wireguard-tools' wg as the daemon sees it: in the node's network
// namespace and the daemon's mount namespace (its /run/wireguard).
func (n *Node) WG(ctx context.Context, args ...string) (string, error) {
	pid := n.PID()
	if pid == 0 {
		return "", fmt.Errorf("netlab: node %d runs no daemon", n.Index)
	}
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"-t", fmt.Sprint(pid), "-m", "-n", "wg"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("wg %s on node %d: %v: %s", strings.Join(args, " "), n.Index, err, out)
	}
	return string(out), nil
}

//go:build linux

package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is a namespace on the underlay that is not a node: it plays the
// internet (or an upstream resolver) in tests. It has only its /24 on the
// underlay: no route into the overlay.
type Host struct {
	NS   string
	Addr netip.Addr
}

// AddHost adds a host with address addr/24 on the underlay bridge.
func (l *Lab) AddHost(addr netip.Addr) (*Host, error) {
	l.mu.Lock()
	n := len(l.created)
	l.mu.Unlock()
	h := &Host{NS: fmt.Sprintf("%s-h%d", l.Name, n), Addr: addr}
	if err := l.addNS(h.NS); err != nil {
		return nil, err
	}
	veth := fmt.Sprintf("h%d", n)
	for _, s := range [][]string{
		{"ip", "netns", "exec", l.underlay, "ip", "link", "add", veth, "type", "veth", "peer", "name", "ul0", "netns", h.NS},
		{"ip", "netns", "exec", l.underlay, "ip", "link", "set", veth, "master", "br0", "up"},
		{"ip", "netns", "exec", h.NS, "ip", "link", "set", "lo", "up"},
		{"ip", "netns", "exec", h.NS, "ip", "addr", "add", addr.String() + "/24", "dev", "ul0"},
		{"ip", "netns", "exec", h.NS, "ip", "link", "set", "ul0", "up"},
	} {
		if err := l.run(s...); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Run runs args inside the host's namespace.
func (h *Host) Run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %v: %s", strings.Join(args, " "), h.NS, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// NetnsPath is the host's namespace file.
func (h *Host) NetnsPath() string { return "/run/netns/" + h.NS }

// NetnsPath is the node's namespace file.
func (n *Node) NetnsPath() string { return "/run/netns/" + n.NS }

// NetnsPath is the container's namespace file.
func (c *Container) NetnsPath() string { return fmt.Sprintf("/proc/%d/ns/net", c.PID) }

// InNetns runs fn on an OS thread that has joined the network namespace at
// path; sockets fn opens belong to that namespace for good. The thread
// goes back to its namespace afterwards (or dies with the goroutine if it
// cannot).
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- ferr // leave the thread locked: it exits with us
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

//go:build linux

package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

var daemonBin, daemonFPBin, ctlBin, guestBin, stormBin string

func TestMain(m *testing.M) {
	if !Root() {
		fmt.Println("netlab tests need root (network namespaces, TUN devices): skipping")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "netlab-test-bin-")
	if err != nil {
		panic(err)
	}
	daemonBin = filepath.Join(dir, "zlayer-overlayd")
	guestBin = filepath.Join(dir, "wgguest")
	stormBin = filepath.Join(dir, "stormclient")
	ctlBin = filepath.Join(dir, "overlayctl")
	for bin, pkg := range map[string]string{daemonBin: "../../cmd/zlayer-overlayd", guestBin: "./cmd/wgguest", stormBin: "./cmd/stormclient", ctlBin: "../../cmd/overlayctl"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	daemonFPBin = filepath.Join(dir, "zlayer-overlayd-failpoints")
	if out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", daemonFPBin, "../../cmd/zlayer-overlayd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the daemon with failpoints: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newLab builds an n-node lab that the test always tears down.
func newLab(t *testing.T, n int, daemonArgs ...string) *Lab {
	t.Helper()
	if !Root() {
		t.Skip("needs root: network namespaces and TUN devices")
	}
	l, err := New(n, Options{Daemon: daemonBin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range l.Nodes {
				t.Logf("node %d log:\n%s", nd.Index, nd.Logs())
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, nd := range l.Nodes {
		nd.Args = append([]string{"--log-level", "debug"}, daemonArgs...)
	}
	return l
}

// setUpNode starts a one-node lab with daemonArgs, its global overlay set
// up, and a client of it.
func setUpNode(t *testing.T, daemonArgs ...string) (*Lab, *Node, *ipc.Client) {
	t.Helper()
	l := newLab(t, 1, daemonArgs...)
	nd := l.Nodes[0]
	if err := nd.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, nd, nil)
	if _, err := nd.Setup(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return l, nd, c
}

// newContainer starts a container process in the lab or fails the test.
func newContainer(t *testing.T, l *Lab) *Container {
	t.Helper()
	ctr, err := l.NewContainer()
	if err != nil {
		t.Fatal(err)
	}
	return ctr
}

func client(t *testing.T, nd *Node, events chan<- ipc.Event) *ipc.Client {
	t.Helper()
	c, err := nd.Client(events)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func call(t *testing.T, c *ipc.Client, req ipc.Request) ipc.Response {
	t.Helper()
	r, err := c.Call(context.Background(), req)
	if err != nil {
		t.Fatalf("%s: %v", req.Op(), err)
	}
	return r
}

func status(t *testing.T, c *ipc.Client) ipc.StatusResult {
	t.Helper()
	return call(t, c, ipc.Status{}).(ipc.StatusResult)
}

var lossRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// ping runs ping in a node and returns sent and received counts.
func ping(t *testing.T, nd *Node, args ...string) (sent, recv int, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ = nd.Run(ctx, append([]string{"ping", "-n"}, args...)...)
	m := lossRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ping %v from node %d: no summary:\n%s", args, nd.Index, out)
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ = strconv.Atoi(m[2])
	return sent, recv, out
}

// mustPing expects every one of count pings to be answered.
func mustPing(t *testing.T, nd *Node, target string, count int) {
	t.Helper()
	sent, recv, out := ping(t, nd, "-c", strconv.Itoa(count), "-i", "0.05", "-W", "2", target)
	if recv != sent {
		t.Fatalf("node %d -> %s: %d of %d answered\n%s", nd.Index, target, recv, sent, out)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func routesProto79(t *testing.T, nd *Node) string {
	t.Helper()
	out, err := nd.Run(context.Background(), "ip", "route", "show", "proto", "79")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hasLine(s, sub string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

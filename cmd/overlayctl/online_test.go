package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
	"github.com/zlayer/overlayd/ipc"
)

// liveDaemon runs a daemon in this process (no data plane) on dataDir,
// serving sock; stop stops it and waits.
func liveDaemon(t *testing.T, dataDir, sock string) (stop func()) {
	t.Helper()
	_, stop = liveDaemonCfg(t, daemon.Config{DataDir: dataDir}, sock)
	return stop
}

// liveDaemonCfg is liveDaemon with a configuration (Log and NoDataPlane
// are set here).
func liveDaemonCfg(t *testing.T, cfg daemon.Config, sock string) (*daemon.Daemon, func()) {
	t.Helper()
	cfg.Log, cfg.NoDataPlane = slog.New(slog.DiscardHandler), true
	d, err := daemon.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		d.Stop()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.ServeListener(l) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		d.Stop()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("daemon did not stop")
		}
	}
	t.Cleanup(stop)
	return d, stop
}

// ctlSock runs overlayctl with --socket.
func ctlSock(t *testing.T, dataDir, sock string, args ...string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	code := run(append([]string{"--data-dir", dataDir, "--socket", sock}, args...), &o, &e)
	return code, o.String(), e.String()
}

// Online the views read the daemon and say so; what they show of the
// state is what the same views show offline once the daemon has stopped,
// row for row; peers have their live columns filled online only.
func TestViewsOnlineEqualOffline(t *testing.T) {
	data := t.TempDir()
	sock := filepath.Join(data, "d.sock")
	stop := liveDaemon(t, data, sock)
	c, err := ipc.Dial(context.Background(), sock, ipc.DialOptions{Attempts: 20, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, r := range []ipc.Request{
		ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: &fixSlice, WgPort: 51820},
		ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared},
		ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: fixPeerA, Endpoint: "192.0.2.10:51820", AllowedIPs: "10.200.4.0/24"}},
		ipc.AllocateIP{Service: "web"},
		ipc.RegisterDNS{Name: "api.web.prod.local", IP: ipc.AddrOf(netip.MustParseAddr("10.200.3.7"))},
	} {
		if _, err := c.Call(ctx, r); err != nil {
			t.Fatalf("%T: %v", r, err)
		}
	}
	views := [][]string{{"ipam"}, {"ipam", "--addresses"}, {"services"}, {"attachments"}, {"dns"}, {"peers", "-o", "jsonl"}}
	online := map[string]string{}
	for _, v := range append(views, []string{"status"}, []string{"peers"}) {
		code, out, errs := ctlSock(t, data, sock, v...)
		if code != 0 {
			t.Fatalf("%v online: exit %d: %s", v, code, errs)
		}
		online[strings.Join(v, " ")] = out
	}
	for _, v := range []string{"status", "peers", "dns"} {
		if !strings.Contains(online[v], "source") || !strings.Contains(online[v], "live daemon (socket "+sock+")") || strings.Contains(online[v], "offline") {
			t.Errorf("%s online does not say it is live:\n%s", v, online[v])
		}
	}
	if !strings.Contains(online["status"], "journal:      writable") || !strings.Contains(online["status"], "problems:") {
		t.Errorf("status online lacks the live fields:\n%s", online["status"])
	}
	if !strings.Contains(online["peers"], "never") {
		t.Errorf("peers online: the handshake column is not live:\n%s", online["peers"])
	}
	t.Logf("online:\n%s\n%s", online["status"], online["peers"])
	stop()
	for _, v := range views {
		code, out, errs := ctlSock(t, data, sock, v...)
		if code != 0 {
			t.Fatalf("%v offline: exit %d: %s", v, code, errs)
		}
		if !strings.Contains(out, "(offline)") && v[len(v)-1] != "jsonl" {
			t.Errorf("%v offline does not say so:\n%s", v, out)
		}
		on, off := dropSource(online[strings.Join(v, " ")]), dropSource(out)
		if v[0] == "peers" { // the live columns differ, the rest must not
			on = strings.ReplaceAll(on, `"live":true`, `"live":false`)
		}
		if on != off {
			t.Errorf("%v: online and offline differ:\n%s\n--- offline\n%s", v, on, off)
		}
	}
}

// dropSource removes the "source: …" line of a table.
func dropSource(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "source: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// fixSlice is the node slice of the tests' live daemons: a derived one
// depends on the node's random key and may be the one a test peer's
// allowed IPs name.
var fixSlice = "10.200.0.0/24"

//go:build linux

package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

// secretForms are the ways a private key could be written: base64 with
// and without padding, URL-safe base64, hex in both cases.
func secretForms(k wgtypes.Key) []string {
	b := k[:]
	return []string{
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
	}
}

// A full scenario with the data plane, the daemon at --log-level debug in
// each log format: no line of its log (nor overlayctl's journal export or
// state) holds any private key it was given or generated (the node's
// imported key, a dedicated device's, a guest's returned once, the test's
// peers'); in json every line parses and a decision line carries op,
// caller, result and duration.
func TestNoSecretsInLogs(t *testing.T) {
	if !netlab.Root() {
		t.Skip("needs root: the data plane runs in a network namespace")
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) { noSecretsScenario(t, format) })
	}
}

func noSecretsScenario(t *testing.T, format string) {
	var secrets []wgtypes.Key
	gen := func() wgtypes.Key {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, k)
		return k
	}
	nodeKey := gen()
	keyFile := filepath.Join(t.TempDir(), "node.key")
	if err := os.WriteFile(keyFile, []byte(nodeKey.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, "--wg-private-key-file", keyFile, "--log-format", format, "--reconcile-interval", "500ms")
	n.start()
	c := n.client()
	ctr := sleeper(t)

	call(t, c, ipc.SetLocalNodeID{NodeID: 3})
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "9", ClusterCIDR: "10.200.0.0/16", WgPort: 51820, NatEnabled: true})
	call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	db := call(t, c, ipc.SetupServiceOverlay{Service: "db", Mode: ipc.ModeDedicated}).(ipc.ServiceOverlay)
	// The dedicated device's private key, as the daemon stored it.
	b, _ := base64.StdEncoding.DecodeString(*db.WgPublicKey)
	dbKeyFile := filepath.Join(n.dataDir, "overlayd", "keys", hex.EncodeToString(b)+".key")
	raw, err := os.ReadFile(dbKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	dbKey, err := wgtypes.ParseKey(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, dbKey)

	gc := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-1"}, Service: "web", JoinGlobal: true}).(ipc.GuestConfig)
	guestKey, err := wgtypes.ParseKey(gc.PrivateKey)
	if err != nil {
		t.Fatalf("guest private key: %v", err)
	}
	secrets = append(secrets, guestKey)
	call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr.Process.Pid)}, Service: "web", JoinGlobal: true})
	// Peers the test holds the private keys of; their endpoints are in
	// TEST-NET-1, unreachable from the node's namespace, so wireguard-go's
	// handshake failures are logged too.
	for i := range 3 {
		p := gen()
		call(t, c, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: p.PublicKey().String(), Endpoint: fmt.Sprintf("192.0.2.%d:51820", 10+i),
			AllowedIPs: fmt.Sprintf("10.201.%d.0/24", i), PersistentKeepaliveSecs: 25}})
	}
	dp := gen()
	call(t, c, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: dp.PublicKey().String(), Endpoint: "192.0.2.20:51821", AllowedIPs: "10.202.0.0/24"},
		Scope: &ipc.PeerScope{Service: "db"}})
	call(t, c, ipc.RegisterDNS{Name: "web.prod.overlay.local", IP: ipc.AddrOf(netip.MustParseAddr("10.200.0.5"))})
	call(t, c, ipc.NatTick{})
	call(t, c, ipc.Status{})
	call(t, c, ipc.RemovePeer{Pubkey: dp.PublicKey().String(), Scope: &ipc.PeerScope{Service: "db"}})
	call(t, c, ipc.TeardownServiceOverlay{Service: "db"})
	if _, err := os.Stat(dbKeyFile); !os.IsNotExist(err) {
		t.Fatalf("the dedicated key file outlived the teardown: %v", err)
	}
	c.Close()
	n.stop()
	n.start()
	c = n.client()
	call(t, c, ipc.Status{})
	if _, err := os.Stat(dbKeyFile); !os.IsNotExist(err) {
		t.Fatalf("the dedicated key file came back after a restart: %v", err)
	}
	export := n.mustCtl("journal", "export")
	state := n.mustCtl("state", "-o", "json")
	c.Close()
	n.stop()

	log := n.fullLog()
	if !strings.Contains(log, "decision") {
		t.Fatalf("no decision lines in the log:\n%s", n.logs())
	}
	for what, text := range map[string]string{"the daemon's log": log, "journal export": export, "state": state} {
		for _, k := range secrets {
			for _, form := range secretForms(k) {
				if i := strings.Index(text, form); i >= 0 {
					line := text[strings.LastIndexByte(text[:i], '\n')+1:]
					if j := strings.IndexByte(line, '\n'); j >= 0 {
						line = line[:j]
					}
					t.Errorf("a private key (public %s) is in %s: %s", k.PublicKey(), what, line)
				}
			}
		}
	}
	if os.Getenv("OVERLAYD_TEST_SHOW_LOG") != "" {
		t.Log(log)
	}
	lines := strings.Split(strings.TrimSpace(log), "\n")
	t.Logf("%d log lines searched for %d private keys in %d forms", len(lines), len(secrets), len(secretForms(nodeKey)))
	var decisions int
	for _, line := range lines {
		switch format {
		case "json":
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("a log line is not JSON: %q: %v", line, err)
			}
			if m["msg"] != "decision" || m["op"] != "add_peer" {
				continue
			}
			decisions++
			for _, k := range []string{"time", "level", "op", "request_id", "uid", "pid", "exe", "result", "took"} {
				if _, ok := m[k]; !ok {
					t.Errorf("decision line without %s: %s", k, line)
				}
			}
			if m["level"] != "INFO" || m["result"] != "ok" || m["uid"] != float64(0) {
				t.Errorf("decision line: %s", line)
			}
		case "text":
			if strings.Contains(line, "msg=decision op=add_peer ") {
				decisions++
				for _, k := range []string{"level=INFO", "request_id=", "uid=0", "pid=", "exe=", "result=ok", "took="} {
					if !strings.Contains(line, k) {
						t.Errorf("decision line without %s: %s", k, line)
					}
				}
			}
		}
	}
	if decisions != 4 {
		t.Errorf("%d decision lines for 4 add_peer", decisions)
	}
	if !strings.Contains(log, "Failed to send handshake initiation") {
		t.Logf("wireguard-go logged no handshake failure in this run")
	}
}

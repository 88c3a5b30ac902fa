package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// The node key is generated once into a 0600 file, survives restarts, can
// be imported, and its private half never reaches the journal, logs,
// status or overlayctl.
func TestNodeIdentity(t *testing.T) {
	n := newNode(t)
	n.start()
	c := n.client()
	pub := *call(t, c, ipc.Status{}).(ipc.StatusResult).PublicKey
	call(t, c, ipc.SetLocalWgPubkey{Pubkey: keyA})
	st := call(t, c, ipc.Status{}).(ipc.StatusResult)
	if *st.PublicKey != pub {
		t.Fatalf("status reports %s after set_local_wg_pubkey, want the daemon's own %s", *st.PublicKey, pub)
	}
	c.Close()
	keyPath := filepath.Join(n.dataDir, "overlayd", "wg-private.key")
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	raw, _ := os.ReadFile(keyPath)
	priv, err := wgtypes.ParseKey(strings.TrimSpace(string(raw)))
	if err != nil || priv.PublicKey().String() != pub {
		t.Fatalf("key file does not hold the node's key: %v", err)
	}
	if !strings.Contains(n.logs(), "announces a WireGuard key that is not this daemon's") {
		t.Fatalf("no warning for the announced key:\n%s", n.logs())
	}
	n.kill9()
	n.start()
	c = n.client()
	if got := *call(t, c, ipc.Status{}).(ipc.StatusResult).PublicKey; got != pub {
		t.Fatalf("key changed across restart: %s -> %s", pub, got)
	}
	c.Close()
	n.stop()

	// Import another key.
	imported, _ := wgtypes.GeneratePrivateKey()
	importFile := filepath.Join(t.TempDir(), "k")
	os.WriteFile(importFile, []byte(imported.String()+"\n"), 0o600)
	n.args = []string{"--wg-private-key-file", importFile}
	n.start()
	c = n.client()
	if got := *call(t, c, ipc.Status{}).(ipc.StatusResult).PublicKey; got != imported.PublicKey().String() {
		t.Fatalf("imported key not used: %s", got)
	}
	c.Close()
	n.stop()
	ls := n.mustCtl("journal", "ls")
	state := n.mustCtl("state", "-o", "json")
	for _, secret := range []string{priv.String(), imported.String()} {
		for what, text := range map[string]string{"journal": ls, "state": state, "log": n.logs()} {
			if strings.Contains(text, secret) {
				t.Fatalf("a private key appears in the %s", what)
			}
		}
	}
	if !strings.Contains(ls, `"source":"imported"`) {
		t.Fatalf("the imported identity is not journaled:\n%s", ls)
	}
}

// A byte changed in a stored event makes `overlayctl journal verify` fail
// and name the event. A daemon that has to replay that event refuses to
// boot and points to verify. (With a snapshot past the event, boot replays
// only the tail and checks that the snapshot's anchor event is unchanged;
// auditing the whole history is verify's job, so boot stays fast.)
func TestTamperedEventIsNamed(t *testing.T) {
	n := newNode(t)
	n.start()
	c := n.client()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820})
	for _, name := range []string{"a", "b", "c", "d"} {
		call(t, c, ipc.RegisterDNS{Name: name + ".example", IP: ipc.AddrOf(mustAddr("10.1.1.1"))})
	}
	c.Close()
	n.stop()
	// Change one byte in the payload of event 4.
	err := journal.RawUpdate(filepath.Join(n.dataDir, "overlayd", journal.FileName), func(seq uint64, raw []byte) []byte {
		if seq != 4 {
			return nil
		}
		b := append([]byte(nil), raw...)
		i := strings.Index(string(b), "10.1.1.1")
		b[i+3] = '9'
		return b
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.ctl("journal", "verify")
	if err == nil {
		t.Fatalf("verify passed on a tampered journal:\n%s", out)
	}
	if !strings.Contains(out, "event 4 (") || !strings.Contains(out, "FAILED") {
		t.Fatalf("verify does not name event 4:\n%s", out)
	}
	if err := os.Remove(filepath.Join(n.dataDir, "overlayd", journal.SnapshotFileName)); err != nil {
		t.Fatal(err)
	}
	cmd := n.command()
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	b, err := cmd.CombinedOutput()
	timer.Stop()
	if err == nil || !strings.Contains(string(b), "event 4") || !strings.Contains(string(b), "journal verify") {
		t.Fatalf("daemon booted on a tampered journal or did not say why: %v\n%s", err, b)
	}
}

// A snapshot is only a cache: missing, corrupt or from another schema, the
// daemon replays the whole journal and comes back with the same state.
func TestSnapshotIsOnlyACache(t *testing.T) {
	n := newNode(t, "--snapshot-every", "5")
	n.start()
	c := n.client()
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820})
	for i := 0; i < 20; i++ {
		call(t, c, ipc.AllocateIP{})
	}
	c.Close()
	n.stop()
	want := n.mustCtl("state", "-o", "json")
	snap := filepath.Join(n.dataDir, "overlayd", journal.SnapshotFileName)
	good, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	for name, corrupt := range map[string]func([]byte) []byte{
		"missing":   nil,
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"flipped":   func(b []byte) []byte { c := append([]byte(nil), b...); c[len(c)-3] ^= 0xff; return c },
		"schema":    func(b []byte) []byte { c := append([]byte(nil), b...); c[7] = 0x7f; return c },
	} {
		if corrupt == nil {
			os.Remove(snap)
		} else {
			os.WriteFile(snap, corrupt(good), 0o600)
		}
		n.start()
		if got := n.mustCtl("state", "-o", "json"); got != want {
			t.Fatalf("%s snapshot: state differs after boot", name)
		}
		if !strings.Contains(n.logs(), "replayed=") {
			t.Fatalf("%s snapshot: no boot log", name)
		}
		n.stop()
	}
}

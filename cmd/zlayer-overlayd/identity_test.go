//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	raw, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
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
	imported, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	importFile := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(importFile, []byte(imported.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
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
		for what, text := range map[string]string{"journal": ls, "state": state, "log": n.fullLog()} { // the whole log, not its tail
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
		if i < 0 {
			return nil // the check below then fails: nothing was changed
		}
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
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() }) // after Start: cmd.Process is set
	err = cmd.Wait()
	timer.Stop()
	if err == nil || !strings.Contains(b.String(), "event 4") || !strings.Contains(b.String(), "journal verify") {
		t.Fatalf("daemon booted on a tampered journal or did not say why: %v\n%s", err, b.String())
	}
}

// A snapshot is only a cache: missing, corrupt or from another schema, the
// daemon replays the whole journal and comes back with the same state.
// (The intact snapshot, first, is used: so the boot log's counts tell a
// used snapshot from an ignored one.)
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
	head := n.state().Seq
	snap := filepath.Join(n.dataDir, "overlayd", journal.SnapshotFileName)
	good, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	// The boot's "journal loaded" line: where the snapshot put it and how
	// many events it replayed after that.
	loaded := regexp.MustCompile(`msg="journal loaded" .*\bsnapshot_seq=(\d+) replayed=(\d+)`)
	boot := func(name string) (snapSeq, replayed uint64) {
		t.Helper()
		n.start()
		if got := n.mustCtl("state", "-o", "json"); got != want {
			t.Fatalf("%s snapshot: state differs after boot", name)
		}
		m := loaded.FindStringSubmatch(n.logSinceStart())
		if m == nil {
			t.Fatalf("%s snapshot: no journal loaded line in this boot's log:\n%s", name, n.logSinceStart())
		}
		n.stop()
		a, _ := strconv.ParseUint(m[1], 10, 64)
		b, _ := strconv.ParseUint(m[2], 10, 64)
		return a, b
	}
	if at, replayed := boot("intact"); at == 0 || at+replayed != head {
		t.Fatalf("intact snapshot: boot loaded it at %d and replayed %d events (journal head %d)", at, replayed, head)
	}
	for _, tc := range []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"missing", nil},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"flipped", func(b []byte) []byte { c := append([]byte(nil), b...); c[len(c)-3] ^= 0xff; return c }},
		{"schema", func(b []byte) []byte { c := append([]byte(nil), b...); c[7] = 0x7f; return c }},
	} {
		var err error
		if tc.corrupt == nil {
			err = os.Remove(snap)
		} else {
			err = os.WriteFile(snap, tc.corrupt(good), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		if at, replayed := boot(tc.name); at != 0 || replayed != head {
			t.Fatalf("%s snapshot: boot started at %d and replayed %d events, want the whole journal (%d) replayed", tc.name, at, replayed, head)
		}
	}
}

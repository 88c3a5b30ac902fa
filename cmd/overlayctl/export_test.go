package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
	"github.com/zlayer/overlayd/ipc"
)

// journal export never carries key material: on a node with an imported
// node key, a dedicated service (a generated device key) and a guest (a
// generated key pair handed to the guest), neither the online nor the
// offline export holds any of those private keys (base64 or hex), nor a
// field whose name says private or secret; it does hold every event.
func TestExportHasNoPrivateKeys(t *testing.T) {
	data := t.TempDir()
	sock := filepath.Join(data, "d.sock")
	nodeKey, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(data, "node.key")
	if err := os.WriteFile(keyFile, []byte(nodeKey.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, stop := liveDaemonCfg(t, daemon.Config{DataDir: data, WGPrivateKeyFile: keyFile}, sock)
	c, err := ipc.Dial(context.Background(), sock, ipc.DialOptions{Attempts: 20, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	secrets := []string{nodeKey.String()}
	call := func(r ipc.Request) ipc.Response {
		t.Helper()
		resp, err := c.Call(ctx, r)
		if err != nil {
			t.Fatalf("%T: %v", r, err)
		}
		return resp
	}
	call(ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: &fixSlice, WgPort: 51820})
	so := call(ipc.SetupServiceOverlay{Service: "db", Mode: ipc.ModeDedicated}).(ipc.ServiceOverlay)
	if so.WgPublicKey == nil {
		t.Fatalf("dedicated service without a key: %+v", so)
	}
	dedKey, err := d.PrivateKey(*so.WgPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, dedKey.String())
	call(ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared})
	gc := call(ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-1"}, Service: "web"}).(ipc.GuestConfig)
	if gc.PrivateKey == "" {
		t.Fatal("guest attach returned no private key")
	}
	secrets = append(secrets, gc.PrivateKey)
	for _, k := range secrets[:] {
		if b, err := wgtypes.ParseKey(k); err == nil {
			secrets = append(secrets, hex.EncodeToString(b[:]))
		}
	}
	check := func(where, out string) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) < 5 {
			t.Fatalf("%s: only %d lines:\n%s", where, len(lines), out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s: the export holds a private key", where)
			}
		}
		for i, l := range lines {
			var e map[string]any
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("%s: line %d is not JSON: %v", where, i+1, err)
			}
			if e["seq"] != float64(i+1) {
				t.Errorf("%s: line %d is event %v", where, i+1, e["seq"])
			}
			walkKeys(e, func(k string) {
				if lk := strings.ToLower(k); strings.Contains(lk, "private") || strings.Contains(lk, "secret") {
					t.Errorf("%s: event %v has a field %q", where, e["seq"], k)
				}
			})
		}
	}
	code, online, errs := ctlSock(t, data, sock, "journal", "export")
	if code != 0 || !strings.Contains(errs, "live daemon") {
		t.Fatalf("export online: exit %d: %s", code, errs)
	}
	check("online", online)
	stop()
	code, offline, errs := ctlSock(t, data, sock, "journal", "export")
	if code != 0 || !strings.Contains(errs, "(offline)") {
		t.Fatalf("export offline: exit %d: %s", code, errs)
	}
	check("offline", offline)
	if online != offline {
		t.Errorf("the online and offline exports differ:\n%s\n---\n%s", online, offline)
	}
}

// walkKeys calls fn with every object key in v, at any depth.
func walkKeys(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			fn(k)
			walkKeys(x, fn)
		}
	case []any:
		for _, x := range v {
			walkKeys(x, fn)
		}
	}
}

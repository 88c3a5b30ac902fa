package daemon

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/ipc"
)

// keyFilesIn lists the key files (<hex>.key) under a data dir.
func keyFilesIn(t *testing.T, dataDir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dataDir, "overlayd", "keys", "*.key"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func keyFileOf(dataDir, pub string) string {
	b, _ := base64.StdEncoding.DecodeString(pub)
	return filepath.Join(dataDir, "overlayd", "keys", hex.EncodeToString(b)+".key")
}

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// bootServe opens a daemon on dataDir and serves it; stop stops it.
func bootServe(t *testing.T, dataDir string, log *slog.Logger) (c *ipc.Client, stop func()) {
	t.Helper()
	d, err := Open(Config{DataDir: dataDir, Log: log, NoDataPlane: true})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dataDir, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go d.ServeListener(l)
	c, err = ipc.Dial(context.Background(), sock, ipc.DialOptions{Attempts: 20, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop = func() { c.Close(); d.Stop(); <-d.Done() }
	t.Cleanup(stop)
	return c, stop
}

func setupDedicated(t *testing.T, c *ipc.Client, service string) string {
	t.Helper()
	r := call(t, c, ipc.SetupServiceOverlay{Service: service, Mode: ipc.ModeDedicated})
	so, ok := r.(ipc.ServiceOverlay)
	if !ok || so.WgPublicKey == nil || *so.WgPublicKey == "" {
		t.Fatalf("setup dedicated %s answered %#v", service, r)
	}
	return *so.WgPublicKey
}

var setupGlobal = ipc.SetupGlobalOverlay{Deployment: "p", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51820}

// After teardown_service_overlay of a dedicated service its key file is
// gone, and it stays gone across a restart; key files are 0600 in a 0700
// directory.
func TestDedicatedKeyRemovedAfterTeardown(t *testing.T) {
	dir := t.TempDir()
	c, stop := bootServe(t, dir, slog.New(slog.DiscardHandler))
	call(t, c, setupGlobal)
	pub := setupDedicated(t, c, "db")
	other := setupDedicated(t, c, "web")
	path := keyFileOf(dir, pub)
	if got := keyFilesIn(t, dir); !slices.Equal(got, slices.Sorted(slices.Values([]string{path, keyFileOf(dir, other)}))) {
		t.Fatalf("key files after two setups: %v", got)
	}
	if p := perm(t, path); p != 0o600 {
		t.Fatalf("key file mode %04o", p)
	}
	if p := perm(t, filepath.Dir(path)); p != 0o700 {
		t.Fatalf("key dir mode %04o", p)
	}
	call(t, c, ipc.TeardownServiceOverlay{Service: "db"})
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the torn-down service's key file is still there (%v)", err)
	}
	if got := keyFilesIn(t, dir); !slices.Equal(got, []string{keyFileOf(dir, other)}) {
		t.Fatalf("key files after the teardown: %v", got)
	}
	stop()
	c, _ = bootServe(t, dir, slog.New(slog.DiscardHandler))
	if got := keyFilesIn(t, dir); !slices.Equal(got, []string{keyFileOf(dir, other)}) {
		t.Fatalf("key files after a restart: %v", got)
	}
	// The remaining service still has its key (the device needs it).
	if _, err := os.Stat(keyFileOf(dir, other)); err != nil {
		t.Fatal(err)
	}
	call(t, c, ipc.Status{})
}

// At boot a key file no journaled dedicated service owns is removed
// (logged with its public key only), an owned one is kept, files that are
// not key files are left alone, and modes found too wide are narrowed.
func TestOrphanKeysRemovedAtBoot(t *testing.T) {
	dir := t.TempDir()
	c, stop := bootServe(t, dir, slog.New(slog.DiscardHandler))
	call(t, c, setupGlobal)
	owned := setupDedicated(t, c, "db")
	stop()

	orphan, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "overlayd", "keys")
	orphanPath := keyFileOf(dir, orphan.PublicKey().String())
	if err := os.WriteFile(orphanPath, []byte(orphan.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(keys, "README.txt")
	if err := os.WriteFile(notes, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{keys: 0o755, keyFileOf(dir, owned): 0o644, filepath.Join(dir, "overlayd", nodeKeyFile): 0o640} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}

	var logs syncBuffer
	bootServe(t, dir, slog.New(slog.NewJSONHandler(&logs, nil)))
	if _, err := os.Stat(orphanPath); !os.IsNotExist(err) {
		t.Fatalf("the orphan key file is still there (%v)", err)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Fatalf("a file that is not a key file was touched: %v", err)
	}
	if got := keyFilesIn(t, dir); !slices.Equal(got, []string{keyFileOf(dir, owned)}) {
		t.Fatalf("key files after boot: %v", got)
	}
	if p := perm(t, keys); p != 0o700 {
		t.Errorf("key dir mode %04o after boot", p)
	}
	if p := perm(t, keyFileOf(dir, owned)); p != 0o600 {
		t.Errorf("key file mode %04o after boot", p)
	}
	if p := perm(t, filepath.Join(dir, "overlayd", nodeKeyFile)); p != 0o600 {
		t.Errorf("node key file mode %04o after boot", p)
	}
	lines := logLines(t, logs.Bytes())
	removed := filterLines(lines, "removed the key file of a dedicated device no journaled service owns")
	if len(removed) != 1 || removed[0]["public_key"] != orphan.PublicKey().String() || removed[0]["level"] != "INFO" {
		t.Errorf("removal lines: %v", removed)
	}
	if fixed := filterLines(lines, "a key file's mode was too wide; fixed"); len(fixed) != 3 {
		t.Errorf("%d mode warnings, want 3: %v", len(fixed), fixed)
	}
	if strings.Contains(string(logs.Bytes()), orphan.String()) {
		t.Error("the orphan's private key was logged")
	}
}

// A teardown whose commit failed keeps the key (the service is still
// journaled); a setup whose commit failed loses its key once the journal
// is writable again.
func TestKeysAndFailedCommits(t *testing.T) {
	dir := t.TempDir()
	d, store, _ := openFaultyDaemon(t, dir)
	c := serveTest(t, d, dir)
	call(t, c, setupGlobal)
	kept := setupDedicated(t, c, "db")

	store.FailNext(1, errNoSpace)
	if _, err := c.Call(context.Background(), ipc.TeardownServiceOverlay{Service: "db"}); !strings.Contains(refusalOf(t, err), "no space left") {
		t.Fatalf("the teardown on a failing disk answered %v", err)
	}
	waitUntil(t, "writes to be accepted again", func() bool { return register(t, c, "a.p.local") == "" })
	if _, err := os.Stat(keyFileOf(dir, kept)); err != nil {
		t.Fatalf("a teardown whose commit failed removed the key: %v", err)
	}

	before := keyFilesIn(t, dir)
	store.FailNext(1, errNoSpace)
	if _, err := c.Call(context.Background(), ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeDedicated}); !strings.Contains(refusalOf(t, err), "no space left") {
		t.Fatalf("the setup on a failing disk answered %v", err)
	}
	// The key was stored before the commit (the first recovery attempt
	// comes 0.5 s after the failure).
	if got := keyFilesIn(t, dir); len(got) != len(before)+1 {
		t.Fatalf("the failed setup's key was not stored before its commit: %v", got)
	}
	waitUntil(t, "the failed setup's key to be removed", func() bool { return slices.Equal(keyFilesIn(t, dir), before) })
	if got := keyFilesIn(t, dir); !slices.Equal(got, []string{keyFileOf(dir, kept)}) {
		t.Fatalf("key files: %v", got)
	}
	// The service that is still journaled can be torn down, and then its
	// key goes.
	call(t, c, ipc.TeardownServiceOverlay{Service: "db"})
	if got := keyFilesIn(t, dir); len(got) != 0 {
		t.Fatalf("key files after the teardown: %v", got)
	}
}

// A sweep of failed setups' keys that runs late, after another commit
// failed (CI: the sweep of one recovery ran behind a setup whose commit
// failed next, and removed its key while that commit might still have
// reached the file), keeps every key until the journal is writable again;
// the next recovery's sweep removes it.
func TestKeySweepWaitsForAWritableJournal(t *testing.T) {
	dir := t.TempDir()
	d, store, _ := openFaultyDaemon(t, dir)
	c := serveTest(t, d, dir)
	call(t, c, setupGlobal)
	before := keyFilesIn(t, dir)
	store.Break(errNoSpace)
	if _, err := c.Call(context.Background(), ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeDedicated}); !strings.Contains(refusalOf(t, err), "no space left") {
		t.Fatalf("the setup on a failing disk answered %v", err)
	}
	if got := keyFilesIn(t, dir); len(got) != len(before)+1 {
		t.Fatalf("the failed setup's key was not stored before its commit: %v", got)
	}
	d.sweepKeysAfterRecovery() // an earlier recovery's sweep, running late
	if got := keyFilesIn(t, dir); len(got) != len(before)+1 {
		t.Fatalf("a sweep while the journal is read-only removed the failed setup's key: %v", got)
	}
	store.Heal()
	waitUntil(t, "the failed setup's key to be removed", func() bool { return slices.Equal(keyFilesIn(t, dir), before) })
	if got := register(t, c, "a.p.local"); got != "" {
		t.Fatalf("a write after the recovery: %s", got)
	}
}

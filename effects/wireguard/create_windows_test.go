package wireguard

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/zlayer/overlayd/tools/testtemp"
)

func errorsIsNotFound(err error) bool { return errors.Is(err, ErrLinkNotFound) }

// TestWintunPreloadedByFullPath shows the loading trick CreateDevice
// relies on: a DLL named wintun.dll loaded by full path from a folder the
// wintun library never searches (our ProgramData place) is the module its
// own LoadLibraryEx("wintun.dll", APPLICATION_DIR|SYSTEM32) then gets. A
// stand-in is used (a copy of a DLL wine and Windows both have): there is
// no Wintun here, and this does not create an adapter.
func TestWintunPreloadedByFullPath(t *testing.T) {
	sys, err := windows.GetSystemDirectory()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(sys, "bcryptprimitives.dll")
	if _, err := os.Stat(src); err != nil {
		t.Skipf("no stand-in DLL: %v", err)
	}
	root := testtemp.Dir(t)
	pd := filepath.Join(root, "ProgramData")
	dir := filepath.Join(pd, "ZLayer", "wintun")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, src, filepath.Join(dir, "wintun.dll"))
	// Not loaded before: the library's own search would not find it.
	const searchAppSys = 0x00000200 | 0x00000800
	if h, err := windows.LoadLibraryEx("wintun.dll", 0, searchAppSys); err == nil {
		windows.FreeLibrary(h)
		t.Skip("a wintun.dll is already found beside the test binary or in System32")
	}
	p, err := loadWintunFrom(wintunPlaces(pd, filepath.Join(root, "bin")))
	if err != nil {
		t.Fatalf("loadWintunFrom: %v", err)
	}
	t.Cleanup(func() { // unload, so that the folder can be removed
		wintunLoad.Lock()
		windows.FreeLibrary(wintunLoad.h)
		wintunLoad.path, wintunLoad.h = "", 0
		wintunLoad.Unlock()
	})
	if !strings.EqualFold(p, filepath.Join(dir, "wintun.dll")) {
		t.Fatalf("loaded %s", p)
	}
	h, err := windows.LoadLibraryEx("wintun.dll", 0, searchAppSys)
	if err != nil {
		t.Fatalf("the library's load after ours: %v", err)
	}
	defer windows.FreeLibrary(h)
	name := make([]uint16, windows.MAX_PATH)
	n, err := windows.GetModuleFileName(h, &name[0], uint32(len(name)))
	if err != nil {
		t.Fatal(err)
	}
	got := windows.UTF16ToString(name[:n])
	t.Logf("wintun.dll resolves to %s", got)
	if !strings.EqualFold(filepath.Base(got), "wintun.dll") || !strings.Contains(strings.ToLower(got), "zlayer") {
		t.Errorf("the bare-name load resolved to %s, not the preloaded %s", got, p)
	}
	// Loaded once per process: a second call answers the same path.
	if p2, err := loadWintunFrom(nil); err != nil || p2 != p {
		t.Errorf("second load: %q, %v", p2, err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPortErrorWSAEADDRINUSE: the Windows bind's "in use" reads as the
// port taken, as EADDRINUSE does on Linux.
func TestPortErrorWSAEADDRINUSE(t *testing.T) {
	e := &PortError{Device: "zl-p-1-g", Port: 51820, Err: fmt.Errorf("IPC error -98: failed to set listen_port: %w", windows.WSAEADDRINUSE)}
	if !strings.Contains(e.Error(), "listen port 51820/udp is taken by another process") {
		t.Fatalf("message: %s", e)
	}
}

package wireguard

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/tools/testtemp"
)

func TestWintunPlacesOrder(t *testing.T) {
	got := wintunPlaces(`D:\PD`, `C:\bin`)
	want := []string{`D:\PD\ZLayer\wintun`, `C:\bin`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("places = %q, want %q", got, want)
	}
	if got := wintunPlaces("", ""); len(got) != 1 || got[0] != `C:\ProgramData\ZLayer\wintun` {
		t.Fatalf("defaults: places = %q", got)
	}
}

// TestFindWintunOrder puts a (fake) wintun.dll in both folders: the one
// under ProgramData is found first; without it, the executable's folder;
// without both, the error names both places.
func TestFindWintunOrder(t *testing.T) {
	root := testtemp.Dir(t)
	pd := filepath.Join(root, "ProgramData")
	exe := filepath.Join(root, "bin")
	zl := filepath.Join(pd, "ZLayer", "wintun")
	for _, d := range []string{zl, exe} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "wintun.dll"), []byte("MZ fake"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	places := wintunPlaces(pd, exe)
	if p, err := findWintun(places); err != nil || p != filepath.Join(zl, "wintun.dll") {
		t.Fatalf("both present: %q, %v; want the ProgramData one", p, err)
	}
	if err := os.Remove(filepath.Join(zl, "wintun.dll")); err != nil {
		t.Fatal(err)
	}
	if p, err := findWintun(places); err != nil || p != filepath.Join(exe, "wintun.dll") {
		t.Fatalf("only beside the executable: %q, %v", p, err)
	}
	if err := os.Remove(filepath.Join(exe, "wintun.dll")); err != nil {
		t.Fatal(err)
	}
	// A folder named wintun.dll is not the library.
	if err := os.Mkdir(filepath.Join(zl, "wintun.dll"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := findWintun(places)
	if !errors.Is(err, ErrNoWintun) {
		t.Fatalf("none: err = %v, want ErrNoWintun", err)
	}
	for _, p := range []string{filepath.Join(zl, "wintun.dll") + " (not a regular file)", filepath.Join(exe, "wintun.dll")} {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %s", err, p)
		}
	}
	t.Logf("error: %v", err)
}

package repocheck

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// No built executable (ELF, or PE: "MZ" with a "PE\0\0" header where
// its offset at 0x3c points) is tracked by git: a 6 MB bench binary was
// once committed at the root. Skipped outside a git checkout.
func TestNoTrackedBinaries(t *testing.T) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout (or no git): %v", err)
	}
	dir := strings.TrimSpace(string(root))
	out, err := exec.Command("git", "-C", dir, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	var bad []string
	for _, f := range files {
		if f == "" {
			continue
		}
		if kind := executableKind(filepath.Join(dir, f)); kind != "" {
			bad = append(bad, f+" ("+kind+")")
		}
	}
	if len(bad) > 0 {
		t.Fatalf("built executables are tracked by git (build into bin/, which .gitignore ignores; git rm --cached them):\n  %s", strings.Join(bad, "\n  "))
	}
	t.Logf("%d tracked files, none an executable", len(files))
}

// executableKind is "ELF" or "PE" when the file at path is one, else "".
func executableKind(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "" // deleted in the work tree, a submodule, ...
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return "ELF"
	case bytes.HasPrefix(head, []byte("MZ")) && n == 64:
		off := int64(binary.LittleEndian.Uint32(head[0x3c:]))
		sig := make([]byte, 4)
		if _, err := f.ReadAt(sig, off); err == nil && bytes.Equal(sig, []byte("PE\x00\x00")) {
			return "PE"
		}
	}
	return ""
}

// The check recognises what go build writes, for both targets.
func TestExecutableKind(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a small program twice")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for goos, want := range map[string]string{"linux": "ELF", "windows": "PE"} {
		bin := filepath.Join(dir, "x-"+goos)
		cmd := exec.Command("go", "build", "-o", bin, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build for %s: %v\n%s", goos, err, out)
		}
		if got := executableKind(bin); got != want {
			t.Fatalf("%s binary: kind %q, want %q", goos, got, want)
		}
	}
	if got := executableKind(src); got != "" {
		t.Fatalf("a source file: kind %q", got)
	}
}

package testtemp

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// dir makes the directory with os.MkdirTemp and removes it entry by entry
// (files first, then folders, deepest first) with os.Remove, which wine
// does. A file that cannot be removed (still open: Windows refuses that)
// is logged, not failed: the test's own checks decide its outcome.
func dir(t testing.TB) string {
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 64 {
		name = name[:64]
	}
	d, err := os.MkdirTemp("", name)
	if err != nil {
		t.Fatalf("testtemp: %v", err)
	}
	t.Cleanup(func() {
		var files, dirs []string
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if e.IsDir() {
				dirs = append(dirs, p)
			} else {
				files = append(files, p)
			}
			return nil
		})
		slices.Reverse(dirs) // WalkDir lists parents first
		for _, p := range append(files, dirs...) {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Logf("testtemp: cannot remove %s: %v", p, err)
			}
		}
	})
	return d
}

// Package journaltest damages journal files for the tests of the code that
// reads them (package journal, and the repair in cmd/internal/replay), the
// same way from the same seed.
package journaltest

import (
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// Damage is one way to damage a file.
type Damage struct {
	Name string
	// Apply returns the damaged bytes; b itself is not changed.
	Apply func(b []byte) []byte
}

// Damages returns 20 truncation points and 20 flipped bytes spread across
// a file of size bytes, drawn from r.
func Damages(size int, r *rand.Rand) []Damage {
	var out []Damage
	for i := 0; i < 20; i++ {
		at := size*i/20 + r.Intn(size/20)
		out = append(out, Damage{fmt.Sprintf("truncated to %d bytes", at), func(b []byte) []byte { return b[:at] }})
	}
	for i := 0; i < 20; i++ {
		at := size*i/20 + r.Intn(size/20)
		x := byte(1 + r.Intn(255))
		out = append(out, Damage{fmt.Sprintf("byte %d xor %#02x", at, x), func(b []byte) []byte {
			c := append([]byte(nil), b...)
			c[at] ^= x
			return c
		}})
	}
	return out
}

// CopyDir copies the files of directory from (not its subdirectories) to a
// new temporary directory of t, and returns that.
func CopyDir(t testing.TB, from string) string {
	t.Helper()
	to := testtemp.Dir(t)
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

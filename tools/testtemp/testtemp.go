// Package testtemp gives tests a temporary directory that can also be
// cleaned up under wine: there os.RemoveAll of a folder that holds files
// fails ("unlinkat …: Invalid function", wine 8 lacks the POSIX delete
// semantics Go asks for), so t.TempDir's clean-up fails every test that
// wrote a file. Elsewhere Dir is t.TempDir.
package testtemp

import "testing"

// Dir returns a new temporary directory removed when the test ends.
func Dir(t testing.TB) string {
	t.Helper()
	return dir(t)
}

//go:build !windows

package testtemp

import "testing"

func dir(t testing.TB) string { return t.TempDir() }

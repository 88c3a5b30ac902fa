//go:build !linux

package main

import "os"

// isTerminal says whether f is a terminal; off Linux, a character device
// is taken for one.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

//go:build !linux

package dns

import "syscall"

// freebind is Linux-only; elsewhere the address must exist at bind time.
func freebind(string, string, syscall.RawConn) error { return nil }

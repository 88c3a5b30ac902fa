//go:build !windows

package dns

// systemResolvers is nil here: resolv.conf is the system's list.
func systemResolvers() []string { return nil }

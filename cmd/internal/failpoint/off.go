//go:build !failpoints

package failpoint

// Install does nothing in a release build.
func Install() {}

// Enabled reports whether this build carries failpoints.
const Enabled = false

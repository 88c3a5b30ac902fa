//go:build unix

package ipc

import (
	"errors"
	"syscall"
)

// outOfDescriptors reports an accept that failed for want of a descriptor
// (the process's or the system's).
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// errnoText is the errno's text of err, or err's text.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

// descriptorLimit is the soft RLIMIT_NOFILE, 0 when unknown.
func descriptorLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}

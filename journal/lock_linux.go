package journal

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"
)

// lockFile takes the lock bbolt takes (flock: exclusive for a writer,
// shared for a reader) on f, waiting up to timeout. bbolt takes it again
// on the same descriptor, which then succeeds at once; taking it first
// lets the file be checked before bbolt reads it.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return err
		case time.Now().After(deadline):
			return bolterrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dupFile returns a new descriptor for f's open file description, which
// holds f's lock: a store whose bbolt handle is stuck (its mapping still
// references the description, so the lock cannot be released) reopens
// the file through it.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// openForLock opens the journal for LockJournal.
func openForLock(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }

// lockHolder names the process holding a flock on path, from /proc/locks
// (matched by device and inode): its pid and command line. ok is false
// when it cannot tell (no /proc, another pid namespace, a race).
func lockHolder(path string) (pid int, cmdline string, ok bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, "", false
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0, "", false
	}
	// "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234567 0 EOF": the device is
	// major:minor in hex, the inode in decimal.
	// (glibc's gnu_dev_major/minor split of dev_t; x/sys/unix is not one
	// of this package's imports.)
	d := uint64(st.Dev)
	major := (d>>8)&0xfff | (d>>32)&^uint64(0xfff)
	minor := d&0xff | (d>>12)&^uint64(0xff)
	dev := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != dev {
			continue
		}
		p, err := strconv.Atoi(f[4])
		if err != nil || p <= 0 || p == os.Getpid() {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		return p, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")), true
	}
	return 0, "", false
}

// lockedError is ErrLocked for path, naming the holder when it can and
// what to do: advice is for when the holder is unknown.
func lockedError(path, advice string) error {
	pid, cmd, ok := lockHolder(path)
	if !ok {
		return fmt.Errorf("%w: %s is held by another process (%s; `fuser -v %s` names it)", ErrLocked, path, advice, path)
	}
	if cmd == "" {
		cmd = "command line unknown"
	}
	return fmt.Errorf("%w: %s is held by another process, pid %d (%s): stop it first (kill -TERM %d) or use another --data-dir", ErrLocked, path, pid, cmd, pid)
}

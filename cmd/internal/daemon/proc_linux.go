package daemon

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/zlayer/overlayd/projections"
)

const platform = "linux"

// procInfo reports whether pid exists and the inode of its network
// namespace (0 when it cannot be read).
func procInfo(pid uint32) projections.ProcInfo {
	base := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	fi, err := os.Stat(base + "/ns/net")
	if err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return projections.ProcInfo{Exists: true, NetnsInode: st.Ino, HostNetwork: st.Ino == ownNetns()}
		}
		return projections.ProcInfo{Exists: true}
	}
	if errors.Is(err, fs.ErrPermission) {
		if _, err := os.Stat(base); err == nil {
			return projections.ProcInfo{Exists: true}
		}
	}
	return projections.ProcInfo{}
}

// ownNetns is the inode of the daemon's own network namespace, read once
// at start: later, /proc/self/ns/net shows the main thread's namespace, and
// a thread that entered a container's namespace to set a sysctl there may
// have been the main thread (the runtime keeps, rather than ends, a locked
// main thread).
var ownNetns = sync.OnceValue(func() uint64 {
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
})

func init() { ownNetns() }

// home tells this daemon's place apart from another daemon's running from
// a copy of the same data dir (effects.Owner.Home): a hash of the machine
// id and the daemon's network namespace. The init namespace has a fixed
// inode, so a host daemon keeps its home across reboots.
func home() string {
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		mid, _ = os.ReadFile("/var/lib/dbus/machine-id")
	}
	return homeOf(string(mid), ownNetns())
}

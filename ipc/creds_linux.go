package ipc

import (
	"net"
	"os"
	"strconv"
	"syscall"
)

// peerCreds reads SO_PEERCRED of a unix connection.
func peerCreds(c net.Conn) (Creds, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Creds{}, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Creds{}, false
	}
	var cr *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cr, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || serr != nil {
		return Creds{}, false
	}
	return Creds{UID: cr.Uid, GID: cr.Gid, PID: uint32(cr.Pid)}, true
}

// peerExe is the executable of process pid ("" when it cannot be read).
func peerExe(pid uint32) string {
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
	return exe
}

package ipc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// PipeOptions configure the daemon's named pipe.
type PipeOptions struct {
	// GroupSID, when set, is a group (a SID string, "S-1-5-…") whose
	// members may connect too: the Windows side of the Unix socket's
	// group.
	GroupSID string
}

// PipeSDDL is the security descriptor of the daemon's pipe: a protected
// DACL (nothing inherited) giving full access to SYSTEM and the
// Administrators group, and read/write to groupSID when given. Remote
// clients are refused by the pipe itself (PIPE_REJECT_REMOTE_CLIENTS).
func PipeSDDL(groupSID string) string {
	sddl := "D:P(A;;GA;;;SY)(A;;GA;;;BA)"
	if groupSID != "" {
		sddl += "(A;;GRGW;;;" + groupSID + ")"
	}
	return sddl
}

// Listen binds path: a named pipe when it is one (\\.\pipe\NAME), with
// PipeSDDL("") as its security descriptor; any other path is an AF_UNIX
// socket (Windows 10 1803 and later), which tests use.
func Listen(path string) (net.Listener, error) { return ListenWith(path, PipeOptions{}) }

// ListenWith is Listen with pipe options. The pipe is created as its first
// instance: a second daemon on the same name is refused (ErrSocketInUse)
// instead of sharing the name.
func ListenWith(path string, o PipeOptions) (net.Listener, error) {
	if !IsPipe(path) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("ipc: create socket directory: %w", err)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: a live daemon answers on %s", ErrSocketInUse, path)
		}
		os.Remove(path)
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("ipc: listen on %s: %w", path, err)
		}
		return l, nil
	}
	if o.GroupSID != "" {
		if _, err := windows.StringToSid(o.GroupSID); err != nil {
			return nil, fmt.Errorf("ipc: pipe group %q is not a SID: %w", o.GroupSID, err)
		}
	}
	// A pipe someone answers on is taken. The pipe is also created as
	// the name's first instance (winio asks for FILE_CREATE), which
	// Windows refuses when the name exists; wine does not, so the probe
	// comes first.
	timeout := 500 * time.Millisecond
	if c, err := winio.DialPipe(path, &timeout); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: a live daemon answers on %s", ErrSocketInUse, path)
	}
	l, err := winio.ListenPipe(path, &winio.PipeConfig{
		SecurityDescriptor: PipeSDDL(o.GroupSID),
		InputBufferSize:    64 << 10,
		OutputBufferSize:   64 << 10,
	})
	if err != nil {
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_PIPE_BUSY) ||
			errors.Is(err, windows.ERROR_ALREADY_EXISTS) || errors.Is(err, windows.ERROR_FILE_EXISTS) {
			return nil, fmt.Errorf("%w: %s is held by another process (%v)", ErrSocketInUse, path, err)
		}
		return nil, fmt.Errorf("ipc: listen on pipe %s: %w", path, err)
	}
	return l, nil
}

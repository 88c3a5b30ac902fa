package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Device creation, written so that every failure closes what it opened.
//
// wireguard-go's tun.CreateTUN does not: a failed TUNSETIFF leaks the
// /dev/net/tun descriptor, and a failure after it wrapped the descriptor
// (its netlink socket under EMFILE, the MTU ioctl) leaks the file and
// goroutines. So the TUN is opened and attached here, on a descriptor this
// package owns until it is handed over, and wrapped with
// tun.CreateUnmonitoredTUNFromFD, which opens nothing more (no netlink
// socket, no goroutine: the reconciler brings the device up itself and
// keeps the MTU fixed). The UAPI socket is served here as well: one
// listener, closed on every failure (ipc.UAPIOpen and ipc.UAPIListen keep
// extra descriptors and leak them on their failure paths).

const (
	tunClone = "/dev/net/tun"
	uapiDir  = "/var/run/wireguard"
	// tunTCPOffloads is what tun.CreateUnmonitoredTUNFromFD asks of a TUN
	// with a virtio header; it is tried here first (see createTUN).
	tunTCPOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
)

// CreateDevice implements Kernel. A TUN name still held by a dying process
// (EBUSY right after a crash) is retried for up to 3 s.
func (k *hostKernel) CreateDevice(name string, mtu int, log *slog.Logger) (Device, error) {
	var t tun.Device
	var err error
	for deadline := time.Now().Add(3 * time.Second); ; {
		t, err = k.createTUN(name)
		if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: create the TUN: %w", name, err)
	}
	if err := k.step("tun-wrap"); err != nil {
		t.Close()
		return nil, fmt.Errorf("wireguard: %s: %w", name, err)
	}
	// The MTU first: the device reads it once, when it is made.
	if l, err := k.Link(name); err != nil {
		t.Close()
		return nil, fmt.Errorf("wireguard: %s: read the new TUN: %w", name, err)
	} else if err := k.SetMTU(l, mtu); err != nil {
		t.Close()
		return nil, fmt.Errorf("wireguard: %s: set MTU: %w", name, err)
	}
	gl := newGoLogger(log, name) // wglog.go: per-peer repeats folded
	wlog := &device.Logger{Verbosef: gl.verbosef, Errorf: gl.errorf}
	h := &hostDevice{dev: device.NewDevice(t, conn.NewDefaultBind(), wlog)} // owns t now
	if err := k.step("device"); err != nil {
		h.Close()
		return nil, fmt.Errorf("wireguard: %s: %w", name, err)
	}
	// The standard UAPI socket, for `wg show`. Failing to serve it (for
	// example, another device of this name in another network namespace
	// sharing /var/run/wireguard) costs only the debugging view.
	if l, err := listenUAPI(name); err != nil {
		log.Warn("wireguard: no UAPI socket; `wg show` will not see this device", "device", name, "err", err)
	} else {
		h.uapi = l
		go h.serveUAPI(name, log)
		if err := k.step("uapi"); err != nil {
			h.Close()
			return nil, fmt.Errorf("wireguard: %s: %w", name, err)
		}
	}
	return h, nil
}

// createTUN opens and attaches the TUN name and wraps it. On error the
// descriptor is closed.
func (k *hostKernel) createTUN(name string) (tun.Device, error) {
	fd, err := unix.Open(tunClone, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", tunClone, err)
	}
	owned := true // fd is ours to close
	defer func() {
		if owned {
			unix.Close(fd)
		}
	}()
	if err := k.step("tun-open"); err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("TUN name %q: %w", name, err)
	}
	// IFF_VNET_HDR: segmentation offloads, as tun.CreateTUN asks.
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := k.step("tun-setiff"); err != nil {
		return nil, err
	}
	// tun.CreateUnmonitoredTUNFromFD wraps fd in an *os.File of its own
	// before it repeats these ioctls; failing after that, it returns
	// neither the file nor a way to close it without closing fd twice. So
	// they are tried here first, on the descriptor still ours: when they
	// pass, its identical calls do too.
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return nil, fmt.Errorf("TUNGETIFF: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunTCPOffloads); err != nil {
		return nil, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("set the TUN non-blocking: %w", err)
	}
	owned = false
	t, _, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		// Not reached when the ioctls above passed. If it is, the
		// library's file holds fd and its finalizer closes it: collect now.
		runtime.GC()
		return nil, fmt.Errorf("wrap the TUN: %w", err)
	}
	return t, nil
}

// hostDevice is a wireguard-go device and its UAPI listener.
type hostDevice struct {
	dev  *device.Device
	uapi *net.UnixListener // nil: not served
}

func (h *hostDevice) IpcSet(uapi string) error { return h.dev.IpcSet(uapi) }
func (h *hostDevice) IpcGet() (string, error)  { return h.dev.IpcGet() }
func (h *hostDevice) Up() error                { return h.dev.Up() }

// Handshake sends the initiation (two X25519 operations and a send) beside
// the caller: an answer need not wait for it.
func (h *hostDevice) Handshake(pub wgtypes.Key) {
	if p := h.dev.LookupPeer(device.NoisePublicKey(pub)); p != nil {
		go func() { _ = p.SendHandshakeInitiation(false) }()
	}
}

func (h *hostDevice) Close() {
	if h.uapi != nil {
		h.uapi.Close() // unlinks the socket file
	}
	h.dev.Close() // closes the TUN: the kernel removes the link and its routes
}

// serveUAPI answers `wg` on the UAPI socket until it is closed. An accept
// error other than the close (EMFILE when descriptors run out) waits and
// tries again rather than giving the socket up.
func (h *hostDevice) serveUAPI(name string, log *slog.Logger) {
	delay := 10 * time.Millisecond
	for {
		c, err := h.uapi.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Warn("wireguard: UAPI accept", "device", name, "err", err)
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 10 * time.Millisecond
		go h.dev.IpcHandle(c)
	}
}

// listenUAPI listens on /var/run/wireguard/<name>.sock. A socket file that
// nobody answers on (left by a process that is gone) is replaced; one that
// answers belongs to a live device and is left alone.
func listenUAPI(name string) (*net.UnixListener, error) {
	if err := os.MkdirAll(uapiDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(uapiDir, name+".sock")
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	l, err := net.ListenUnix("unix", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		c, derr := net.Dial("unix", path)
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("%s is served by another process", path)
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) {
			return nil, err
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, rerr
		}
		l, err = net.ListenUnix("unix", addr)
	}
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

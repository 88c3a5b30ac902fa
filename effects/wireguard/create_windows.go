package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/windows"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Device creation on Windows: wireguard-go's tun.CreateTUN makes a Wintun
// adapter (and closes it again when starting its session fails). The
// library golang.zx2c4.com/wintun loads wintun.dll with
// LoadLibraryEx("wintun.dll", LOAD_LIBRARY_SEARCH_APPLICATION_DIR|
// LOAD_LIBRARY_SEARCH_SYSTEM32): the executable's folder and System32
// only, so neither SetDllDirectory nor AddDllDirectory would make it look
// in %ProgramData%\ZLayer\wintun. loadWintun therefore loads the DLL
// itself, by full path, from the first place that has it; a module of
// that name being loaded, the library's load by bare name resolves to it
// (the loader looks at loaded modules before it searches folders).

func init() { errAddrInUse = windows.WSAEADDRINUSE }

var wintunLoad struct {
	sync.Mutex
	path string         // loaded from here; "" until a load succeeded
	h    windows.Handle // the module, kept for the process's life
}

// loadWintun loads wintun.dll from %ProgramData%\ZLayer\wintun or the
// executable's folder, once per process (a failure is tried again at the
// next device creation: the DLL may have been installed since).
func loadWintun() (string, error) {
	var exeDir string
	if exe, err := os.Executable(); err == nil {
		exeDir = filepath.Dir(exe)
	}
	return loadWintunFrom(wintunPlaces(os.Getenv("ProgramData"), exeDir))
}

func loadWintunFrom(places []string) (string, error) {
	wintunLoad.Lock()
	defer wintunLoad.Unlock()
	if wintunLoad.path != "" {
		return wintunLoad.path, nil
	}
	p, err := findWintun(places)
	if err != nil {
		return "", err
	}
	// LOAD_WITH_ALTERED_SEARCH_PATH: the DLL's own imports resolve from
	// its folder first. The handle is kept for the process's life.
	h, err := windows.LoadLibraryEx(p, 0, windows.LOAD_WITH_ALTERED_SEARCH_PATH)
	if err != nil {
		return "", fmt.Errorf("load %s: %w", p, err)
	}
	wintunLoad.path, wintunLoad.h = p, h
	return p, nil
}

// CreateDevice implements Kernel: a Wintun adapter named name (its alias),
// its MTU set on both IP interfaces, a wireguard-go device on it, and the
// UAPI named pipe \\.\pipe\ProtectedPrefix\Administrators\WireGuard\<name>
// (what `wg show` on Windows reads). On error, what was opened is closed.
func (k *winKernel) CreateDevice(name string, mtu int, log *slog.Logger) (Device, error) {
	dll, err := loadWintun()
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: %w", name, err)
	}
	t, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("wireguard: %s: create the Wintun adapter (%s): %w", name, dll, err)
	}
	// The adapter's interface shows up in the IP stack a moment after
	// WintunCreateAdapter returns.
	var l Link
	for deadline := time.Now().Add(5 * time.Second); ; {
		l, err = k.Link(name)
		if err == nil || !errors.Is(err, ErrLinkNotFound) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("wireguard: %s: read the new adapter: %w", name, err)
	}
	if err := k.SetMTU(l, mtu); err != nil {
		t.Close()
		return nil, fmt.Errorf("wireguard: %s: set MTU: %w", name, err)
	}
	gl := newGoLogger(log, name)
	wlog := &device.Logger{Verbosef: gl.verbosef, Errorf: gl.errorf}
	h := &winDevice{dev: device.NewDevice(t, conn.NewDefaultBind(), wlog)} // owns t now
	if ln, err := ipc.UAPIListen(name); err != nil {
		log.Warn("wireguard: no UAPI pipe; `wg show` will not see this device", "device", name, "err", err)
	} else {
		h.uapi = ln
		go h.serveUAPI(name, log)
	}
	return h, nil
}

// winDevice is a wireguard-go device on Wintun and its UAPI pipe.
type winDevice struct {
	dev  *device.Device
	uapi net.Listener // nil: not served
}

func (h *winDevice) IpcSet(uapi string) error { return h.dev.IpcSet(uapi) }
func (h *winDevice) IpcGet() (string, error)  { return h.dev.IpcGet() }
func (h *winDevice) Up() error                { return h.dev.Up() }

func (h *winDevice) Handshake(pub wgtypes.Key) {
	if p := h.dev.LookupPeer(device.NoisePublicKey(pub)); p != nil {
		go func() { _ = p.SendHandshakeInitiation(false) }()
	}
}

// Close stops the device and closes the adapter: Wintun removes it, and
// Windows its addresses and routes with it.
func (h *winDevice) Close() {
	if h.uapi != nil {
		h.uapi.Close()
	}
	h.dev.Close()
}

// serveUAPI answers `wg` on the pipe until it is closed. wireguard-go's
// Windows listener delivers one Accept error and then never answers
// again, so any error ends the loop (said, unless it is the close).
func (h *winDevice) serveUAPI(name string, log *slog.Logger) {
	for {
		c, err := h.uapi.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Warn("wireguard: UAPI pipe stopped; `wg show` will not see this device", "device", name, "err", err)
			}
			return
		}
		go h.dev.IpcHandle(c)
	}
}

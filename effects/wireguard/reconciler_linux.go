package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// Keys returns private keys by public key (the daemon's key files).
type Keys interface {
	PrivateKey(pub string) (wgtypes.Key, error)
}

// Reconciler owns the node's WireGuard devices.
type Reconciler struct {
	keys Keys
	log  *slog.Logger

	mu      sync.Mutex // guards devices; held while a device is changed
	devices map[string]*wgDevice
}

var _ effects.Reconciler = (*Reconciler)(nil)

// New returns a reconciler with no devices yet.
func New(keys Keys, log *slog.Logger) *Reconciler {
	return &Reconciler{keys: keys, log: log, devices: map[string]*wgDevice{}}
}

func (r *Reconciler) Name() string { return "wireguard" }

// Reconcile converges every device to the state. On a full pass (boot and
// the periodic check) it first re-reads each device and its routes, and
// recreates a device whose link disappeared.
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	if !all {
		relevant := false
		for _, k := range changed {
			relevant = relevant || Relevant(k)
		}
		if !relevant {
			return nil
		}
		// Peer changes only: touch just those peers.
		var changes []PeerChange
		var ok bool
		view.Read(func(st *projections.State) { changes, ok = Incremental(st, changed) })
		if ok {
			if done, err := r.applyChanges(changes); done {
				return err
			}
		}
	}
	var cfgs []Config
	view.Read(func(st *projections.State) { cfgs = Desired(st) })
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	want := map[string]bool{}
	for i := range cfgs {
		c := &cfgs[i]
		want[c.Name] = true
		d := r.devices[c.Name]
		if d != nil && all && !d.alive() {
			r.log.Warn("wireguard device disappeared; recreating it", "device", c.Name)
			d.close()
			delete(r.devices, c.Name)
			d = nil
		}
		if d == nil {
			var err error
			if d, err = createDevice(c.Name, r.log); err != nil {
				errs = append(errs, err)
				continue
			}
			r.devices[c.Name] = d
			r.log.Info("wireguard device created", "device", c.Name, "port", c.Port, "address", c.Address, "peers", len(c.Peers))
		} else if all {
			if err := d.refresh(); err != nil {
				errs = append(errs, err)
			}
		}
		priv, err := r.keys.PrivateKey(c.PublicKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("wireguard: key of %s: %w", c.Name, err))
			continue
		}
		added, err := d.apply(c, priv)
		if err != nil {
			errs = append(errs, err)
		}
		// A new peer (every peer of a new device, so after a restart)
		// handshakes at once: its side may still hold a session with our
		// previous incarnation and would otherwise drop our traffic for
		// about 15 s.
		for _, k := range added {
			d.handshake(k)
		}
	}
	for name, d := range r.devices {
		if !want[name] {
			d.close()
			delete(r.devices, name)
			r.log.Info("wireguard device removed", "device", name)
		}
	}
	return errors.Join(errs...)
}

// applyChanges applies peer changes to running devices. done is false when
// a device is missing and a full pass must run instead.
func (r *Reconciler) applyChanges(changes []PeerChange) (done bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byDev := map[string]map[string]*Peer{}
	for _, ch := range changes {
		if r.devices[ch.Device] == nil {
			return false, nil
		}
		if byDev[ch.Device] == nil {
			byDev[ch.Device] = map[string]*Peer{}
		}
		byDev[ch.Device][ch.PublicKey] = ch.Peer
	}
	var errs []error
	for name, want := range byDev {
		d := r.devices[name]
		added, err := d.applyPeers(want, d.addr.Masked())
		if err != nil {
			errs = append(errs, err)
		}
		for _, k := range added {
			d.handshake(k)
		}
	}
	return true, errors.Join(errs...)
}

// ErrNoDevice is returned for a device the reconciler does not run.
var ErrNoDevice = errors.New("wireguard: no such device")

// Stats reads a device's peers.
func (r *Reconciler) Stats(name string) (*DeviceStats, error) {
	r.mu.Lock()
	d := r.devices[name]
	r.mu.Unlock()
	if d == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoDevice, name)
	}
	return d.stats()
}

// Handshake makes a device initiate a handshake with a peer now.
func (r *Reconciler) Handshake(name, pub string) {
	r.mu.Lock()
	d := r.devices[name]
	r.mu.Unlock()
	if d != nil {
		d.handshake(pub)
	}
}

// Close removes every device (the daemon is stopping).
func (r *Reconciler) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, d := range r.devices {
		d.close()
		delete(r.devices, name)
	}
	return nil
}

// Relevant implements effects.Filter.
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }

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
//
// Its errors are effects.KeyErrors keyed by the state key of the object a
// device serves: "global" for the global device, "service/<name>" for a
// dedicated service's device. A device that failed keeps what it has and
// is tried again at every pass.
type Reconciler struct {
	keys   Keys
	log    *slog.Logger
	kernel Kernel    // nil: no data plane on this platform
	once   sync.Once // the "not implemented" warning without a kernel

	mu      sync.Mutex // guards devices; held while a device is changed
	devices map[string]*wgDevice

	repairs effects.Repairs // drift put back by full passes (effects.Repairer)
}

// Repaired implements effects.Repairer: devices made again after their
// link disappeared ("wireguard_device"), and, on the periodic check,
// peers ("wireguard_peer") and routes ("wireguard_route") found missing
// or added behind the daemon's back and put right.
func (r *Reconciler) Repaired() map[string]uint64 { return r.repairs.Repaired() }

var _ effects.Reconciler = (*Reconciler)(nil)

func newReconciler(keys Keys, log *slog.Logger, k Kernel) *Reconciler {
	return &Reconciler{keys: keys, log: log, kernel: k, devices: map[string]*wgDevice{}}
}

func (r *Reconciler) Name() string { return "wireguard" }

// keyOf is the state key of the object cfg's device serves.
func keyOf(sc projections.Scope) string {
	if sc.Service == "" {
		return "global"
	}
	return "service/" + sc.Service
}

// Reconcile converges every device to the state. On a full pass (boot and
// the periodic check) it first re-reads each device and its routes, and
// makes a device again only when the kernel says its link no longer
// exists; any other error reading it (EMFILE, ENOBUFS, …) keeps the device
// and fails the pass for its key, to be tried again.
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	if r.kernel == nil {
		r.once.Do(func() { r.log.Warn("the WireGuard data plane is not implemented on this platform yet") })
		return nil
	}
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
	errs := effects.KeyErrors{}
	want := map[string]bool{}
	for i := range cfgs {
		c := &cfgs[i]
		want[c.Name] = true
		if err := r.ensureDevice(c, all); err != nil {
			errs[keyOf(c.Scope)] = err
		}
	}
	for name, d := range r.devices {
		if !want[name] {
			d.close()
			delete(r.devices, name)
			r.log.Info("wireguard device removed", "device", name)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// ensureDevice converges one device (check: re-read it first).
func (r *Reconciler) ensureDevice(c *Config, check bool) error {
	d := r.devices[c.Name]
	if d != nil && check {
		_, err := d.link()
		switch {
		case errors.Is(err, ErrLinkNotFound):
			r.log.Warn("wireguard device disappeared; making it again", "device", c.Name, "err", err)
			r.repairs.Add("wireguard_device", 1)
			d.close()
			delete(r.devices, c.Name)
			d = nil
		case err != nil:
			return fmt.Errorf("wireguard: %s: check the link (the device is kept): %w", c.Name, err)
		}
	}
	priv, err := r.keys.PrivateKey(c.PublicKey)
	if err != nil {
		return fmt.Errorf("wireguard: %s: private key: %w", c.Name, err)
	}
	var drift driftCount
	if d == nil {
		dev, err := r.kernel.CreateDevice(c.Name, effects.MTU, r.log)
		if err != nil {
			return err
		}
		d = newDevice(c.Name, r.kernel, dev)
		r.devices[c.Name] = d
		r.log.Info("wireguard device created", "device", c.Name, "port", c.Port, "address", c.Address, "peers", len(c.Peers))
	} else if check {
		before := d.appliedKeys()
		if err := d.refresh(); err != nil {
			return err
		}
		drift = d.driftSince(before)
	}
	added, err := d.apply(c, priv)
	if err == nil {
		r.repairs.Add("wireguard_peer", drift.peers)
		r.repairs.Add("wireguard_route", drift.routes)
	}
	// A new peer (every peer of a new device, so after a restart)
	// handshakes at once: its side may still hold a session with our
	// previous incarnation and would otherwise drop our traffic for
	// about 15 s.
	for _, k := range added {
		d.handshake(k)
	}
	return err
}

// applyChanges applies peer changes to running devices. done is false when
// a device is missing and a full pass must run instead.
func (r *Reconciler) applyChanges(changes []PeerChange) (done bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byDev := map[string]map[string]*Peer{}
	keyOfDev := map[string]string{}
	for _, ch := range changes {
		if r.devices[ch.Device] == nil {
			return false, nil
		}
		if byDev[ch.Device] == nil {
			byDev[ch.Device] = map[string]*Peer{}
		}
		byDev[ch.Device][ch.PublicKey] = ch.Peer
		keyOfDev[ch.Device] = keyOf(ch.Scope)
	}
	errs := effects.KeyErrors{}
	for name, want := range byDev {
		d := r.devices[name]
		added, err := d.applyPeers(want, d.addr.Masked())
		if err != nil {
			errs[keyOfDev[name]] = err
		}
		for _, k := range added {
			d.handshake(k)
		}
	}
	if len(errs) > 0 {
		return true, errs
	}
	return true, nil
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

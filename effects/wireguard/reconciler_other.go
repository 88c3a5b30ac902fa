//go:build !linux

package wireguard

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/effects"
)

// Keys returns private keys by public key (the daemon's key files).
type Keys interface {
	PrivateKey(pub string) (wgtypes.Key, error)
}

// Reconciler is a placeholder on platforms without a data plane yet: it
// reports, once, that devices are not created.
type Reconciler struct {
	log  *slog.Logger
	once sync.Once
}

// New returns the placeholder reconciler.
func New(_ Keys, log *slog.Logger) *Reconciler { return &Reconciler{log: log} }

func (r *Reconciler) Name() string { return "wireguard" }

func (r *Reconciler) Reconcile(context.Context, effects.View, []string, bool) error {
	r.once.Do(func() { r.log.Warn("the WireGuard data plane is not implemented on this platform yet") })
	return nil
}

// ErrNoDevice is returned for a device the reconciler does not run.
var ErrNoDevice = errors.New("wireguard: no such device")

func (r *Reconciler) Stats(string) (*DeviceStats, error) { return nil, ErrNoDevice }
func (r *Reconciler) Handshake(string, string)           {}
func (r *Reconciler) Close() error                       { return nil }

// Relevant implements effects.Filter.
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }

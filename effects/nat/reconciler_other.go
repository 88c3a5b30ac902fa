//go:build !linux

package nat

import (
	"context"
	"log/slog"
	"sync"

	"github.com/zlayer/overlayd/effects"
)

// Reconciler is a placeholder where nftables does not exist (Windows NAT
// goes through HCN networks).
type Reconciler struct {
	log  *slog.Logger
	once sync.Once
}

// New returns the placeholder.
func New(log *slog.Logger, _ effects.Owner) *Reconciler { return &Reconciler{log: log} }

func (r *Reconciler) Name() string             { return "nat" }
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }
func (r *Reconciler) Close() error             { return nil }

func (r *Reconciler) Reconcile(context.Context, effects.View, []string, bool) error {
	r.once.Do(func() { r.log.Warn("nftables NAT is not available on this platform") })
	return nil
}

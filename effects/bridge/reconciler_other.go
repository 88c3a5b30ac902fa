//go:build !linux

package bridge

import (
	"context"
	"log/slog"
	"sync"

	"github.com/zlayer/overlayd/effects"
)

// Detacher journals the detach of an attachment whose container is gone.
type Detacher func(handleKey, reason string)

// Reconciler is a placeholder on platforms without bridges.
type Reconciler struct {
	log  *slog.Logger
	once sync.Once
}

// New returns the placeholder.
func New(log *slog.Logger, _ Detacher, _ effects.Owner) *Reconciler { return &Reconciler{log: log} }

func (r *Reconciler) Name() string             { return "bridge" }
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }
func (r *Reconciler) Close() error             { return nil }

func (r *Reconciler) Reconcile(context.Context, effects.View, []string, bool) error {
	r.once.Do(func() { r.log.Warn("service bridges are not implemented on this platform") })
	return nil
}

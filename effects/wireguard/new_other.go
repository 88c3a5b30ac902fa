//go:build !linux && !windows

package wireguard

import "log/slog"

// New returns a reconciler without a data plane: there is none on this
// platform yet, and it says so, once, instead of making devices.
func New(keys Keys, log *slog.Logger) *Reconciler { return newReconciler(keys, log, nil) }

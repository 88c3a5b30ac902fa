package effects

import (
	"log/slog"
	"time"
)

// failLog turns a worker's problems into log lines by transition, so that a
// failure retried at every check is one warning, not one per check: a
// problem that is new, or whose error changed, is logged at warn; the same
// error again at debug; a problem that cleared at info, with how long it
// lasted. Used by the worker's goroutine only.
type failLog struct {
	logged map[string]Problem // by key: the problems last logged
}

// pass logs the transitions of problems after a pass of reconciler name.
func (f *failLog) pass(log *slog.Logger, name string, problems []Problem) {
	now := make(map[string]Problem, len(problems))
	for _, p := range problems {
		now[p.Key] = p
		old, seen := f.logged[p.Key]
		switch {
		case !seen:
			log.Warn("effect failed; retried at every check until it succeeds", "reconciler", name, "key", p.Key, "err", p.Err)
		case old.Err.Error() != p.Err.Error():
			log.Warn("effect still failing, with another error", "reconciler", name, "key", p.Key, "err", p.Err, "failing_for", time.Since(p.Since).Round(time.Second))
		default:
			log.Debug("effect still failing", "reconciler", name, "key", p.Key, "err", p.Err, "failing_for", time.Since(p.Since).Round(time.Second))
		}
	}
	for k, old := range f.logged {
		if _, still := now[k]; !still {
			log.Info("effect recovered", "reconciler", name, "key", k, "failed_for", time.Since(old.Since).Round(time.Millisecond))
		}
	}
	f.logged = now
}

package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/zlayer/overlayd/ipc"
)

// The decision log: one line per answered request, through the daemon's
// logger (d.onAnswer). A decision (a mutating op, authz.go) is logged at
// info with its op, request id, caller (uid, gid, pid, exe), result ("ok",
// the err message, or the kind of the answer) and duration. Reads are
// logged at debug, and so is a nat_tick that changed nothing (the
// orchestrator sends it periodically; one that journaled an endpoint is a
// decision at info). A refusal by the authorizer is logged at warn by the
// authorizer (rate-limited per connection), so its decision line is at
// debug: a client that floods refused requests cannot flood the log. A
// frame that did not decode is logged at debug.
//
// Nothing secret reaches this line: a guest's private key travels only in
// the answer's private_key field, and the result logged for it is its kind
// ("guest_config").

type decisionLog struct {
	log *slog.Logger
	// changed holds the nat_ticks that journaled something, until their
	// answer is logged: the job's after hook runs before the answer is
	// ready (sequencer.go), so the mark is there when Observe runs.
	mu      sync.Mutex
	changed map[reqKey]bool
}

type reqKey struct{ conn, req uint64 }

func (d *Daemon) startDecisionLog() {
	d.dlog = &decisionLog{log: d.log, changed: map[reqKey]bool{}}
	d.onAnswer(d.dlog.observe)
}

// markChanged records that m's nat_tick journaled an event.
func (l *decisionLog) markChanged(m ipc.Meta) {
	l.mu.Lock()
	if len(l.changed) >= 1024 {
		// Marks of answers never observed (their connection went first):
		// forget them rather than grow.
		clear(l.changed)
	}
	l.changed[reqKey{m.ConnID, m.RequestID}] = true
	l.mu.Unlock()
}

func (l *decisionLog) takeChanged(m ipc.Meta) bool {
	k := reqKey{m.ConnID, m.RequestID}
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := l.changed[k]
	delete(l.changed, k)
	return ok
}

func (l *decisionLog) observe(a ipc.Answered) {
	op := a.Op()
	result, errMsg := resultOf(a.Response)
	level := slog.LevelDebug
	msg := "read"
	switch {
	case a.Request == nil:
		msg = "unreadable request"
	case !mutating(op):
	case errMsg != "" && strings.HasPrefix(errMsg, permissionDenied):
		msg = "decision refused"
	case op == "nat_tick":
		msg = "decision"
		if l.takeChanged(a.Meta) || errMsg != "" {
			level = slog.LevelInfo
		}
	default:
		msg, level = "decision", slog.LevelInfo
	}
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("op", op), slog.Uint64("request_id", a.Meta.RequestID), slog.Uint64("conn", a.Meta.ConnID))
	if a.Meta.HasPeer {
		p := a.Meta.Peer
		attrs = append(attrs, slog.Uint64("uid", uint64(p.UID)), slog.Uint64("gid", uint64(p.GID)), slog.Uint64("pid", uint64(p.PID)), slog.String("exe", p.Exe))
	}
	attrs = append(attrs, slog.String("result", result))
	if errMsg != "" {
		attrs = append(attrs, slog.String("err", errMsg))
	}
	attrs = append(attrs, slog.Duration("took", a.Took))
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// resultOf is the result logged for r: "ok", "err" (with the message), or
// the kind of the answer. Never its content: a guest_config carries a
// private key.
func resultOf(r ipc.Response) (result, errMsg string) {
	switch v := r.(type) {
	case nil:
		return "none", ""
	case ipc.Err:
		return "err", v.Message
	case *ipc.Err:
		return "err", v.Message
	default:
		return r.Result(), ""
	}
}

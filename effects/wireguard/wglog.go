package wireguard

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// wireguard-go logs through two printf functions (device.Logger). Its
// per-peer errors ("peer(AbCd…WxYz) - Failed to send handshake
// initiation: …", every 5 s while a peer's endpoint is unreachable, and
// the other "%v - Failed to …" lines of device/send.go and receive.go)
// would fill the log; goLogger folds them into one line per peer and
// message: the first at once at warn, then at most one per foldEvery with
// the number left out since. Other errors pass through at warn, verbose
// lines at debug. The peer is named as wireguard-go prints it (the first
// and last characters of its public key); wireguard-go prints no private
// key.

// foldEvery is how often a repeated per-peer error is logged.
const foldEvery = time.Minute

// foldMax bounds the lines tracked (peers × messages); past it the oldest
// is forgotten (its next error is logged at once).
const foldMax = 4096

type goLogger struct {
	log    *slog.Logger
	device string
	now    func() time.Time

	mu    sync.Mutex
	lines map[foldKey]*foldState
}

type foldKey struct{ peer, format string }

type foldState struct {
	last       time.Time
	suppressed int
}

func newGoLogger(log *slog.Logger, device string) *goLogger {
	return &goLogger{log: log, device: device, now: time.Now, lines: map[foldKey]*foldState{}}
}

// verbosef is device.Logger.Verbosef.
func (g *goLogger) verbosef(format string, args ...any) {
	if !g.log.Enabled(context.Background(), slog.LevelDebug) {
		return // no formatting: wireguard-go calls this on its packet paths
	}
	g.log.Debug("wireguard-go: "+fmt.Sprintf(format, args...), "device", g.device)
}

// errorf is device.Logger.Errorf.
func (g *goLogger) errorf(format string, args ...any) {
	rest, perPeer := strings.CutPrefix(format, "%v - ")
	if !perPeer || len(args) == 0 {
		g.log.Warn("wireguard-go: "+fmt.Sprintf(format, args...), "device", g.device)
		return
	}
	peer := fmt.Sprint(args[0])
	k := foldKey{peer: peer, format: rest}
	now := g.now()
	g.mu.Lock()
	st := g.lines[k]
	if st == nil {
		if len(g.lines) >= foldMax {
			g.forgetOldest()
		}
		st = &foldState{}
		g.lines[k] = st
	} else if now.Sub(st.last) < foldEvery {
		st.suppressed++
		g.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.last, st.suppressed = now, 0
	g.mu.Unlock()
	attrs := []any{"device", g.device, "peer", peer}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed, "in_the_last", foldEvery.String())
	}
	g.log.Warn("wireguard-go: "+fmt.Sprintf(rest, args[1:]...), attrs...)
}

func (g *goLogger) forgetOldest() {
	var oldest foldKey
	var at time.Time
	first := true
	for k, st := range g.lines {
		if first || st.last.Before(at) {
			oldest, at, first = k, st.last, false
		}
	}
	delete(g.lines, oldest)
}

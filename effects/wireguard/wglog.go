package wireguard

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/zlayer/overlayd/effects"
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

	lines effects.Folder[foldKey]
}

type foldKey struct{ peer, format string }

func newGoLogger(log *slog.Logger, device string) *goLogger {
	return &goLogger{log: log, device: device, now: time.Now, lines: effects.Folder[foldKey]{Every: foldEvery, Max: foldMax}}
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
	ok, suppressed := g.lines.Allow(foldKey{peer: peer, format: rest}, g.now())
	if !ok {
		return
	}
	attrs := []any{"device", g.device, "peer", peer}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed, "in_the_last", foldEvery.String())
	}
	g.log.Warn("wireguard-go: "+fmt.Sprintf(rest, args[1:]...), attrs...)
}

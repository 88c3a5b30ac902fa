package daemon

import (
	"time"

	"github.com/zlayer/overlayd/effects/wireguard"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// healthMonitor watches every peer's last handshake and pushes
// peer_health_changed when a peer becomes healthy (a handshake at most
// PeerUnhealthyAfter old) or unhealthy. It keeps sessions fresh: a peer
// whose handshake is older than half the threshold is asked for a new one,
// so a live peer never ages past the threshold, and a dead one is noticed
// within it.
type healthMonitor struct {
	d         *Daemon
	threshold time.Duration
	state     map[string]bool      // scope/key -> healthy, once known
	firstSeen map[string]time.Time // when the monitor first saw the peer
	stopCh    chan struct{}
	done      chan struct{}
}

func startHealth(d *Daemon) *healthMonitor {
	m := &healthMonitor{d: d, threshold: d.cfg.PeerUnhealthyAfter, state: map[string]bool{}, firstSeen: map[string]time.Time{},
		stopCh: make(chan struct{}), done: make(chan struct{})}
	go m.loop()
	return m
}

func (m *healthMonitor) stop() {
	close(m.stopCh)
	<-m.done
}

func (m *healthMonitor) loop() {
	defer close(m.done)
	interval := min(max(m.threshold/4, 200*time.Millisecond), 5*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stopCh:
			return
		case now := <-t.C:
			m.check(now)
		}
	}
}

// devicePeers is what the monitor needs of one device.
type devicePeers struct {
	name  string
	scope projections.Scope
	peers []*projections.Peer
}

func (d *Daemon) devicesAndPeers() []devicePeers {
	var out []devicePeers
	d.decided.Read(func(st *projections.State) {
		for _, c := range wireguard.Desired(st) {
			dp := devicePeers{name: c.Name, scope: c.Scope}
			for _, p := range st.PeersOf(c.Scope) {
				cp := *p
				dp.peers = append(dp.peers, &cp)
			}
			out = append(out, dp)
		}
	})
	return out
}

func (m *healthMonitor) check(now time.Time) {
	seen := map[string]bool{}
	for _, dev := range m.d.devicesAndPeers() {
		stats, err := m.d.wg.Stats(dev.name)
		if err != nil {
			continue // not created yet: the reconciler reports why
		}
		byKey := map[string]wireguard.PeerStats{}
		for _, ps := range stats.Peers {
			byKey[ps.PublicKey] = ps
		}
		for _, p := range dev.peers {
			id := dev.scope.Key() + "/" + p.PublicKey
			seen[id] = true
			if _, ok := m.firstSeen[id]; !ok {
				m.firstSeen[id] = now
			}
			last := byKey[p.PublicKey].LastHandshake
			age := now.Sub(last)
			canProbe := p.Endpoint != "" || p.ObservedEndpoint != "" || byKey[p.PublicKey].Endpoint != ""
			if canProbe && (last.IsZero() || age > m.threshold/2) {
				m.d.wg.Handshake(dev.name, p.PublicKey)
			}
			var healthy bool
			switch {
			case !last.IsZero() && age <= m.threshold:
				healthy = true
			case now.Sub(m.firstSeen[id]) <= m.threshold:
				continue // never shook hands, but it is early to tell
			}
			if prev, known := m.state[id]; known && prev == healthy {
				continue
			}
			m.state[id] = healthy
			m.d.log.Info("peer health changed", "peer", p.PublicKey, "scope", dev.scope.String(), "healthy", healthy,
				"last_handshake", last.Format(time.RFC3339))
			m.d.server.Broadcast(ipc.PeerHealthChanged{Pubkey: p.PublicKey, Healthy: healthy})
		}
	}
	for id := range m.state {
		if !seen[id] {
			delete(m.state, id)
		}
	}
	for id := range m.firstSeen {
		if !seen[id] {
			delete(m.firstSeen, id)
		}
	}
}

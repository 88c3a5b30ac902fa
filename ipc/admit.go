package ipc

import (
	"container/list"
	"fmt"
	"net"
	"time"
)

// admit serves nc, or refuses it at the connection limit, or evicts an
// older connection that never completed a frame to make room for it.
func (s *Server) admit(nc net.Conn) {
	peer, hasPeer := peerCreds(nc)
	root := hasPeer && peer.UID == 0
	s.mu.Lock()
	if s.isClosed() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	victim, refusal, atLimit := s.makeRoom(root)
	if refusal != "" {
		open := s.open
		s.mu.Unlock()
		s.st.refused.Add(1)
		s.noteLimit("refusing", open, peer, hasPeer)
		refuse(nc, refusal)
		return
	}
	c := s.newConn(nc, peer, hasPeer, root)
	s.conns[c] = struct{}{}
	s.holdSlot(c)
	s.wg.Add(2)
	open := s.open
	s.mu.Unlock()
	if victim != nil {
		s.st.evicted.Add(1)
		s.noteLimit("evicting", open, peer, hasPeer)
		s.log().Debug("evicting a connection that completed no frame", "conn", victim.id, "age", time.Since(victim.since).Round(time.Millisecond).String())
		victim.kill(fmt.Sprintf("evicted: %d connections open (limit %d) and this one had not sent a complete frame since it connected %s ago",
			open, s.lim.maxConns, time.Since(victim.since).Round(time.Millisecond)))
	} else if !atLimit {
		if n, lasted, ok := s.limitBurst.end(time.Now()); ok {
			s.log().Info("connection limit no longer reached", "turned_away", n, "for", lasted.Round(time.Millisecond).String(), "open", open, "limit", s.lim.maxConns)
		}
	}
	go c.read()
	go c.collect()
}

// makeRoom decides, under s.mu, whether a new connection from a root peer
// (or not) fits: nothing to do; fits once victim (already released from
// its slot) is evicted; or refused with the message. atLimit is whether
// the limit was reached.
//
// Eviction takes the oldest connection that holds a slot and has completed
// no frame: idle since it connected, or stuck in its first frame. The
// orchestrator's connection sends requests as soon as it is open and then
// is never a candidate, however long it idles; a peer that hoards idle
// connections loses them first. A non-root peer never evicts a root one.
func (s *Server) makeRoom(root bool) (victim *serverConn, refusal string, atLimit bool) {
	limit, reserved := s.lim.maxConns, s.lim.reservedRoot
	otherLimit := limit - reserved
	fits := func() bool { return s.open < limit && (root || s.openOther < otherLimit) }
	if fits() {
		return nil, "", false
	}
	// A non-root victim first; a root one only for a root newcomer.
	if e := s.unframedOther.Front(); e != nil {
		victim = e.Value.(*serverConn)
	} else if e := s.unframedRoot.Front(); e != nil && root {
		victim = e.Value.(*serverConn)
	}
	if victim != nil {
		// Its slot makes room: a root newcomer needed any slot, a non-root
		// one a non-root slot.
		s.releaseSlot(victim)
		return victim, "", true
	}
	if s.open >= limit {
		return nil, fmt.Sprintf("too many connections: %d open (limit %d); try again later", s.open, limit), true
	}
	return nil, fmt.Sprintf("too many connections from non-root peers: %d open (limit %d; %d more are kept for root); try again later",
		s.openOther, otherLimit, reserved), true
}

// holdSlot counts c against the limit and queues it as not yet framed
// (markFramed takes it off the queue).
func (s *Server) holdSlot(c *serverConn) {
	if c.counted {
		return
	}
	c.counted = true
	s.open++
	if !c.root {
		s.openOther++
	}
	c.elem = s.unframedOf(c).PushBack(c)
}

// unframedOf is the list of unframed connections c belongs in.
func (s *Server) unframedOf(c *serverConn) *list.List {
	if c.root {
		return &s.unframedRoot
	}
	return &s.unframedOther
}

// releaseSlot gives c's slot back (eviction, teardown).
func (s *Server) releaseSlot(c *serverConn) {
	if c.elem != nil {
		s.unframedOf(c).Remove(c.elem)
		c.elem = nil
	}
	if !c.counted {
		return
	}
	c.counted = false
	s.open--
	if !c.root {
		s.openOther--
	}
}

// markFramed records c's first complete frame: it is no longer evictable.
func (s *Server) markFramed(c *serverConn) {
	s.mu.Lock()
	if c.elem != nil {
		s.unframedOf(c).Remove(c.elem)
		c.elem = nil
	}
	s.mu.Unlock()
}

// noteLimit logs a refusal or eviction once per burst.
func (s *Server) noteLimit(what string, open int, peer Creds, hasPeer bool) {
	log, n, since := s.limitBurst.hit(time.Now())
	if !log {
		return
	}
	args := []any{"open", open, "limit", s.lim.maxConns, "reserved_for_root", s.lim.reservedRoot}
	if hasPeer {
		args = append(args, "uid", peer.UID, "pid", peer.PID)
	}
	if n == 1 {
		s.log().Warn("connection limit reached: "+what+" new connections (logged once per burst)", args...)
		return
	}
	s.log().Warn("connection limit still reached", append(args, "turned_away", n, "since", since.Format(time.RFC3339))...)
}

package daemon

import (
	"context"
	"fmt"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// handle turns one decoded request into a pipeline job (or answers an
// inspection op directly). It runs on the connection's reader goroutine and
// must not block: I/O that a command needs (the process's namespace inode, a
// generated key) is done here, before the sequencer.
func (d *Daemon) handle(m ipc.Meta, req ipc.Request) <-chan ipc.Response {
	if refusal := d.authz.check(m, req.Op()); refusal != nil {
		return ipc.Reply(refusal) // nothing decided, nothing journaled (authz.go)
	}
	cause := journal.Cause{Op: req.Op(), RequestID: m.RequestID, HasPeer: m.HasPeer, UID: m.Peer.UID, PID: m.Peer.PID, Exe: m.Peer.Exe}
	j := &job{cause: cause}
	switch r := req.(type) {
	case ipc.SetLocalNodeID:
		j.cmd = projections.SetNodeID{NodeID: r.NodeID}
	case ipc.SetLocalWgPubkey:
		if r.Pubkey != d.nodePub {
			d.log.Warn("the orchestrator announces a WireGuard key that is not this daemon's; status keeps reporting the daemon's key, which peers must use",
				"announced", r.Pubkey, "public_key", d.nodePub)
		}
		j.cmd = projections.AnnounceKey{PublicKey: r.Pubkey}
	case ipc.SetupGlobalOverlay:
		c := projections.SetupGlobal{Deployment: r.Deployment, InstanceID: r.InstanceID, ClusterCIDR: r.ClusterCIDR,
			Port: r.WgPort, NATEnabled: r.NatEnabled}
		if r.SliceCIDR != nil {
			c.SliceCIDR = *r.SliceCIDR
		}
		j.cmd = c
		j.finish = d.effectOutcome(req.Op(), "global")
	case ipc.TeardownGlobalOverlay:
		j.cmd = projections.TeardownGlobal{}
	case ipc.SetupServiceOverlay:
		c := projections.SetupService{Service: r.Service, Mode: string(r.Mode)}
		if r.Mode == ipc.ModeDedicated {
			priv, err := wgtypes.GeneratePrivateKey()
			if err != nil {
				return ipc.Reply(ipc.Err{Message: "setup_service_overlay: generate key: " + err.Error()})
			}
			c.NewPublicKey = priv.PublicKey().String()
			j.before = func(_ *projections.State, dec projections.Decision) error {
				for _, ev := range dec.Events {
					if s, ok := ev.(*projections.ServiceSetUp); ok && s.Dedicated != nil && s.Dedicated.PublicKey == c.NewPublicKey {
						if err := d.keys.Save(priv); err != nil {
							return fmt.Errorf("store the dedicated device's key: %w", err)
						}
					}
				}
				return nil
			}
		}
		j.cmd = c
		j.finish = d.effectOutcome(req.Op(), "service/"+r.Service)
	case ipc.TeardownServiceOverlay:
		j.cmd = projections.TeardownService{Service: r.Service}
		d.removeKeyOnTeardown(j, r.Service) // keys.go
	case ipc.AllocateIP:
		j.cmd = projections.AllocateIP{Service: r.Service, JoinGlobal: r.JoinGlobal}
	case ipc.ReleaseIP:
		j.cmd = projections.ReleaseIP{IP: r.IP.Addr}
	case ipc.AttachContainer:
		c := projections.Attach{Handle: handleOf(r.Handle), Service: r.Service, JoinGlobal: r.JoinGlobal}
		if r.DNSServer != nil {
			c.DNSServer = r.DNSServer.Addr
		}
		if r.DNSDomain != nil {
			c.DNSDomain = *r.DNSDomain
		}
		if r.Handle.Platform == ipc.PlatformWindows && r.Handle.IP != nil {
			c.HandleIP = r.Handle.IP.Addr // checked against the service's pool by Decide
		}
		switch r.Handle.Platform {
		case ipc.PlatformLinuxPID:
			if r.Handle.PID > 0 {
				c.Proc = procInfo(r.Handle.PID)
			}
			j.finish = d.attachOutcome(c.Handle)
		case ipc.PlatformWindows:
			if err := d.platformProbs.Get("hcn"); err != nil {
				return ipc.Reply(ipc.Err{Message: "attach_container: windows_container needs the Host Networking Service, which this node does not offer: " + err.Error()})
			}
			j.finish = d.attachOutcome(c.Handle) // a failed HCN step is undone and answered err, as on Linux
		case ipc.PlatformGuest:
			priv, err := wgtypes.GeneratePrivateKey()
			if err != nil {
				return ipc.Reply(ipc.Err{Message: "attach_container: generate guest key: " + err.Error()})
			}
			c.NewGuestKey = priv.PublicKey().String()
			c.NodeAddress = d.advertiseAddr()
			j.render = func(rep projections.Reply) ipc.Response {
				gc, ok := rep.(projections.ReplyGuestConfig)
				if !ok {
					return renderReply(rep)
				}
				out := renderReply(gc).(ipc.GuestConfig)
				out.PrivateKey = priv.String() // returned once, never journaled
				return out
			}
		}
		j.cmd = c
	case ipc.DetachContainer:
		j.cmd = projections.Detach{Handle: handleOf(r.Handle)}
	case ipc.AddPeer:
		j.cmd = projections.AddPeer{Scope: scopeOf(r.Scope), PublicKey: r.PublicKey, Endpoint: r.Endpoint,
			AllowedIPs: r.AllowedIPs, Keepalive: r.PersistentKeepaliveSecs}
	case ipc.RemovePeer:
		j.cmd = projections.RemovePeer{Scope: scopeOf(r.Scope), PublicKey: r.Pubkey}
	case ipc.AddAllowedIP:
		j.cmd = projections.AddAllowedIP{Scope: scopeOf(r.Scope), PublicKey: r.Pubkey, CIDR: r.CIDR}
	case ipc.RemoveAllowedIP:
		j.cmd = projections.RemoveAllowedIP{Scope: scopeOf(r.Scope), PublicKey: r.Pubkey, CIDR: r.CIDR}
	case ipc.RegisterDNS:
		j.cmd = projections.RegisterDNS{Name: r.Name, IP: r.IP.Addr}
	case ipc.UnregisterDNS:
		j.cmd = projections.UnregisterDNS{Name: r.Name}
	case ipc.NatTick:
		j.cmd = projections.ObserveEndpoints{Observed: d.observeEndpoints()}
		j.after = func(evs []projections.Event) {
			d.dlog.markChanged(m) // a decision, logged at info (decisionlog.go)
			for _, ev := range evs {
				if o, ok := ev.(*projections.PeerEndpointObserved); ok {
					d.log.Info("peer endpoint changed", "peer", o.PublicKey, "scope", o.Scope.String(), "endpoint", o.Endpoint)
					d.server.Broadcast(ipc.NatEndpointChanged{Pubkey: o.PublicKey, Endpoint: o.Endpoint})
				}
			}
		}
		// The orchestrator ticks this periodically: check the NAT table
		// against the state too (and repair it) before answering.
		ch := make(chan ipc.Response, 1)
		go func() {
			resp := <-d.submit(j)
			if d.runner != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := d.runner.ReconcileOne(ctx, "nat"); err != nil {
					d.log.Warn("nat_tick: NAT check", "err", err)
				}
				cancel()
			}
			ch <- resp
		}()
		return ch
	case ipc.Status:
		j.read = d.status
		j.finish = d.statusLive
	case ipc.StateDump:
		if r.At != nil && r.DumpID == nil {
			// An earlier state: rebuilt from the journal, off the
			// sequencer.
			ch := make(chan ipc.Response, 1)
			go func() { ch <- d.stateDumpAt(*r.At) }()
			return ch
		}
		read, finish, direct := d.stateDump(r)
		if direct != nil {
			return ipc.Reply(direct)
		}
		j.read, j.finish = read, finish
	case ipc.Shutdown:
		d.log.Warn("shutdown requested; stopping", "uid", m.Peer.UID, "pid", m.Peer.PID, "exe", m.Peer.Exe, "has_peer", m.HasPeer, "request_id", m.RequestID, "conn", m.ConnID)
		go d.Stop()
		return ipc.Reply(ipc.OK{})
	case ipc.JournalList:
		// Off the connection's reader: it reads the journal file.
		ch := make(chan ipc.Response, 1)
		go func() { ch <- d.journalList(r) }()
		return ch
	case ipc.JournalCompact:
		ch := make(chan ipc.Response, 1)
		go func() { ch <- d.journalCompact(r) }()
		return ch
	case ipc.JournalQuery:
		ch := make(chan ipc.Response, 1)
		go func() { ch <- d.journalQuery(r) }()
		return ch
	case ipc.JournalStats:
		ch := make(chan ipc.Response, 1)
		go func() { ch <- d.journalStats() }()
		return ch
	case ipc.JournalVerify:
		ch := make(chan ipc.Response, 1)
		go func() { ch <- d.journalVerify(r) }()
		return ch
	case ipc.JournalFollow: // LIVE (follow.go)
		return ipc.Reply(d.journalFollow(r))
	case ipc.JournalBackup: // LIVE (backup.go): off the connection's reader
		ch := make(chan ipc.Response, 1)
		go func() { ch <- d.journalBackup(r) }()
		return ch
	default:
		return ipc.Reply(ipc.Err{Message: fmt.Sprintf("%s: not supported by this daemon", req.Op())})
	}
	return d.submit(j)
}

// attachOutcome checks, once the effects ran, whether the container this
// request attached was wired. If a step failed, the bridge reconciler has
// already removed what it created; the attach is then undone in the journal
// too (a detach with the reason) and the answer is an error naming the step.
func (d *Daemon) attachOutcome(h projections.Handle) func(ipc.Response, []projections.Event) ipc.Response {
	return func(resp ipc.Response, evs []projections.Event) ipc.Response {
		var attached *projections.ContainerAttached
		for _, ev := range evs {
			if a, ok := ev.(*projections.ContainerAttached); ok && a.Handle == h {
				attached = a
			}
		}
		if attached == nil || d.runner == nil {
			return resp
		}
		err := d.runner.Err("attachment/" + h.Key())
		if err == nil {
			return resp
		}
		reason := "attach failed: " + err.Error()
		r := <-d.submit(&job{cmd: projections.Detach{Handle: h, Reason: reason, IfNetnsInode: attached.NetnsInode},
			cause: journal.Cause{Op: "attach_container"}})
		if e, isErr := r.(ipc.Err); isErr {
			d.log.Error("undoing a failed attach", "handle", h.Key(), "err", e.Message)
		}
		return ipc.Err{Message: "attach_container: " + err.Error()}
	}
}

// effectOutcome answers err when the effects could not put the object
// behind key in place (a WireGuard port another process holds, a bridge
// that cannot be made): the decision stays journaled and every check
// retries it, but an answer of success must mean the effect is there.
func (d *Daemon) effectOutcome(op, key string) func(ipc.Response, []projections.Event) ipc.Response {
	return func(resp ipc.Response, _ []projections.Event) ipc.Response {
		if isErr(resp) || d.runner == nil {
			return resp
		}
		if err := d.runner.Err(key); err != nil {
			return ipc.Err{Message: fmt.Sprintf("%s: recorded, but not in effect: %v (retried at every check; status lists the problem until it is fixed)", op, err)}
		}
		return resp
	}
}

func handleOf(h ipc.AttachHandle) projections.Handle {
	return projections.Handle{Platform: h.Platform, PID: h.PID, ContainerID: h.ContainerID, ID: h.ID}
}

func scopeOf(s *ipc.PeerScope) projections.Scope {
	if s == nil {
		return projections.Scope{}
	}
	return projections.Scope{Service: s.Service}
}

// observeEndpoints lists the endpoints the WireGuard devices use now.
func (d *Daemon) observeEndpoints() []projections.Observation {
	if d.wg == nil {
		return nil
	}
	var out []projections.Observation
	for _, dev := range d.devicesAndPeers() {
		stats, err := d.wg.Stats(dev.name)
		if err != nil {
			continue
		}
		for _, ps := range stats.Peers {
			if ps.Endpoint != "" {
				out = append(out, projections.Observation{Scope: dev.scope, PublicKey: ps.PublicKey, Endpoint: ps.Endpoint})
			}
		}
	}
	return out
}

func (d *Daemon) journalList(r ipc.JournalList) ipc.Response {
	limit := uint32(1000)
	if r.Limit != nil && *r.Limit > 0 {
		limit = min(*r.Limit, 10000)
	}
	out := ipc.JournalEvents{Events: []ipc.JournalEvent{}}
	out.HeadSeq, _ = d.store.Head()
	stop := fmt.Errorf("limit")
	err := d.store.Iterate(r.AfterSeq, false, func(e *journal.Envelope) error {
		if uint32(len(out.Events)) >= limit {
			return stop
		}
		out.Events = append(out.Events, replay.JournalEventOf(e))
		return nil
	})
	if err != nil && err != stop {
		return ipc.Err{Message: "journal_list: " + err.Error()}
	}
	return out
}

func (d *Daemon) journalVerify(req ipc.JournalVerify) ipc.Response {
	var live []byte
	var seq uint64
	// A copy under the lock; the encoding (and the replays) outside it,
	// so that commands are not held up.
	var cl *projections.State
	err := d.decided.settled(func(st *projections.State, _ [32]byte) error {
		cl = st.Clone()
		return nil
	})
	if err == nil {
		seq = cl.Seq
		live, err = cl.CanonicalJSON()
	}
	if err != nil {
		return ipc.Err{Message: "journal_verify: " + err.Error()}
	}
	rep, err := replay.Verify(d.store, live, seq)
	if err != nil {
		return ipc.Err{Message: "journal_verify: " + err.Error()}
	}
	if req.Archives != nil {
		rep.AddArchives(d.store, *req.Archives) // CMP
	}
	b, err := jsonMarshal(rep)
	if err != nil {
		return ipc.Err{Message: "journal_verify: " + err.Error()}
	}
	return ipc.JournalReport{OK: rep.OK(), Report: b, Problems: rep.Problems}
}

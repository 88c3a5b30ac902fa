package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// Detacher journals the detach of an attachment whose container is gone
// (the reconciler never changes the state itself). It must not block.
type Detacher func(handleKey, reason string)

// Reconciler owns the service bridges and the containers' veths.
type Reconciler struct {
	log    *slog.Logger
	detach Detacher
	k      Kernel
	marks  marks

	mu sync.Mutex // one pass at a time (the runner already serialises)
	// wired maps a handle key to the incarnation (handle and namespace)
	// whose links exist, so a detach finds them after the state forgot.
	wired map[string]*Attachment
	// adopted is set after the first full pass that could list the links,
	// which re-applies every attachment (adopting what survived a restart,
	// container side included); later ones re-apply only those whose
	// wiring is off.
	adopted bool
	// peerNext is where the next periodic pass starts looking at the
	// containers' ends (in handle order).
	peerNext int
	// bridgeMu serialises making a missing bridge again during an attach
	// (attaches run in parallel).
	bridgeMu sync.Mutex
	// ours holds the bridges ensureBridge found (or made) and marked as
	// this owner's, by name, with their index: an attach puts a container
	// only on such a bridge, found by an index lookup of a few µs.
	oursMu sync.Mutex
	ours   map[string]int

	// repairs counts drift put back (effects.Repairer); failMu guards
	// failures, the attaches that failed by step (metrics).
	repairs  effects.Repairs
	failMu   sync.Mutex
	failures map[string]uint64
}

var _ effects.Reconciler = (*Reconciler)(nil)

// New returns the reconciler of the daemon's network namespace, through
// netlink. owner is whose marks it writes, and the only owner whose links
// it adopts, repairs or deletes (doc.go). detach is called for containers
// found gone.
func New(log *slog.Logger, detach Detacher, owner effects.Owner) *Reconciler {
	return newReconciler(log, detach, owner, newKernel())
}

// newReconciler is New over another Kernel (a fake, in tests). The
// reconciler owns k: Close closes it.
func newReconciler(log *slog.Logger, detach Detacher, owner effects.Owner, k Kernel) *Reconciler {
	return &Reconciler{log: log, detach: detach, k: k, marks: newMarks(owner),
		wired: map[string]*Attachment{}, ours: map[string]int{}}
}

func (r *Reconciler) Name() string             { return "bridge" }
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }
func attachmentKey(handleKey string) string    { return "attachment/" + handleKey }

// parallel bounds the containers wired at the same time.
const parallel = 16

// peerChecks bounds the containers whose ends a periodic pass looks at.
const peerChecks = 32

// Reconcile converges bridges and attachments. A change that names
// services and attachments touches just those; a full pass also checks
// every container's process and namespace, adopts what exists, and removes
// the links marked as this owner's that belong to nothing. Per-object
// failures come back as effects.KeyErrors.
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !all {
		var chs []Change
		var ok bool
		var specs map[string]*Bridge
		view.Read(func(st *projections.State) {
			if chs, ok = Changes(st, changed); ok {
				specs = bridgesOf(st, chs)
			}
		})
		if ok {
			return r.apply(chs, specs)
		}
	}
	return r.full(view, changed)
}

func (r *Reconciler) apply(chs []Change, specs map[string]*Bridge) error {
	keyErrs := effects.KeyErrors{}
	var errs []error
	var atts []*Attachment
	for _, ch := range chs {
		switch {
		case ch.Service != "" && ch.Bridge != nil:
			if err := r.ensureBridge(ch.Bridge); err != nil {
				errs = append(errs, err)
				keyErrs["service/"+ch.Service] = err
			}
		case ch.Service != "":
			if err := r.removeBridge(ch.Service); err != nil {
				errs = append(errs, err)
			}
		case ch.Att != nil:
			atts = append(atts, ch.Att)
		default:
			r.unwire(ch.Key)
		}
	}
	for key, err := range r.wireAll(atts, specs) {
		keyErrs[attachmentKey(key)] = err
	}
	if len(keyErrs) > 0 {
		errs = append(errs, keyErrs)
	}
	return errors.Join(errs...) // errors.As finds the KeyErrors inside
}

// wireAll wires attachments in parallel and returns the failures by key.
func (r *Reconciler) wireAll(atts []*Attachment, specs map[string]*Bridge) map[string]error {
	for _, a := range atts {
		// A new incarnation of a handle (PID reuse): the old links go.
		if old := r.wired[a.Key]; old != nil && old.ID() != a.ID() {
			r.unwire(a.Key)
		}
	}
	failed := forEach(atts, func(a *Attachment) error { return r.ensureAttachment(a, specs[a.Service]) })
	for _, a := range atts {
		if failed[a.Key] == nil {
			r.wired[a.Key] = a
		}
	}
	r.countFailures(failed)
	return failed
}

// countFailures counts failed attaches by the step that failed ("other"
// for an error that names none).
func (r *Reconciler) countFailures(failed map[string]error) {
	if len(failed) == 0 {
		return
	}
	r.failMu.Lock()
	defer r.failMu.Unlock()
	if r.failures == nil {
		r.failures = map[string]uint64{}
	}
	for _, err := range failed {
		s := "other"
		var se *StepError
		if errors.As(err, &se) {
			s = se.Step
		}
		r.failures[s]++
	}
}

// AttachFailures returns how many attaches (wiring a container) failed
// since the start, by step: netns, bridge, veth, lo, route, eth1, other.
func (r *Reconciler) AttachFailures() map[string]uint64 {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	out := make(map[string]uint64, len(r.failures))
	for k, n := range r.failures {
		out[k] = n
	}
	return out
}

// Repaired implements effects.Repairer: bridges made again after they
// disappeared, containers' links wired again after a check found their
// host side ("container_link") or their container side
// ("container_end") off, stray links removed ("stray_link").
func (r *Reconciler) Repaired() map[string]uint64 { return r.repairs.Repaired() }

// forEach runs fn for every attachment, parallel at most at once, and
// returns the errors by handle key.
func forEach(atts []*Attachment, fn func(*Attachment) error) map[string]error {
	failed := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for _, a := range atts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(a); err != nil {
				mu.Lock()
				failed[a.Key] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// unwire deletes a handle's links (both legs), as far as they are known
// and this owner's.
func (r *Reconciler) unwire(key string) {
	if a := r.wired[key]; a != nil {
		for _, leg := range []Leg{LegService, LegGlobal} {
			if err := r.deleteOwnLink(a.HostName(leg), a); err != nil {
				r.log.Warn("delete container link", "handle", key, "link", a.HostName(leg), "err", err)
			}
		}
		delete(r.wired, key)
	}
}

// full converges everything: bridges, live containers (adopting their
// links), dead containers (journaled detach), and links marked as this
// owner's that belong to nothing.
//
// Attachments named in changed are wired again whatever the kernel shows:
// a change can reach a full pass (a periodic check, or a retry after an
// error, coalesced with it), and a detach and re-attach of the same
// container in one pass leave its links in place with the old address.
//
// Nothing is judged from an answer that does not say so: a container is
// gone only when its process is reported missing or its PID names another
// namespace, and links are removed only from a complete list. Any other
// failure leaves things as they are, and the pass returns it (the runner
// tries again).
func (r *Reconciler) full(view effects.View, changed []string) error {
	var bridges []Bridge
	var atts []Attachment
	view.Read(func(st *projections.State) { bridges, atts = Desired(st) })
	var errs []error
	keyErrs := effects.KeyErrors{}
	wantBridges := map[string]bool{}
	specs := map[string]*Bridge{}
	for i := range bridges {
		b := &bridges[i]
		wantBridges[b.Service], specs[b.Service] = true, b
		if err := r.ensureBridge(b); err != nil {
			errs = append(errs, err)
			keyErrs["service/"+b.Service] = err
		}
	}
	wantAtts, wantNames := map[string]bool{}, map[string]bool{}
	var live []*Attachment
	for i := range atts {
		a := &atts[i]
		reason, err := r.gone(a)
		if reason != "" {
			r.log.Warn("container is gone; detaching it", "handle", a.Key, "reason", reason)
			if r.detach != nil {
				r.detach(a.Key, reason)
			}
			continue
		}
		wantAtts[a.ID()] = true
		wantNames[a.HostName(LegService)], wantNames[a.HostName(LegGlobal)] = true, true
		if err != nil {
			// Cannot tell: neither detached nor wired; its links stay.
			keyErrs[attachmentKey(a.Key)] = step("netns", err)
			continue
		}
		live = append(live, a)
	}
	links, lerr := r.k.Links()
	if lerr != nil {
		errs = append(errs, fmt.Errorf("bridge: %w", lerr))
	}
	if r.adopted && lerr == nil {
		live = r.drifted(live, links, changed, keyErrs)
	}
	for key, err := range r.wireAll(live, specs) {
		keyErrs[attachmentKey(key)] = err
	}
	if lerr == nil {
		r.adopted = true
		if err := r.removeStrays(links, wantBridges, wantAtts, wantNames); err != nil {
			errs = append(errs, err)
		}
	}
	for key, a := range r.wired {
		if !wantAtts[a.ID()] {
			delete(r.wired, key)
		}
	}
	if len(keyErrs) > 0 {
		errs = append(errs, keyErrs)
	}
	return errors.Join(errs...)
}

// drifted picks the live attachments a periodic pass wires again: those
// named in changed, those not wired as the state says, those whose host
// side is off (one dump of the links, instead of a dozen requests per
// container), and those whose container side is (two requests per leg,
// from the node, for at most peerChecks containers in turn).
func (r *Reconciler) drifted(live []*Attachment, links []Link, changed []string, keyErrs effects.KeyErrors) []*Attachment {
	byName := make(map[string]*Link, len(links))
	for i := range links {
		byName[links[i].Name] = &links[i]
	}
	force := map[string]bool{}
	for _, k := range changed {
		if key, ok := strings.CutPrefix(k, "attachment/"); ok {
			force[key] = true
		}
	}
	var out, settled []*Attachment
	for _, a := range live {
		// The whole wiring is compared (address, global address, bridge,
		// gateway), not only the identity.
		old := r.wired[a.Key]
		switch {
		case force[a.Key] || old == nil || *old != *a:
			out = append(out, a)
		case !r.hostSideIntact(a, byName):
			r.log.Warn("container link drifted; repairing it", "handle", a.Key, "link", a.HostName(LegService))
			r.repairs.Add("container_link", 1)
			out = append(out, a)
		default:
			settled = append(settled, a)
		}
	}
	// The containers' ends are looked at in turn, at most peerChecks per
	// pass (about 60 µs per leg, measured on a busy machine): the look adds
	// at most a few ms to a pass, whatever the number of containers, and
	// each end is still seen every few passes.
	if len(settled) > peerChecks {
		start := r.peerNext % len(settled)
		turn := make([]*Attachment, 0, peerChecks)
		for i := range peerChecks {
			turn = append(turn, settled[(start+i)%len(settled)])
		}
		settled, r.peerNext = turn, start+peerChecks
	}
	for _, a := range settled {
		ok, err := r.containerSideIntact(a, byName)
		switch {
		case err != nil:
			keyErrs[attachmentKey(a.Key)] = step("check", err)
		case !ok:
			r.log.Warn("container's end drifted; repairing it", "handle", a.Key)
			r.repairs.Add("container_end", 1)
			out = append(out, a)
		}
	}
	return out
}

// removeStrays deletes the links marked as this owner's that nothing in
// the state wants (left by a crash, a detach the daemon did not see
// through, or an older daemon of this journal), and unmarked veths with
// one of our names that no attachment wants: a crash between creating a
// pair and marking it (two requests: the kernel ignores an alias given at
// creation). Links of other owners are never touched.
func (r *Reconciler) removeStrays(links []Link, wantBridges, wantAtts, wantNames map[string]bool) error {
	var errs []error
	for _, l := range links {
		v, m := r.marks.judge(l.Alias)
		stray := false
		switch v {
		case unmarked:
			stray = l.Kind == "veth" && isHostName(l.Name) && !wantNames[l.Name]
		case own:
			stray = (m.kind == kindBridge && !wantBridges[m.id]) || (m.kind == kindAttach && !wantAtts[m.id])
		}
		if !stray {
			continue
		}
		if err := r.k.DelLink(l); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("remove stray %s: %w", l.Name, err))
			continue
		}
		r.log.Info("removed a link that belongs to nothing", "link", l.Name, "mark", l.Alias)
		r.repairs.Add("stray_link", 1)
	}
	return errors.Join(errs...)
}

// hostSideIntact reports whether an attachment's host ends are as wired:
// present, marked, up, the service leg on its bridge, a global leg exactly
// when the attachment joins the global overlay. (Deleting a container's end
// of a pair deletes the host end too, so this also sees a container's eth0
// or eth1 deleted.)
func (r *Reconciler) hostSideIntact(a *Attachment, links map[string]*Link) bool {
	ok := func(leg Leg) bool {
		l := links[a.HostName(leg)]
		return l != nil && l.Alias == r.marks.host(a, leg) && l.Up
	}
	br := links[a.Bridge]
	if br == nil || !br.Up || !ok(LegService) || links[a.HostName(LegService)].Master != br.Index {
		return false
	}
	if a.GlobalIP.IsValid() {
		return ok(LegGlobal)
	}
	return links[a.HostName(LegGlobal)] == nil
}

// containerSideIntact looks at the container's ends of an attachment
// whose host side is intact, from the node (Kernel.Peer): eth0 (and eth1)
// up, marked as this owner's, with exactly the attachment's address. An
// error says it could not look.
func (r *Reconciler) containerSideIntact(a *Attachment, links map[string]*Link) (bool, error) {
	legs := []Leg{LegService}
	if a.GlobalIP.IsValid() {
		legs = append(legs, LegGlobal)
	}
	for _, leg := range legs {
		host := links[a.HostName(leg)]
		if host == nil {
			return false, nil
		}
		c, have, err := r.k.Peer(*host)
		if notFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if c.Name != ctrName(leg) || !c.Up || c.Alias != r.marks.ctr(a, leg) {
			return false, nil
		}
		want := a.legIP(leg)
		n := 0
		for _, p := range have {
			switch {
			case p == want:
				n++
			case !p.Addr().IsLinkLocalUnicast():
				return false, nil
			}
		}
		if n != 1 {
			return false, nil
		}
	}
	return true, nil
}

// gone says why an attachment's container no longer exists ("" if it
// does): its process is gone, or its PID now names another namespace. An
// error says it cannot tell.
func (r *Reconciler) gone(a *Attachment) (string, error) {
	ino, err := r.k.NetnsInode(a.PID)
	switch {
	case processGone(err):
		return fmt.Sprintf("process %d is gone", a.PID), nil
	case err != nil:
		return "", fmt.Errorf("check process %d: %w", a.PID, err)
	case a.NetnsInode != 0 && ino != a.NetnsInode:
		return fmt.Sprintf("pid %d now lives in another network namespace (inode %d, attached in %d)", a.PID, ino, a.NetnsInode), nil
	}
	return "", nil
}

// Close closes the kernel's sockets. Bridges and containers' links outlive
// the daemon (containers keep working; the next start adopts them).
// Nothing may be called after Close.
func (r *Reconciler) Close() error { return r.k.Close() }

package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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

	mu sync.Mutex // one pass at a time (the runner already serialises)
	// wired maps a handle key to the incarnation (handle and namespace)
	// whose links exist, so a detach finds them after the state forgot.
	wired map[string]*Attachment
	// adopted is set after the first full pass, which re-applies every
	// attachment (adopting what survived a restart, container side
	// included); later ones re-apply only those whose host side is off.
	adopted bool
	ns      *nodeSocket
}

var _ effects.Reconciler = (*Reconciler)(nil)

// New returns the reconciler; detach is called for containers found gone.
func New(log *slog.Logger, detach Detacher) *Reconciler {
	return &Reconciler{log: log, detach: detach, wired: map[string]*Attachment{}, ns: newNodeSocket()}
}

func (r *Reconciler) Name() string             { return "bridge" }
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }
func attachmentKey(handleKey string) string    { return "attachment/" + handleKey }

// parallel bounds the containers wired at the same time.
const parallel = 16

// Reconcile converges bridges and attachments. A change that names
// services and attachments touches just those; a full pass also checks
// every container's process and namespace, adopts what exists, and removes
// marked links that belong to nothing. Per-attachment failures come back as
// effects.KeyErrors.
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !all {
		var chs []Change
		var ok bool
		view.Read(func(st *projections.State) { chs, ok = Changes(st, changed) })
		if ok {
			return r.apply(chs)
		}
	}
	return r.full(view, changed)
}

func (r *Reconciler) apply(chs []Change) error {
	keyErrs := effects.KeyErrors{}
	var errs []error
	var atts []*Attachment
	for _, ch := range chs {
		switch {
		case ch.Service != "" && ch.Bridge != nil:
			if err := ensureBridge(ch.Bridge); err != nil {
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
	for key, err := range r.wireAll(atts) {
		keyErrs[attachmentKey(key)] = err
	}
	if len(keyErrs) > 0 {
		errs = append(errs, keyErrs)
	}
	return errors.Join(errs...) // errors.As finds the KeyErrors inside
}

// wireAll wires attachments in parallel and returns the failures by key.
func (r *Reconciler) wireAll(atts []*Attachment) map[string]error {
	failed := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for _, a := range atts {
		// A new incarnation of a handle (PID reuse): the old links go.
		if old := r.wired[a.Key]; old != nil && old.ID() != a.ID() {
			r.unwire(a.Key)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(a *Attachment) {
			defer wg.Done()
			defer func() { <-sem }()
			err := ensureAttachment(a, r.ns)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[a.Key] = err
				return
			}
		}(a)
	}
	wg.Wait()
	for _, a := range atts {
		if failed[a.Key] == nil {
			r.wired[a.Key] = a
		}
	}
	return failed
}

// unwire deletes a handle's links (both legs), as far as they are known.
func (r *Reconciler) unwire(key string) {
	if a := r.wired[key]; a != nil {
		for _, leg := range []Leg{LegService, LegGlobal} {
			if err := deleteLink(a.HostName(leg)); err != nil {
				r.log.Warn("delete container link", "handle", key, "link", a.HostName(leg), "err", err)
			}
		}
		delete(r.wired, key)
	}
}

func (r *Reconciler) removeBridge(service string) error {
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if kind, id, _, ok := parseAlias(l.Attrs().Alias); ok && kind == "bridge" && id == service {
			if err := netlink.LinkDel(l); err != nil && !notFound(err) {
				return fmt.Errorf("bridge %s: delete: %w", l.Attrs().Name, err)
			}
			r.log.Info("bridge removed", "service", service, "bridge", l.Attrs().Name)
		}
	}
	return nil
}

// full converges everything: bridges, live containers (adopting their
// links), dead containers (journaled detach), and marked links that belong
// to nothing.
//
// Attachments named in changed are wired again whatever the kernel shows:
// a change can reach a full pass (a periodic check, or a retry after an
// error, coalesced with it), and a detach and re-attach of the same
// container in one pass leave its links in place with the old address.
func (r *Reconciler) full(view effects.View, changed []string) error {
	var bridges []Bridge
	var atts []Attachment
	view.Read(func(st *projections.State) { bridges, atts = Desired(st) })
	var errs []error
	wantBridges := map[string]bool{}
	for i := range bridges {
		wantBridges[bridges[i].Service] = true
		if err := ensureBridge(&bridges[i]); err != nil {
			errs = append(errs, err)
		}
	}
	wantAtts, wantNames := map[string]bool{}, map[string]bool{}
	var live []*Attachment
	for i := range atts {
		a := &atts[i]
		if reason := gone(a); reason != "" {
			r.log.Warn("container is gone; detaching it", "handle", a.Key, "reason", reason)
			if r.detach != nil {
				r.detach(a.Key, reason)
			}
			continue
		}
		wantAtts[a.ID()] = true
		wantNames[a.HostName(LegService)], wantNames[a.HostName(LegGlobal)] = true, true
		live = append(live, a)
	}
	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, err)
	}
	if r.adopted && err == nil {
		// One dump of the links instead of a dozen requests per container:
		// a periodic pass over hundreds of containers stays a few ms, and
		// attaches queued behind it are not held up.
		byName := make(map[string]netlink.Link, len(links))
		for _, l := range links {
			byName[l.Attrs().Name] = l
		}
		force := map[string]bool{}
		for _, k := range changed {
			if key, ok := strings.CutPrefix(k, "attachment/"); ok {
				force[key] = true
			}
		}
		drifted := live[:0:0]
		for _, a := range live {
			// The whole wiring is compared (address, global address,
			// bridge, gateway), not only the identity.
			if old := r.wired[a.Key]; force[a.Key] || old == nil || *old != *a || !hostSideIntact(a, byName) {
				drifted = append(drifted, a)
			}
		}
		for _, a := range drifted {
			if old := r.wired[a.Key]; old != nil && *old == *a && !force[a.Key] {
				r.log.Warn("container link drifted; repairing it", "handle", a.Key, "link", a.HostName(LegService))
			}
		}
		live = drifted
	}
	keyErrs := effects.KeyErrors{}
	for key, err := range r.wireAll(live) {
		keyErrs[attachmentKey(key)] = err
	}
	if len(keyErrs) == 0 && err == nil {
		r.adopted = true
	}
	// Marked links that nothing owns: left by a crash, a detach the daemon
	// did not see through, or an older daemon.
	for _, l := range links {
		kind, id, _, ok := parseAlias(l.Attrs().Alias)
		// A veth with one of our names and no mark at all: a crash between
		// its creation and its marking (two requests; the kernel ignores
		// an alias given at creation).
		unmarked := l.Attrs().Alias == "" && l.Type() == "veth" && isHostName(l.Attrs().Name) && !wantNames[l.Attrs().Name]
		if !ok && !unmarked {
			continue
		}
		if unmarked || (kind == "bridge" && !wantBridges[id]) || (kind == "attach" && !wantAtts[id]) {
			if err := netlink.LinkDel(l); err != nil && !notFound(err) {
				errs = append(errs, fmt.Errorf("remove stray %s: %w", l.Attrs().Name, err))
				continue
			}
			r.log.Info("removed a link that belongs to nothing", "link", l.Attrs().Name, "mark", l.Attrs().Alias)
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

// hostSideIntact reports whether an attachment's host ends are as wired:
// present, marked, up, the service leg on its bridge, a global leg exactly
// when the attachment joins the global overlay. (Deleting a container's end
// of a pair deletes the host end too, so this also sees a container's eth0
// or eth1 deleted.)
func hostSideIntact(a *Attachment, links map[string]netlink.Link) bool {
	ok := func(leg Leg) bool {
		l := links[a.HostName(leg)]
		return l != nil && l.Attrs().Alias == a.Alias(leg) && l.Attrs().Flags&net.FlagUp != 0
	}
	br := links[a.Bridge]
	if br == nil || !ok(LegService) || links[a.HostName(LegService)].Attrs().MasterIndex != br.Attrs().Index {
		return false
	}
	if a.GlobalIP.IsValid() {
		return ok(LegGlobal)
	}
	return links[a.HostName(LegGlobal)] == nil
}

// gone says why an attachment's container no longer exists ("" if it
// does): its process is gone, or its PID now names another namespace.
func gone(a *Attachment) string {
	var st unix.Stat_t
	err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", a.PID), &st)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH):
		return fmt.Sprintf("process %d is gone", a.PID)
	case err != nil:
		return "" // cannot tell (permissions): leave it
	case a.NetnsInode != 0 && st.Ino != a.NetnsInode:
		return fmt.Sprintf("pid %d now lives in another network namespace (inode %d, attached in %d)", a.PID, st.Ino, a.NetnsInode)
	}
	return ""
}

// Close does nothing: bridges and containers' links outlive the daemon
// (containers keep working; the next start adopts them).
func (r *Reconciler) Close() error { return nil }

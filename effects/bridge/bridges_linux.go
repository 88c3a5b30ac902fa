package bridge

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/zlayer/overlayd/effects"
)

// ErrNotOurs is wrapped by the errors about a link this daemon needs (by
// name) that carries another owner's mark, or an alias that is no mark of
// this daemon: such a link is never adopted, changed or deleted.
var ErrNotOurs = errors.New("bridge: the link belongs to someone else")

// inTheWay is the error about a link that is not ours where we need one.
func inTheWay(name, alias string, v verdict, m mark) error {
	if v == foreign {
		return fmt.Errorf("%s is marked by %s (%q): %w", name, m.owner(), alias, ErrNotOurs)
	}
	return fmt.Errorf("%s carries the alias %q, which is no mark of this daemon: %w", name, alias, ErrNotOurs)
}

// ensureBridge creates the bridge or adopts the one that exists (a restart
// never deletes a live bridge), if it is ours or unmarked (a crash between
// creating and marking it): fixed MAC, MTU, ownership mark, exactly the
// gateway address, up.
func (r *Reconciler) ensureBridge(b *Bridge) error {
	r.oursMu.Lock()
	_, had := r.ours[b.Name]
	r.oursMu.Unlock()
	idx, created, err := r.ensureBridgeWith(b)
	if had && created {
		r.repairs.Add("bridge", 1) // it was ours and had gone
	}
	r.oursMu.Lock()
	defer r.oursMu.Unlock()
	if err != nil {
		delete(r.ours, b.Name)
		return err
	}
	r.ours[b.Name] = idx
	return nil
}

// isOurs reports whether the bridge called name, at index, is one
// ensureBridge made or adopted.
func (r *Reconciler) isOurs(name string, index int) bool {
	r.oursMu.Lock()
	defer r.oursMu.Unlock()
	i, ok := r.ours[name]
	return ok && i == index
}

// created says it had to make the bridge.
func (r *Reconciler) ensureBridgeWith(b *Bridge) (idx int, created bool, err error) {
	l, err := r.k.LinkByName(b.Name)
	if notFound(err) {
		created = true
		// Made with the default MTU, which the MTU step below pins to the
		// overlay's: one given here would follow the ports (1500 once the
		// last container leaves).
		if err := r.k.AddBridge(b.Name, b.MAC); err != nil && !errors.Is(err, syscall.EEXIST) {
			return 0, created, fmt.Errorf("bridge %s: create: %w", b.Name, err)
		}
		r.log.Info("bridge created", "service", b.Service, "bridge", b.Name)
		// Whatever the answer, look again at what has that name now.
		l, err = r.k.LinkByName(b.Name)
	}
	if err != nil {
		return 0, created, fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	if l.Kind != "bridge" {
		return 0, created, fmt.Errorf("bridge %s: a %s link of that name is in the way", b.Name, l.Kind)
	}
	if v, m := r.marks.judge(l.Alias); v == foreign || v == alien {
		return 0, created, fmt.Errorf("bridge %s: %w", b.Name, inTheWay(b.Name, l.Alias, v, m))
	}
	if want := r.marks.bridge(b.Service); l.Alias != want {
		if err := r.k.SetAlias(b.Name, want); err != nil {
			return 0, created, fmt.Errorf("bridge %s: mark: %w", b.Name, err)
		}
	}
	if l.MTU != effects.MTU {
		if err := r.k.SetMTU(l.Index, effects.MTU); err != nil {
			return 0, created, fmt.Errorf("bridge %s: MTU: %w", b.Name, err)
		}
	}
	if l.MAC.String() != b.MAC.String() {
		if err := r.k.SetMAC(l.Index, b.MAC); err != nil {
			return 0, created, fmt.Errorf("bridge %s: MAC: %w", b.Name, err)
		}
	}
	// Exactly the gateway (link-local addresses aside): another address
	// on the bridge would answer for the service subnet, or another.
	have, err := r.k.Addrs(l.Index)
	if err != nil {
		return 0, created, fmt.Errorf("bridge %s: addresses: %w", b.Name, err)
	}
	hasGateway := false
	for _, p := range have {
		switch {
		case p == b.Gateway:
			hasGateway = true
		case !p.Addr().IsLinkLocalUnicast():
			if err := r.k.DelAddr(l.Index, p); err != nil && !notFound(err) && !errors.Is(err, syscall.EADDRNOTAVAIL) {
				return 0, created, fmt.Errorf("bridge %s: remove address %s: %w", b.Name, p, err)
			}
			hasGateway = false // it may have gone with a primary address
		}
	}
	if !hasGateway {
		if err := r.k.ReplaceAddr(l.Index, b.Gateway, false); err != nil {
			return 0, created, fmt.Errorf("bridge %s: gateway %s: %w", b.Name, b.Gateway, err)
		}
	}
	if !l.Up {
		if err := r.k.SetUp(l.Index); err != nil {
			return 0, created, fmt.Errorf("bridge %s: up: %w", b.Name, err)
		}
	}
	if err := r.ensureForwarding(b.Gateway.Addr().Is4(), b.Gateway.Addr().Is6()); err != nil {
		return 0, created, fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	return l.Index, created, nil
}

// ensureForwarding turns on forwarding for the families in use: bridged
// containers reach the overlay through this namespace's routing.
func (r *Reconciler) ensureForwarding(v4, v6 bool) error {
	var errs []error
	set := func(path string) {
		if err := r.k.WriteSysctl(path, "1"); err != nil {
			errs = append(errs, fmt.Errorf("forwarding: %s: %w", path, err))
		}
	}
	if v4 {
		set("net/ipv4/ip_forward")
	}
	if v6 {
		set("net/ipv6/conf/all/forwarding")
	}
	return errors.Join(errs...)
}

// removeBridge deletes the bridges marked as this owner's for service.
func (r *Reconciler) removeBridge(service string) error {
	links, err := r.k.Links()
	if err != nil {
		return fmt.Errorf("bridge of service %s: %w", service, err)
	}
	var errs []error
	for _, l := range links {
		if v, m := r.marks.judge(l.Alias); v == own && m.kind == kindBridge && m.id == service {
			if err := r.k.DelLink(l); err != nil && !notFound(err) {
				errs = append(errs, fmt.Errorf("bridge %s: delete: %w", l.Name, err))
				continue
			}
			r.oursMu.Lock()
			delete(r.ours, l.Name)
			r.oursMu.Unlock()
			r.log.Info("bridge removed", "service", service, "bridge", l.Name)
		}
	}
	return errors.Join(errs...)
}

// bridgeIndex returns the index of an attachment's bridge, if it is one
// that ensureBridge found to be this owner's. One found missing (deleted
// by hand since the last pass), or not known to be ours (made again by
// someone else), goes through ensureBridge first, when its desired state
// is known: it is made again, or refused if it is not ours.
func (r *Reconciler) bridgeIndex(a *Attachment, spec *Bridge) (int, error) {
	idx, err := r.k.Index(a.Bridge)
	switch {
	case err == nil && r.isOurs(a.Bridge, idx):
		return idx, nil
	case err != nil && !notFound(err):
		return 0, err
	case spec == nil:
		return 0, fmt.Errorf("%s is not known as this daemon's bridge", a.Bridge)
	}
	r.bridgeMu.Lock() // parallel attaches to one service make it once
	defer r.bridgeMu.Unlock()
	if idx, err := r.k.Index(a.Bridge); err == nil && r.isOurs(a.Bridge, idx) {
		return idx, nil
	} else if notFound(err) {
		r.log.Warn("service bridge is missing; making it again", "service", spec.Service, "bridge", spec.Name)
	}
	if err := r.ensureBridge(spec); err != nil {
		return 0, err
	}
	return r.k.Index(a.Bridge)
}

// deleteOwnLink deletes the link called name if it is this owner's for
// attachment a (or unmarked: a crash between creating and marking it).
// Not found is success; a link of another owner is left, with an error.
func (r *Reconciler) deleteOwnLink(name string, a *Attachment) error {
	l, err := r.k.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	switch v, m := r.marks.judge(l.Alias); {
	case v == foreign || v == alien:
		return inTheWay(name, l.Alias, v, m)
	case v == own && (m.kind != kindAttach || m.id != a.ID()):
		return fmt.Errorf("%s carries the mark of %s %s, not of %s: left alone", name, m.kind, m.id, a.ID())
	}
	if err := r.k.DelLink(l); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

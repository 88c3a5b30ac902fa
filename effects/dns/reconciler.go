package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

const (
	defaultResolvConf = "/etc/resolv.conf"
	systemdResolvConf = "/run/systemd/resolve/resolv.conf"
)

// Options configure the reconciler (daemon flags).
type Options struct {
	// Listen are local addresses served besides the overlay ones
	// (--dns-listen), e.g. 127.0.0.1:53.
	Listen []netip.AddrPort
	// Upstreams, when set, replace the resolvers read from ResolvConf
	// (--dns-upstream).
	Upstreams []string
	// ResolvConf is read for upstreams at boot and whenever it changes
	// (checked on every periodic pass); default /etc/resolv.conf, and then,
	// when that names only loopback stubs, systemd-resolved's
	// /run/systemd/resolve/resolv.conf.
	ResolvConf string
}

// Reconciler keeps the server's records, zones, listeners and upstreams
// equal to the projected state and the host's resolv.conf.
type Reconciler struct {
	log *slog.Logger
	opt Options
	srv *Server

	loaded    atomic.Bool // records copied in full once; later by Observe
	cfg       Config
	listeners map[netip.AddrPort]*listener
	failing   effects.ProblemSet // listeners that cannot bind, by listenKey; lo down (loopbackKey)
	loDown    func() bool        // loopbackDown; tests fake it

	rcMu    sync.Mutex
	rcFiles []string // resolv.conf, then the fallback when it has only stubs
	rcStamp string   // their sizes and mtimes when last read
	self    []string // the server's own addresses, never upstreams
}

// New returns the reconciler and its server.
func New(log *slog.Logger, opt Options) *Reconciler {
	if opt.ResolvConf == "" {
		opt.ResolvConf = defaultResolvConf
	}
	r := &Reconciler{log: log, opt: opt, srv: NewServer(log),
		listeners: map[netip.AddrPort]*listener{}, loDown: loopbackDown}
	// With systemd-resolved, /etc/resolv.conf names only its loopback stub;
	// the upstreams it uses are in its own file (Docker reads it too).
	r.rcFiles = []string{opt.ResolvConf}
	if opt.ResolvConf == defaultResolvConf {
		r.rcFiles = append(r.rcFiles, systemdResolvConf)
	}
	// A forwarded query notices a changed resolv.conf within a second,
	// without waiting for the periodic pass.
	r.srv.refresh = r.refreshUpstreams
	return r
}

func (r *Reconciler) Name() string             { return "dns" }
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }

// Server is the server the reconciler feeds.
func (r *Reconciler) Server() *Server { return r.srv }

// Observe applies a decided event to the records at once, in order (the
// effects.Observer contract: called while the daemon folds the event into
// the state its reconcilers read, so that an answered register_dns
// resolves). Until the first pass has loaded the records, events are left
// to that load, which reads them from the state.
func (r *Reconciler) Observe(ev projections.Event) {
	if !r.loaded.Load() {
		return
	}
	switch e := ev.(type) {
	case *projections.DNSRegistered:
		r.srv.Register(e.Name, e.IP)
	case *projections.DNSUnregistered:
		r.srv.Set(e.Name, nil)
	}
}

// Reset replaces the records with st's (the effects.Resetter contract: the
// daemon rolled its state back after a failed journal write, and events
// observed since were never made durable).
func (r *Reconciler) Reset(st *projections.State) {
	r.srv.Replace(st.DNS)
	r.loaded.Store(true)
}

// Reconcile loads the records on its first pass, and applies the zones,
// client subnets and listeners; full passes also re-read resolv.conf when
// it changed.
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	var cfg Config
	view.Read(func(st *projections.State) {
		cfg = Desired(st)
		if !r.loaded.Load() {
			// Under the view's lock: no event can be observed between this
			// copy and the flag (Observe runs under the same lock).
			r.srv.Replace(st.DNS)
			r.loaded.Store(true)
		}
	})
	r.srv.SetConfig(cfg) // a few small maps: cheaper than comparing
	r.cfg = cfg
	r.converge(all)
	r.rcMu.Lock()
	r.self = nil
	for _, ap := range append(slices.Clone(cfg.Listen), r.opt.Listen...) {
		r.self = append(r.self, ap.String())
	}
	r.rcMu.Unlock()
	if all {
		r.refreshUpstreams()
	}
	return nil
}

// converge opens the listeners the config and options ask for and closes
// the others. A failed bind is logged once per distinct error and retried
// at every pass; it never fails the daemon. The loopback check (a dump of
// every link: milliseconds on a node with hundreds of veths) runs on full
// passes (boot, every check interval, SIGHUP) and when a listener opens,
// not on every decision's pass.
func (r *Reconciler) converge(all bool) {
	opened := false
	want := map[netip.AddrPort]bool{}
	for _, ap := range r.cfg.Listen {
		want[ap] = true
	}
	for _, ap := range r.opt.Listen {
		want[ap] = true
	}
	for ap, l := range r.listeners {
		if !want[ap] {
			l.close()
			delete(r.listeners, ap)
			r.log.Info("dns: stopped listening", "addr", ap)
		}
	}
	for ap := range want {
		if r.listeners[ap] != nil {
			continue
		}
		l, err := listen(ap, r.srv)
		if err != nil {
			if old := r.failing.Get(listenKey(ap)); old == nil || !strings.Contains(old.Error(), err.Error()) {
				r.log.Warn("dns: cannot listen; retrying at every check", "addr", ap, "err", err)
			}
			r.failing.Set(listenKey(ap), fmt.Errorf("dns: cannot listen on %s: %w", ap, err))
			continue
		}
		r.failing.Set(listenKey(ap), nil)
		r.listeners[ap] = l
		opened = true
		r.log.Info("dns: listening", "addr", ap, "proto", "udp+tcp")
	}
	r.failing.Retain(func(k string) bool {
		if k == loopbackKey {
			return true
		}
		ap, err := netip.ParseAddrPort(strings.TrimPrefix(k, "dns/listen/"))
		return err == nil && want[ap]
	})
	if all || opened {
		r.checkLoopback(want)
	}
}

func listenKey(ap netip.AddrPort) string { return "dns/listen/" + ap.String() }

// Problems implements effects.Reporter: the listeners that cannot bind.
func (r *Reconciler) Problems() []effects.Problem { return r.failing.List() }

// refreshUpstreams re-reads resolv.conf when it changed.
func (r *Reconciler) refreshUpstreams() {
	r.rcMu.Lock()
	defer r.rcMu.Unlock()
	if len(r.opt.Upstreams) > 0 {
		if r.rcStamp == "" {
			r.rcStamp = "fixed"
			r.srv.SetUpstreams(r.withoutSelf(r.opt.Upstreams))
			r.log.Info("dns: upstreams", "from", "--dns-upstream", "upstreams", r.srv.Upstreams())
		}
		return
	}
	files := r.rcFiles
	stamp := ""
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			stamp += fmt.Sprintf("%s/%d;", fi.ModTime().Format(time.RFC3339Nano), fi.Size())
		} else {
			stamp += "missing;"
		}
	}
	sys := systemResolvers() // Windows: the adapters' DNS servers; nil elsewhere
	stamp += strings.Join(sys, ",")
	if stamp == r.rcStamp {
		return
	}
	r.rcStamp = stamp
	var ups []string
	from := ""
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if f == r.opt.ResolvConf {
				r.log.Warn("dns: cannot read upstreams", "file", f, "err", err)
			}
			continue
		}
		if ups = r.withoutSelf(ParseResolvConf(b)); len(ups) > 0 {
			from = f
			break
		}
	}
	if len(ups) == 0 && len(sys) > 0 {
		if ups = r.withoutSelf(sys); len(ups) > 0 {
			from = "the system's DNS servers (GetAdaptersAddresses)"
		}
	}
	r.srv.SetUpstreams(ups)
	if len(ups) == 0 {
		r.log.Warn("dns: no usable upstream (loopback stubs are skipped); names outside the overlay get SERVFAIL", "files", files)
	} else {
		r.log.Info("dns: upstreams", "from", from, "upstreams", ups)
	}
}

// withoutSelf drops upstreams that are the server's own addresses (a
// forwarding loop). rcMu is held.
func (r *Reconciler) withoutSelf(ups []string) []string {
	return slices.DeleteFunc(slices.Clone(ups), func(u string) bool { return slices.Contains(r.self, u) })
}

// Close stops every listener.
func (r *Reconciler) Close() error {
	for ap, l := range r.listeners {
		l.close()
		delete(r.listeners, ap)
	}
	return nil
}

package nat

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// Reconciler converges the daemon's nftables table.
type Reconciler struct {
	log  *slog.Logger
	nsFd int // network namespace to work in; -1: the process's

	conn    *nftables.Conn
	applied *Config // what the kernel was last made to hold; nil: unknown

	mu    sync.Mutex
	stats Stats
}

// Stats count what the reconciler did (tests, benchmarks).
type Stats struct {
	Rebuilds, Repairs, Removals int
	LastRebuild                 time.Duration
}

// New returns a reconciler for the process's network namespace.
func New(log *slog.Logger) *Reconciler { return &Reconciler{log: log, nsFd: -1} }

// NewInNetns returns a reconciler that works in the namespace fd refers to.
func NewInNetns(log *slog.Logger, fd int) *Reconciler { return &Reconciler{log: log, nsFd: fd} }

func (r *Reconciler) Name() string             { return "nat" }
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }

// Stats returns the counters.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *Reconciler) dial() (*nftables.Conn, error) {
	if r.conn != nil {
		return r.conn, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if r.nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(r.nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, err
	}
	r.conn = c
	return c, nil
}

// drop forgets the connection after an error (a batch that failed may
// leave queued messages behind).
func (r *Reconciler) drop() {
	if r.conn != nil {
		r.conn.CloseLasting()
		r.conn = nil
	}
	r.applied = nil
}

// Reconcile makes the table match the state. A change rebuilds it when
// the desired content differs from what was applied; a full pass (boot,
// periodic) also compares the kernel's table with it and rebuilds on any
// difference, which repairs `nft flush ruleset` or hand edits.
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	var cfg Config
	view.Read(func(st *projections.State) { cfg = Desired(st) })
	return r.Apply(cfg, all)
}

// Apply converges the kernel to cfg (check: compare with the kernel even
// when cfg is what was applied last).
func (r *Reconciler) Apply(cfg Config, check bool) error {
	c, err := r.dial()
	if err != nil {
		return err
	}
	same := r.applied != nil && r.applied.Equal(cfg)
	if !cfg.Enabled {
		if same && !check {
			return nil
		}
		had, err := exists(c)
		if err == nil && had {
			srcs, lerr := masqueradedSources(c)
			err = remove(c)
			if err == nil {
				r.count(func(s *Stats) { s.Removals++ })
				// Flows it translated keep their translation until they
				// time out while any other NAT chain (Docker's, say) keeps
				// the kernel's NAT hooks in place: forget them too.
				n, cerr := forgetTranslations(r.nsFd, srcs)
				if lerr != nil || cerr != nil {
					r.log.Warn("nat: translated flows may live on until they time out", "err", errors.Join(lerr, cerr))
				}
				r.log.Info("nat: table removed", "table", "inet "+Table, "translated_flows_removed", n)
			}
		}
		if err != nil {
			r.drop()
			return err
		}
		r.applied = &cfg
		return nil
	}
	if r.applied == nil && verify(c, cfg) == nil {
		// After a restart the table the last run built is adopted as it
		// is (its counters too) when it is what the state asks for.
		r.applied = &cfg
		return nil
	}
	if same {
		if !check {
			return nil
		}
		err := verify(c, cfg)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errDrift) {
			r.drop()
			return err
		}
		r.log.Warn("nat: table drifted; rebuilding it", "table", "inet "+Table, "drift", err)
		r.count(func(s *Stats) { s.Repairs++ })
	}
	t0 := time.Now()
	if err := rebuild(c, cfg); err != nil {
		r.drop()
		return err
	}
	took := time.Since(t0)
	r.applied = &cfg
	r.count(func(s *Stats) { s.Rebuilds++; s.LastRebuild = took })
	r.log.Info("nat: table rebuilt", "table", "inet "+Table, "sources", len(cfg.Sources), "bridges", len(cfg.Bridges), "took", took.Round(time.Microsecond))
	return nil
}

func (r *Reconciler) count(f func(*Stats)) {
	r.mu.Lock()
	f(&r.stats)
	r.mu.Unlock()
}

// Close releases the netlink connection; the table stays (it is state,
// restored at the next boot's pass).
func (r *Reconciler) Close() error {
	if r.conn != nil {
		err := r.conn.CloseLasting()
		r.conn = nil
		return err
	}
	return nil
}

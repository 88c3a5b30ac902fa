package nat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// ErrNotOwner is wrapped by the error about a table of this name that
// another journal made (or that carries no mark, for a journal that is not
// a legacy one): it is left untouched.
var ErrNotOwner = errors.New("nat: the table belongs to someone else")

// Reconciler converges the daemon's nftables table. Its errors are
// effects.KeyErrors under the key "global" (the object whose nat_enabled
// the table serves). Apply and Reconcile must not be called concurrently
// (the runner calls one pass at a time); Stats may be.
type Reconciler struct {
	log    *slog.Logger
	owner  effects.Owner
	dial   func() (Conn, error)
	forget func([]Range) (uint, error) // drop the conntrack entries of masqueraded flows

	conn    Conn
	applied *Config // what the kernel was last made to hold; nil: unknown

	mu    sync.Mutex
	stats Stats
}

// Stats count what the reconciler did (tests, benchmarks, metrics).
type Stats struct {
	Rebuilds, Repairs, Removals int
	LastRebuild                 time.Duration
	// Present is set when the last pass left the table in place as the
	// state asks (built, adopted or checked); a pass that failed, or NAT
	// off, clears it.
	Present bool
}

// New returns a reconciler for the process's network namespace, acting for
// owner.
func New(log *slog.Logger, owner effects.Owner) *Reconciler { return NewInNetns(log, owner, -1) }

// NewInNetns returns a reconciler that works in the namespace fd refers to
// (-1: the process's).
func NewInNetns(log *slog.Logger, owner effects.Owner, fd int) *Reconciler {
	dial := func() (Conn, error) {
		opts := []nftables.ConnOption{nftables.AsLasting()}
		if fd >= 0 {
			opts = append(opts, nftables.WithNetNSFd(fd))
		}
		c, err := nftables.New(opts...)
		if err != nil {
			return nil, fmt.Errorf("nat: nftables connection: %w", err)
		}
		return c, nil
	}
	return newReconciler(log, owner, dial, func(rs []Range) (uint, error) { return forgetTranslations(fd, rs) })
}

func newReconciler(log *slog.Logger, owner effects.Owner, dial func() (Conn, error), forget func([]Range) (uint, error)) *Reconciler {
	return &Reconciler{log: log, owner: owner, dial: dial, forget: forget}
}

func (r *Reconciler) Name() string             { return "nat" }
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }

// Stats returns the counters.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Repaired implements effects.Repairer: the table rebuilt after a check
// found it changed behind the daemon's back.
func (r *Reconciler) Repaired() map[string]uint64 {
	return map[string]uint64{"nat_table": uint64(r.Stats().Repairs)}
}

// TablePresent reports whether the last pass left the table in place
// (metrics).
func (r *Reconciler) TablePresent() bool { return r.Stats().Present }

func (r *Reconciler) connect() (Conn, error) {
	if r.conn != nil {
		return r.conn, nil
	}
	c, err := r.dial()
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
// difference, which repairs `nft flush ruleset` or hand edits. Errors are
// KeyErrors under "global".
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	var cfg Config
	view.Read(func(st *projections.State) { cfg = Desired(st) })
	err := r.Apply(cfg, all)
	r.count(func(s *Stats) { s.Present = err == nil && cfg.Enabled })
	if err != nil {
		return effects.KeyErrors{"global": err}
	}
	return nil
}

// owns reports whether the table's mark is the reconciler's own: it names
// this journal, or it is unmarked and the journal is a legacy one (the
// table is then marked at its rebuild).
func (r *Reconciler) owns(m mark) bool {
	if !m.marked {
		return r.owner.Legacy
	}
	return m.journal == r.owner.Journal
}

func (r *Reconciler) notOwner(m mark) error {
	if !m.marked {
		return fmt.Errorf("%w: table inet %s carries no owner mark and journal %s is not one from before marks: left untouched",
			ErrNotOwner, Table, r.owner.Journal)
	}
	return fmt.Errorf("%w: table inet %s is owned by journal %s, not by this daemon's journal %s: left untouched",
		ErrNotOwner, Table, m.journal, r.owner.Journal)
}

// Apply converges the kernel to cfg (check: compare with the kernel even
// when cfg is what was applied last). A table of this name that is not the
// reconciler's own (see owns) is neither adopted, rebuilt nor deleted: the
// error says whose it is.
func (r *Reconciler) Apply(cfg Config, check bool) error {
	same := r.applied != nil && r.applied.Equal(cfg)
	if same && !check {
		return nil
	}
	c, err := r.connect()
	if err != nil {
		return err
	}
	m, err := readOwner(c)
	if err != nil {
		r.drop()
		return err
	}
	if m.exists && !r.owns(m) {
		r.applied = nil
		return r.notOwner(m)
	}
	if !cfg.Enabled {
		if m.exists {
			if err := r.removeTable(c); err != nil {
				r.drop()
				return err
			}
		}
		r.applied = &cfg
		return nil
	}
	if m.exists && r.applied == nil {
		err := r.confirmDrift(c, cfg, m)
		if err == nil {
			// After a restart the table the last run built is adopted as
			// it is (its counters too) when it is what the state asks for.
			r.applied = &cfg
			return nil
		}
		if !errors.Is(err, errDrift) {
			r.drop()
			return err
		}
	}
	if same {
		err := r.confirmDrift(c, cfg, m)
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
	if err := rebuild(c, cfg, r.owner.Journal, m.exists); err != nil {
		r.drop()
		return err
	}
	took := time.Since(t0)
	r.applied = &cfg
	r.count(func(s *Stats) { s.Rebuilds++; s.LastRebuild = took })
	r.log.Info("nat: table rebuilt", "table", "inet "+Table, "sources", len(cfg.Sources), "bridges", len(cfg.Bridges), "took", took.Round(time.Microsecond))
	return nil
}

// confirmDrift verifies the table as m read it and, when it seems to
// have drifted, reads it again (twice at most, 20 ms apart) before saying
// so: the kernel grows a hashed set's table in the background after a
// rebuild, and a dump taken meanwhile can list one element twice and miss
// another (seen as "set overlay_ifs holds 1001 elements, want 1001" about
// one check in a hundred after a rebuild of 1,000 bridges). A table that
// really drifted stays drifted, and costs 40 ms more to repair.
func (r *Reconciler) confirmDrift(c Conn, cfg Config, m mark) error {
	p := newPlan(cfg, r.owner.Journal)
	err := verify(c, p, m)
	first := err
	for i := 0; i < 2 && m.exists && errors.Is(err, errDrift); i++ {
		time.Sleep(20 * time.Millisecond)
		var again mark
		if again, err = readOwner(c); err == nil {
			err = verify(c, p, again)
		}
	}
	if err == nil && first != nil {
		r.log.Debug("nat: a drift read once was not there when read again", "table", "inet "+Table, "first_read", first)
	}
	return err
}

// removeTable deletes the table, then forgets the flows it translated:
// they keep their translation until they time out while any other NAT
// chain (Docker's, say) keeps the kernel's NAT hooks in place.
func (r *Reconciler) removeTable(c Conn) error {
	srcs, lerr := masqueradedSources(c)
	if err := remove(c); err != nil {
		return err
	}
	r.count(func(s *Stats) { s.Removals++ })
	n, cerr := r.forget(srcs)
	if lerr != nil || cerr != nil {
		r.log.Warn("nat: translated flows may live on until they time out", "err", errors.Join(lerr, cerr))
	}
	r.log.Info("nat: table removed", "table", "inet "+Table, "translated_flows_removed", n)
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

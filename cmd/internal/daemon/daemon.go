// Package daemon is zlayer-overlayd: it boots the journal and projections,
// runs the command pipeline, serves the socket and stops cleanly.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/dns"
	"github.com/zlayer/overlayd/effects/wireguard"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Config is the daemon's configuration (flags).
type Config struct {
	DataDir string
	Socket  string // "" = ipc.DefaultSocketPath(DataDir)
	// WGPrivateKeyFile imports the node's WireGuard private key.
	WGPrivateKeyFile string
	// SlicePrefix4/6 size a derived node slice (0 = 24 / 64).
	SlicePrefix4, SlicePrefix6 int
	// SnapshotEvery takes a snapshot after this many events (0 = 10000).
	SnapshotEvery uint64
	// RetainEvents, when set, compacts the journal (archive + checkpoint)
	// so that it keeps at least the newest RetainEvents events: checked
	// after each snapshot, run once SnapshotEvery more have accumulated
	// (compact.go).
	RetainEvents uint64
	// KeepStateEvery keeps the projected state in the journal every this
	// many events, for `overlayctl state --at` (0 = DefaultKeepStateEvery);
	// NoKeptStates turns it off.
	KeepStateEvery uint64
	NoKeptStates   bool
	// ReconcileInterval is the period of the drift check (0 = 10 s).
	ReconcileInterval time.Duration
	// AdvertiseAddr is the underlay address guests are told to reach this
	// node at (invalid = the first global unicast address of the host).
	AdvertiseAddr netip.Addr
	Log           *slog.Logger
	// PeerUnhealthyAfter is the handshake age past which a peer is
	// reported unhealthy (0 = 180 s).
	PeerUnhealthyAfter time.Duration
	// NoDataPlane leaves the kernel alone (no WireGuard devices): for tests
	// of the pipeline that run outside a network namespace.
	NoDataPlane bool
	// DNS configures the embedded DNS server (local listen addresses,
	// upstreams).
	DNS dns.Options
	// Reconcilers are extra effect handlers (tests).
	Reconcilers []effects.Reconciler
	// MaxConns bounds the open client connections (0 = ipc's default,
	// 1024); a connection past it is answered err and closed.
	MaxConns int
	// OnPhase, when set, is called at each phase change from the start of
	// Open (phase.go): systemd's STATUS= line, tests.
	OnPhase func(p Phase, detail string)
	// Store, when set, is the journal instead of the bbolt file in the
	// data dir (tests: an in-memory store, or journal.Faulty to inject
	// write failures). The daemon closes it.
	Store journal.Store

	// SEC: who may send mutating ops (authz.go; flags --admin-group,
	// --admin-uid).
	Authz AuthzConfig
	// METRICS: MetricsListen, when set, serves /metrics, /healthz and
	// /readyz over HTTP on this host:port from the start of Open
	// (metrics.go; docs/metrics.md).
	MetricsListen string
}

// Daemon is one running zlayer-overlayd.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	dir      string
	store    journal.Store
	owner    effects.Owner
	pcfg     projections.Config
	nodeKey  wgtypes.Key
	nodePub  string
	keys     keyStore
	decided  *decidedState
	pipe     *pipeline
	runner   *effects.Runner
	wg       *wireguard.Reconciler // nil without a data plane
	health   *healthMonitor
	server   *ipc.Server
	listener net.Listener
	boot     replay.Stats
	dumps    dumps
	// followers are the journal_follow streams (follow.go); backups the
	// journal_backup copies being served (backup.go).
	followers followers
	backups   backups
	jw        *journalWatch
	probs     effects.ProblemSet // the daemon's own (the socket)
	// platformProbs are what this platform lacks (Windows without HCN):
	// listed in status, not in readiness.
	platformProbs effects.ProblemSet
	// compactGate lets one compaction run at a time (compact.go).
	compactGate compactGate
	phase       phaseState     // phase.go
	answers     answerHooks    // observe.go
	authz       *authorizer    // authz.go
	dlog        *decisionLog   // decisionlog.go
	metrics     *daemonMetrics // METRICS: metrics.go; nil without --metrics-listen

	// serveMu orders ServeListener's start and shutdown's start (server,
	// health, endpoint file, phase).
	serveMu sync.Mutex

	submitMu   sync.RWMutex // held to send on pipe.jobs
	pipeClosed bool

	mu       sync.Mutex
	failed   error
	stopping bool
	// ret keeps past states for state --at; retStop ends its backfill.
	ret              *retainer
	retStop, retDone chan struct{}
	stopped          chan struct{}
	stopOnce         sync.Once
}

// Open boots the daemon: journal, keys, snapshot and replay, identity,
// reconcile. It does not serve yet: call Serve.
func Open(cfg Config) (*Daemon, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = ipc.DefaultDataDir
	}
	if cfg.Socket == "" {
		cfg.Socket = ipc.DefaultSocketPath(cfg.DataDir)
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 10000
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = 10 * time.Second
	}
	if cfg.PeerUnhealthyAfter == 0 {
		cfg.PeerUnhealthyAfter = 180 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	pcfg := projections.DefaultConfig()
	pcfg.Platform = platform
	if cfg.SlicePrefix4 != 0 {
		pcfg.SlicePrefix4 = cfg.SlicePrefix4
	}
	if cfg.SlicePrefix6 != 0 {
		pcfg.SlicePrefix6 = cfg.SlicePrefix6
	}
	if pcfg.SlicePrefix4 < 1 || pcfg.SlicePrefix4 > 30 || pcfg.SlicePrefix6 < 1 || pcfg.SlicePrefix6 > 126 {
		return nil, fmt.Errorf("--slice-prefix: %d (IPv4) / %d (IPv6) is out of range (1-30 / 1-126)", pcfg.SlicePrefix4, pcfg.SlicePrefix6)
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, dir: filepath.Join(cfg.DataDir, "overlayd"), pcfg: pcfg, stopped: make(chan struct{})}
	d.phase.since = time.Now()
	startNotify(d) // notify.go: systemd's READY/STATUS/STOPPING/WATCHDOG when NOTIFY_SOCKET is set (SYSD)
	if cfg.OnPhase != nil {
		d.onPhase(cfg.OnPhase)
	}
	ok := false // METRICS: declared here so that a failed Open stops the metrics server too
	d.startMetrics()
	defer func() {
		if !ok {
			d.stopMetrics()
		}
	}()
	d.keys = keyStore{dir: filepath.Join(d.dir, "keys"), log: d.log}
	d.authz = newAuthorizer(d.log, cfg.Authz)
	d.startDecisionLog()
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	store := cfg.Store
	if store == nil {
		if err := checkBeforeOpen(d.dir); err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
		bs, err := journal.Open(d.dir, replay.Indexing(journal.Options{}))
		if err != nil {
			return nil, err
		}
		store = bs
	}
	d.store = store
	defer func() {
		if ok {
			return
		}
		if d.pipe != nil {
			d.submitMu.Lock()
			d.pipeClosed = true // a reconciler's detach arriving now is refused, not sent
			d.submitMu.Unlock()
			d.pipe.close()
		}
		if d.runner != nil {
			d.runner.Stop() // closes the reconcilers
		}
		store.Close()
	}()
	// Before anything else reads the state or touches the kernel: a
	// journal that lost history, or is not this data dir's, stops here.
	if err := checkHistory(d.dir, store); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	removeStaleTemps(d.log, d.dir, filepath.Join(d.dir, "keys"))
	key, source, persistKey, err := loadNodeKey(d.dir, cfg.WGPrivateKeyFile)
	if err != nil {
		return nil, err
	}
	d.nodeKey, d.nodePub = key, key.PublicKey().String()
	d.owner = ownerOf(store.Identity())

	head, headHash := store.Head()
	d.setPhase(PhaseReplaying, fmt.Sprintf("loading the state of %d events", head))
	live, st, err := replay.Load(store, replay.Options{Verify: true, Progress: func(seq uint64) {
		d.log.Info("replaying the journal", "seq", seq, "head", head)
	}})
	if err != nil {
		return nil, fmt.Errorf("boot: %w (nothing was changed; run `overlayctl --data-dir %s journal verify`, then `journal repair`)", err, cfg.DataDir)
	}
	d.boot = st
	d.log.Info("journal loaded", "journal", store.Identity().ID.String(), "events", live.Seq, "snapshot_seq", st.SnapshotSeq, "replayed", st.Replayed,
		"snapshot_note", st.SnapshotReason, "took", st.Duration.Round(time.Microsecond))
	if st.SnapshotSeq == 0 && st.SnapshotReason != "no snapshot" && st.SnapshotReason != "disabled" {
		d.log.Warn("the snapshot was not used; the whole journal was replayed", "reason", st.SnapshotReason)
	}
	if live.Seq != head {
		return nil, fmt.Errorf("boot: replay ended at %d but the journal head is %d", live.Seq, head)
	}
	d.bootKeys(live) // key files no journaled service owns, modes (keyclean.go)
	d.decided = &decidedState{st: live.Clone(), hash: headHash, advance: make(chan struct{})}
	d.jw = newJournalWatch(d) // before the pipeline, which reads it
	d.pipe = newPipeline(d, live)
	var recs []effects.Reconciler
	if !cfg.NoDataPlane {
		d.wg = wireguard.New(d, d.log)
		recs = append(recs, d.dataPlane()...) // platform_*.go
	}
	recs = append(recs, cfg.Reconcilers...)
	d.runner = effects.NewRunner(d.decided, d.log, cfg.ReconcileInterval, recs...)
	d.meterPipeline() // METRICS: journal commits, passes, DNS queries
	d.runner.Start(context.Background())

	// The node's own key is a decision like any other: journal it when it
	// is new or changed, and only then store a new key file.
	if live.Node.PublicKey != "" && live.Node.PublicKey != d.nodePub {
		d.log.Warn("the node's WireGuard key changed; peers must be told the new public key",
			"old_public_key", live.Node.PublicKey, "public_key", d.nodePub, "source", source)
	}
	if r := <-d.submit(&job{cmd: projections.SetNodeIdentity{PublicKey: d.nodePub, Source: source},
		cause: journal.Cause{Op: "boot"}}); isErr(r) {
		return nil, fmt.Errorf("boot: record node identity: %s", r.(ipc.Err).Message)
	}
	if err := persistKey(); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	if st.Replayed > cfg.SnapshotEvery {
		if err := d.snapshot(); err != nil {
			d.log.Warn("boot snapshot failed", "err", err)
		}
	}
	// Converge the host to the state before serving: devices with the
	// same keys, ports, names and addresses, their peers, routes.
	d.setPhase(PhaseReconciling, "making the host match the state")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err = d.runner.ReconcileAll(ctx)
	cancel()
	if err != nil {
		d.log.Warn("boot reconcile", "err", err)
	}
	d.jw.start()
	every := cfg.KeepStateEvery
	if every == 0 {
		every = DefaultKeepStateEvery
	}
	if cfg.NoKeptStates {
		every = 0
	}
	d.ret = newRetainer(d, every)
	d.retStop, d.retDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(d.retDone)
		d.ret.backfill(d.retStop)
	}()
	ok = true
	return d, nil
}

func isErr(r ipc.Response) bool { _, e := r.(ipc.Err); return e }

// PublicKey is the node's WireGuard public key.
func (d *Daemon) PublicKey() string { return d.nodePub }

// BootStats describe how the state was loaded.
func (d *Daemon) BootStats() replay.Stats { return d.boot }

// Serve listens on the socket and serves until Stop. It returns nil after a
// graceful stop and the fatal error otherwise.
func (d *Daemon) Serve() error {
	l, err := d.listen(d.cfg.Socket)
	if err != nil {
		d.shutdown(false)
		return err
	}
	return d.ServeListener(l)
}

// ServeListener serves on l (tests, Windows named pipes).
//
// A Stop may come at any moment, even before or while this starts
// serving: serveMu orders the two, so a daemon stopped first never
// serves, and one stopping sees the server and health monitor this made.
func (d *Daemon) ServeListener(l net.Listener) error {
	d.serveMu.Lock()
	d.mu.Lock()
	stopping := d.stopping
	if !stopping {
		d.listener = l
	}
	d.mu.Unlock()
	if stopping {
		d.serveMu.Unlock()
		l.Close()
		<-d.stopped
		return d.failure()
	}
	d.authz.setTransport(l.Addr().Network())
	srv := &ipc.Server{Handler: d.handle, Log: d.log, MaxConns: d.cfg.MaxConns}
	if len(d.answers) > 0 {
		srv.Observe = d.answers.observe
	}
	d.server = srv
	if d.wg != nil {
		d.health = startHealth(d)
	}
	d.log.Info("serving", "socket", l.Addr().String(), "public_key", d.nodePub)
	go func() {
		if err := srv.Serve(l); errors.Is(err, ipc.ErrServerClosed) {
			l.Close() // drained before it started accepting
		}
	}()
	d.writeEndpoint(l.Addr().String())
	d.setPhase(PhaseServing, "")
	d.serveMu.Unlock()
	go d.watchSocket()
	<-d.stopped
	return d.failure()
}

// watchSocket puts the socket file back, every check interval, when it was
// removed by hand (the orchestrator's next dial would fail otherwise).
func (d *Daemon) watchSocket() {
	t := time.NewTicker(d.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-d.stopped:
			return
		case <-t.C:
			d.checkSocket()
		}
	}
}

func (d *Daemon) checkSocket() {
	d.mu.Lock()
	r, ok := d.listener.(ipc.Restorer)
	d.mu.Unlock()
	if !ok {
		return
	}
	restored, err := r.Restore()
	if restored {
		d.log.Warn("the socket file was removed or replaced; bound it again", "socket", d.cfg.Socket)
	}
	if errors.Is(err, net.ErrClosed) {
		return
	}
	if err != nil {
		d.log.Warn("cannot restore the socket file", "socket", d.cfg.Socket, "err", err)
		err = fmt.Errorf("socket %s: %w", d.cfg.Socket, err)
	}
	d.probs.Set("socket", err)
}

// Stop stops the daemon gracefully: answer what was already read, let the
// pipeline drain, snapshot, close the journal.
func (d *Daemon) Stop() { d.shutdown(true) }

// ReconcileNow runs a full pass of every reconciler (drift repair) and
// waits for it, at most timeout.
func (d *Daemon) ReconcileNow(timeout time.Duration) error {
	d.checkSocket()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.runner.ReconcileAll(ctx)
}

// Done is closed once the daemon has stopped.
func (d *Daemon) Done() <-chan struct{} { return d.stopped }

func (d *Daemon) failure() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// fatal records an unrecoverable error and stops without a final
// snapshot: the journal holds every acknowledged decision, and the next
// boot replays it.
func (d *Daemon) fatal(err error) {
	d.mu.Lock()
	first := d.failed == nil
	if first {
		d.failed = err
	}
	d.mu.Unlock()
	if first {
		d.log.Error("fatal; stopping", "err", err)
		go d.shutdown(false)
	}
}

func (d *Daemon) shutdown(graceful bool) {
	d.stopOnce.Do(func() {
		d.serveMu.Lock() // after a ServeListener under way (see there)
		d.mu.Lock()
		d.stopping = true
		d.mu.Unlock()
		srv, health := d.server, d.health
		d.serveMu.Unlock()
		d.setPhase(PhaseStopping, "")
		if srv != nil {
			d.removeEndpoint()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			srv.Drain(ctx)
			cancel()
		}
		d.backups.dropAll()
		if health != nil {
			health.stop()
		}
		if d.jw != nil {
			d.jw.stop()
		}
		if d.retStop != nil {
			close(d.retStop)
			<-d.retDone
		}
		if d.pipe != nil {
			d.submitMu.Lock()
			d.pipeClosed = true
			d.submitMu.Unlock()
			d.pipe.close() // answers wait for effects: the runner still runs
		}
		if d.runner != nil {
			// Closes the reconcilers: devices go with the process, bridges,
			// veths and the NAT table stay (containers keep working).
			d.runner.Stop()
		}
		if h := d.store.Health(); !h.OK() {
			// A commit that failed may have reached the file: cut it back
			// now if the file can be written, or it would come back at the
			// next boot as if acknowledged.
			if err := d.store.Recover(); err != nil {
				d.log.Warn("stopping while the journal is read-only; a write that failed may reach the next boot", "err", err)
			}
		}
		if graceful && d.failure() == nil {
			if err := d.snapshot(); err != nil {
				d.log.Warn("final snapshot failed; the next boot replays more", "err", err)
			}
		}
		if err := d.store.Close(); err != nil {
			d.log.Warn("close journal", "err", err)
		}
		d.log.Info("stopped", "graceful", graceful && d.failure() == nil)
		d.setPhase(PhaseStopped, "")
		d.stopMetrics() // METRICS
		close(d.stopped)
	})
}

// submit hands a job to the pipeline; the channel yields its response.
func (d *Daemon) submit(j *job) <-chan ipc.Response {
	out := make(chan ipc.Response, 1)
	j.out = out
	d.submitMu.RLock()
	defer d.submitMu.RUnlock()
	if d.pipeClosed {
		return ipc.Reply(ipc.Err{Message: "the daemon is shutting down"})
	}
	d.pipe.jobs <- j
	return out
}

// waitEffects waits until the decided state holds event seq and every
// reconciler has applied it.
func (d *Daemon) waitEffects(ctx context.Context, seq uint64) error {
	if err := d.decided.waitSeq(ctx, seq); err != nil {
		return err
	}
	return d.runner.WaitApplied(ctx, seq)
}

// detachGone journals the detach of a container the bridge reconciler found
// gone (process exited, or its PID now in another namespace). It returns at
// once; the detach is decided like any command, with cause "reconcile".
func (d *Daemon) detachGone(handleKey, reason string) {
	h, err := projections.ParseHandleKey(handleKey)
	if err != nil {
		d.log.Error("cannot detach", "handle", handleKey, "err", err)
		return
	}
	var inode uint64
	d.decided.Read(func(st *projections.State) {
		if a := st.Attachments[handleKey]; a != nil {
			inode = a.NetnsInode
		}
	})
	go func() {
		r := <-d.submit(&job{cmd: projections.Detach{Handle: h, Reason: reason, IfNetnsInode: inode},
			cause: journal.Cause{Op: "reconcile"}})
		if e, isErr := r.(ipc.Err); isErr {
			d.log.Warn("journaling the detach of a gone container failed", "handle", handleKey, "err", e.Message)
		}
	}()
}

// PrivateKey implements wireguard.Keys: the node's key or a dedicated
// device's key from the key store.
func (d *Daemon) PrivateKey(pub string) (wgtypes.Key, error) {
	if pub == d.nodePub {
		return d.nodeKey, nil
	}
	return d.keys.Load(pub)
}

// snapshot stores the decided state as the latest snapshot, once the
// journal holds all of it.
func (d *Daemon) snapshot() error {
	start := time.Now()
	var sn *journal.Snapshot
	if err := d.decided.settled(func(st *projections.State, hash [32]byte) error {
		sn = replay.Snapshot(st, hash)
		return nil
	}); err != nil {
		return err
	}
	encoded := time.Since(start)
	if err := d.store.SaveSnapshot(sn); err != nil {
		if errors.Is(err, journal.ErrClosed) {
			return nil
		}
		return err
	}
	d.ret.snapshotTaken(sn)
	d.metrics.snapshotSaved(time.Since(start)) // METRICS
	d.log.Debug("snapshot saved", "seq", sn.Seq, "bytes", len(sn.Body), "encode", encoded.Round(time.Microsecond), "took", time.Since(start).Round(time.Microsecond))
	return nil
}

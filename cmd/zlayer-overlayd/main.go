// Command zlayer-overlayd is the node overlay-network daemon: it owns the
// node's WireGuard mesh, address management, service bridges, DNS and NAT,
// and journals every decision before acknowledging it.
//
//	zlayer-overlayd --data-dir /var/lib/zlayer
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
	"github.com/zlayer/overlayd/cmd/internal/failpoint"
	"github.com/zlayer/overlayd/cmd/internal/version"
	"github.com/zlayer/overlayd/effects/dns"
	"github.com/zlayer/overlayd/ipc"
)

// serviceMode is which of --service, --install-service and
// --uninstall-service was given (runService: service_windows.go, and
// service_other.go, which refuses them).
type serviceMode struct{ run, install, uninstall bool }

func main() {
	failpoint.Install() // test builds (-tags failpoints) only
	var (
		dataDir   = flag.String("data-dir", ipc.DefaultDataDir, "data directory; the journal lives in <data-dir>/overlayd")
		socket    = flag.String("socket", "", "IPC socket (default: /var/run/zlayer-overlayd.sock for the default data dir, else <data-dir>/run/zlayer-overlayd.sock)")
		logLevel  = flag.String("log-level", "info", "debug, info, warn or error")
		keyFile   = flag.String("wg-private-key-file", "", "import the node's WireGuard private key (base64, as 'wg genkey' writes) from this file")
		slice4    = flag.Int("slice-prefix", 24, "prefix length of the node slice derived in an IPv4 cluster when setup_global_overlay gives none")
		slice6    = flag.Int("slice-prefix6", 64, "prefix length of the node slice derived in an IPv6 cluster")
		snapEvery = flag.Uint64("snapshot-every", 10000, "take a projection snapshot every N journaled events")
		keepEvery = flag.Uint64("keep-state-every", daemon.DefaultKeepStateEvery, "keep the projected state in the journal every N events, so that overlayctl state --at replays at most N events (0: keep none)")
		interval  = flag.Duration("reconcile-interval", 10*time.Second, "period of the drift check against the kernel")
		advertise = flag.String("advertise-address", "", "underlay address guests are told to reach this node at (default: the source address of the route to the default gateway, IPv4 first, never an overlay address or one of the daemon's own links)")
		dnsListen = flag.String("dns-listen", "127.0.0.1:53", "local addresses (comma-separated ip:port) the DNS server answers on besides the node's overlay address port 53; \"\" for none")
		dnsUp     = flag.String("dns-upstream", "", "upstream resolvers for names outside the overlay (comma-separated ip[:port]; default: the nameservers of --resolv-conf)")
		resolv    = flag.String("resolv-conf", "/etc/resolv.conf", "file whose nameservers are the DNS upstreams (loopback stubs skipped); re-read when it changes")
		maxConns  = flag.Int("max-connections", ipc.DefaultMaxConns, "most client connections open at once; past it a new one is answered err and closed (16 of them are kept for root)")
		retain    = flag.Uint64("retain-events", 0, "keep at least the newest N events in the journal: older ones are sealed into archive files under <data-dir>/overlayd/archive and replaced by a checkpoint, checked at each snapshot (0: keep every event)")
		unhealthy = flag.Duration("peer-unhealthy-after", 180*time.Second, "a peer whose last handshake is older than this is reported unhealthy")
		showVer   = flag.Bool("version", false, "print the version (release, commit, protocol) and exit")

		// SEC: log format and who may talk (docs/security.md).
		logFormat  = flag.String("log-format", "text", "log line format: text (logfmt key=value) or json (one object a line)")
		adminGroup = flag.String("admin-group", daemon.DefaultAdminGroup, "group (name or numeric GID) whose members may send ops that change state or stop the daemon; anyone who can open the socket may read. A group that does not exist leaves only root and --admin-uid")
		adminUIDs  uidList
	)
	flag.Var(&adminUIDs, "admin-uid", "uid that may send ops that change state, besides root and --admin-group (repeatable, or comma-separated)")
	// METRICS
	metricsListen := flag.String("metrics-listen", "", "serve Prometheus /metrics, /healthz and /readyz over HTTP on this host:port, e.g. 127.0.0.1:9464 (keep it on loopback: the metrics name services, peers and addresses); \"\" for none")
	// SVC: the Windows service control manager (service_windows.go; docs/windows.md).
	var svcMode serviceMode
	flag.BoolVar(&svcMode.run, "service", false, `run as the Windows service ZLayerDaemon-Overlayd under the service control manager, logging to <data-dir>\overlayd\logs\overlayd.log and the event log (Windows only)`)
	flag.BoolVar(&svcMode.install, "install-service", false, "install the Windows service ZLayerDaemon-Overlayd: this executable with --data-dir, the other flags given and --service, started automatically as LocalSystem; then exit (Windows only)")
	flag.BoolVar(&svcMode.uninstall, "uninstall-service", false, "delete the Windows service ZLayerDaemon-Overlayd (stop it first) and exit (Windows only)")
	parseFlags(os.Args[1:])
	if *showVer {
		fmt.Println(version.String())
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "zlayer-overlayd: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "zlayer-overlayd: --log-level: %v\n", err)
		os.Exit(2)
	}
	log, err := newLogger(os.Stderr, *logFormat, level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "zlayer-overlayd: %v\n", err)
		os.Exit(2)
	}
	// The journal logs through the default logger (indexing, compaction):
	// the same handler, so its lines read like the daemon's own.
	slog.SetDefault(log)
	if os.Getenv("GOGC") == "" {
		// Each wireguard-go device keeps about 28 MB of batch buffers that
		// count as live heap but are mostly never touched; with the default
		// GOGC=100 the collector then lets garbage grow by as much again
		// before it runs. 50 keeps a node holding 100,000 addresses near
		// 70 MiB resident instead of 100 (BENCHMARKS.md).
		debug.SetGCPercent(50)
	}
	cfg := daemon.Config{
		DataDir: *dataDir, Socket: *socket, WGPrivateKeyFile: *keyFile,
		SlicePrefix4: *slice4, SlicePrefix6: *slice6, SnapshotEvery: *snapEvery,
		KeepStateEvery: *keepEvery, NoKeptStates: *keepEvery == 0,
		ReconcileInterval: *interval, PeerUnhealthyAfter: *unhealthy, Log: log, MaxConns: *maxConns,
		RetainEvents:  *retain,
		Authz:         daemon.AuthzConfig{Group: *adminGroup, UIDs: adminUIDs},
		MetricsListen: *metricsListen, // METRICS
	}
	if cfg.DNS, err = dnsOptions(*dnsListen, *dnsUp, *resolv); err != nil {
		fmt.Fprintf(os.Stderr, "zlayer-overlayd: %v\n", err)
		os.Exit(2)
	}
	if *advertise != "" {
		a, err := netip.ParseAddr(*advertise)
		if err != nil {
			fmt.Fprintf(os.Stderr, "zlayer-overlayd: --advertise-address: %v\n", err)
			os.Exit(2)
		}
		cfg.AdvertiseAddr = a
	}
	if svcMode != (serviceMode{}) { // SVC
		os.Exit(runService(svcMode, cfg, func(w io.Writer) *slog.Logger { l, _ := newLogger(w, *logFormat, level); return l }))
	}
	d, err := daemon.Open(cfg)
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Info("signal received; stopping", "signal", s.String())
		d.Stop()
	}()
	// SIGHUP (systemctl reload): compare everything with the kernel now
	// and repair it, as the periodic check does; re-read resolv.conf.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			log.Info("SIGHUP: checking every effect against the kernel")
			if err := d.ReconcileNow(30 * time.Second); err != nil {
				log.Warn("SIGHUP check", "err", err)
			}
		}
	}()
	if err := d.Serve(); err != nil {
		log.Error("stopped with an error", "err", err)
		os.Exit(1)
	}
}

const usageHead = `zlayer-overlayd is the node overlay-network daemon: it owns the node's
WireGuard mesh, address management, service bridges, DNS and NAT, and
journals every decision before acknowledging it. The orchestrator drives it
over a Unix socket (PROTOCOL.md); overlayctl audits it.

usage: zlayer-overlayd [flags]

flags:
`

// parseFlags parses the command line: --help prints the usage once, on
// stdout, and exits 0; a bad flag prints the error and the usage once, on
// stderr, and exits 2.
func parseFlags(args []string) {
	if code, exit := parseArgs(flag.CommandLine, args, os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
}

// parseArgs parses args into fs, printing nothing itself on success;
// exit says the process must end with code (0 after --help, 2 after a
// bad flag). The flag package would print the usage on its own before
// returning flag.ErrHelp (on stderr, so --help printed it twice, once on
// each stream): its output is silenced while it parses.
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, exit bool) {
	fs.Init(fs.Name(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(fs, stdout)
		return 0, true
	case err != nil:
		fmt.Fprintf(stderr, "zlayer-overlayd: %v\n\n", err)
		printUsage(fs, stderr)
		return 2, true
	}
	return 0, false
}

func printUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, usageHead)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// dnsOptions parses the DNS flags.
func dnsOptions(listen, upstreams, resolvConf string) (dns.Options, error) {
	o := dns.Options{ResolvConf: resolvConf}
	for _, f := range strings.Split(listen, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(f)
		if err != nil {
			return o, fmt.Errorf("--dns-listen: %q is not ip:port: %v", f, err)
		}
		o.Listen = append(o.Listen, ap)
	}
	for _, f := range strings.Split(upstreams, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if ap, err := netip.ParseAddrPort(f); err == nil {
			o.Upstreams = append(o.Upstreams, ap.String())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return o, fmt.Errorf("--dns-upstream: %q is not ip or ip:port", f)
		}
		o.Upstreams = append(o.Upstreams, netip.AddrPortFrom(a, dns.Port).String())
	}
	return o, nil
}

//go:build linux

// Command bench measures overlayd against its targets, with the baseline
// measured side by side in the same run, and prints Markdown for
// BENCHMARKS.md.
//
//	go run ./tools/bench                 # everything (about 3 minutes)
//	go run ./tools/bench -only throughput,boot,rss
//
// It builds the daemon, runs it as a separate process on a temporary data
// dir and drives it through the real socket with the ipc client.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/netlab"
)

var (
	only     = flag.String("only", "throughput,boot,rss,mesh,attach,dns,nat", "comma-separated: throughput, boot, rss, mesh, attach, dns, nat, audit (mesh, attach, dns and nat need root; audit, overlayctl's queries on a 1M-event journal, is not in the default set: about 5 minutes)")
	duration = flag.Duration("duration", 5*time.Second, "measurement time per throughput point")
	bootRuns = flag.Int("boot-runs", 3, "boots measured per case (the median is reported)")
	keep     = flag.Bool("keep", false, "keep the temporary directory")
	// compareMetrics replaces the throughput and dns items by their
	// metrics-off / metrics-on comparison (metrics.go).
	compareMetrics = flag.Bool("compare-metrics", false, "for throughput and dns: measure two daemons side by side, --metrics-listen off and on (scraped every second), interleaved over 3 rounds, and print both and their ratio (64 clients)")
)

var daemonBin string

// daemonArgs are extra flags for the throughput daemon (experiments).
var daemonArgs []string

func main() {
	extra := flag.String("daemon-args", "", "extra flags for the throughput daemon, space-separated")
	flag.Parse()
	daemonArgs = strings.Fields(*extra)
	tmp, err := os.MkdirTemp("", "overlayd-bench-")
	check(err)
	if !*keep {
		defer os.RemoveAll(tmp)
	}
	defer closeLabs()
	daemonBin = filepath.Join(tmp, "zlayer-overlayd")
	out, err := exec.Command("go", "build", "-o", daemonBin, "./cmd/zlayer-overlayd").CombinedOutput()
	if err != nil {
		fatalf("build the daemon (run from the repository root): %v\n%s", err, out)
	}
	fmt.Printf("Measured %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	for _, what := range strings.Split(*only, ",") {
		switch strings.TrimSpace(what) {
		case "throughput":
			if *compareMetrics {
				benchMetricsThroughput(tmp)
				continue
			}
			benchThroughput(tmp)
		case "boot":
			benchBoot(tmp)
		case "rss":
			benchRSS(tmp)
		case "mesh":
			benchMesh(tmp)
		case "attach":
			benchAttach(tmp)
		case "dns":
			if *compareMetrics {
				benchMetricsDNS(tmp)
				continue
			}
			benchDNS(tmp)
		case "nat":
			benchNAT(tmp)
		case "audit":
			benchAudit(tmp)
		default:
			fatalf("unknown -only item %q", what)
		}
	}
}

func check(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	closeLabs()
	os.Exit(1)
}

func machine() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var u syscall.Utsname
	kernel := "?"
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		kernel = string(b)
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	return fmt.Sprintf("%d × %s%s, Linux %s, %s", runtime.NumCPU(), cpu, mem, kernel, runtime.Version())
}

// proc is a daemon under measurement.
type proc struct {
	dataDir, socket string
	cmd             *exec.Cmd
	logPath         string
	started         time.Time
	exited          chan error
}

// labs holds, per data dir, the network namespace its daemon runs in;
// spawned holds every process the tool started. cleanup ends both, also
// when the tool fails half-way.
var (
	labs    = map[string]*netlab.Lab{}
	spawned []*exec.Cmd
)

func track(c *exec.Cmd) *exec.Cmd {
	spawned = append(spawned, c)
	return c
}

func closeLabs() {
	for _, c := range spawned {
		if c.Process != nil && c.ProcessState == nil {
			c.Process.Kill()
		}
	}
	for _, l := range labs {
		l.Close()
	}
}

// startDaemon starts a daemon on dataDir. As root it runs in a network
// namespace of its own (a one-node netlab, kept for later starts on the
// same dir), so that its WireGuard device and routes never touch the
// machine's namespace; otherwise it runs directly and creates no device.
func startDaemon(dataDir string, args ...string) *proc {
	p := &proc{dataDir: dataDir, socket: filepath.Join(dataDir, "run", "zlayer-overlayd.sock"), logPath: filepath.Join(dataDir, "daemon.log")}
	check(os.MkdirAll(dataDir, 0o700))
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	check(err)
	args = append([]string{"--data-dir", dataDir, "--socket", p.socket}, args...)
	if netlab.Root() {
		l := labs[dataDir]
		if l == nil {
			l, err = netlab.New(1, netlab.Options{Daemon: daemonBin, Dir: filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+"-lab")})
			check(err)
			labs[dataDir] = l
		}
		p.cmd = l.Nodes[0].DaemonCommand(args...)
	} else {
		p.cmd = exec.Command(daemonBin, args...)
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	track(p.cmd)
	p.started = time.Now()
	check(p.cmd.Start())
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait(); f.Close() }()
	return p
}

// ready waits until the daemon answers status and returns the time since
// the process was started.
func (p *proc) ready() time.Duration {
	for {
		c, err := ipc.Dial(context.Background(), p.socket, ipc.DialOptions{})
		if err == nil {
			_, err = c.Call(context.Background(), ipc.Status{})
			c.Close()
			if err == nil {
				return time.Since(p.started)
			}
		}
		select {
		case err := <-p.exited:
			b, _ := os.ReadFile(p.logPath)
			fatalf("daemon exited (%v):\n%s", err, b)
		case <-time.After(200 * time.Microsecond):
		}
	}
}

func (p *proc) client() *ipc.Client {
	c, err := ipc.Dial(context.Background(), p.socket, ipc.DialOptions{Attempts: 50, Backoff: 10 * time.Millisecond})
	check(err)
	return c
}

func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		b, _ := os.ReadFile(p.logPath)
		fatalf("daemon stop: %v\n%s", err, b)
	}
}

// memKiB is the daemon's memory: resident set, its peak, and the resident
// set's anonymous (heap, stacks) and file-backed (the mmap'd journal) parts.
type memKiB struct{ rss, hwm, anon, file int }

func (p *proc) mem() memKiB {
	var m memKiB
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	check(err)
	for _, line := range strings.Split(string(b), "\n") {
		fmt.Sscanf(line, "VmRSS: %d kB", &m.rss)
		fmt.Sscanf(line, "VmHWM: %d kB", &m.hwm)
		fmt.Sscanf(line, "RssAnon: %d kB", &m.anon)
		fmt.Sscanf(line, "RssFile: %d kB", &m.file)
	}
	return m
}

// loadTook returns the "took" of the daemon's last "journal loaded" log
// line (the log holds every start on this data dir).
func (p *proc) loadTook() time.Duration {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		if !strings.Contains(line, `msg="journal loaded"`) {
			continue
		}
		i := strings.Index(line, "took=")
		if i < 0 {
			continue
		}
		d, err := time.ParseDuration(strings.Fields(line[i+5:])[0])
		if err == nil {
			return d
		}
	}
	return 0
}

// cpu is the daemon's user+system CPU time so far.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	check(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitPath = "../../packaging/systemd/zlayer-overlayd.service"

// unitSettings parses the shipped unit: every Key=value, in order, by
// section ("Service.Type").
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not Key=value", unitPath, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The shipped unit passes `systemd-analyze verify` (offline: it needs no
// systemd as PID 1), with ExecStart pointed at a built daemon since verify
// checks that the executable exists; any line verify prints about the unit
// fails the test (an unknown key is only a warning, exit status 0).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("systemd-analyze is not installed (Debian package systemd); CI installs it")
		}
		t.Fatal("CI is set but systemd-analyze is not installed: .ci/run installs it")
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	const exe = "/usr/local/bin/zlayer-overlayd"
	if !strings.Contains(string(b), "ExecStart="+exe+" ") {
		t.Fatalf("the unit does not start %s", exe)
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "zlayer-overlayd.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), exe, daemonBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", unit)
	out, err := cmd.CombinedOutput()
	t.Logf("systemd-analyze verify --man=no: %v\n%s", err, out)
	if err != nil {
		t.Fatalf("systemd-analyze verify failed: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "zlayer-overlayd") {
			t.Errorf("verify: %s", l)
		}
	}
}

// The unit keeps what the issue and docs/systemd.md promise: a regression
// (a dropped hardening line, a lost capability the daemon needs) fails
// here, not on a node.
func TestSystemdUnitSettings(t *testing.T) {
	s := unitSettings(t)
	want := map[string]string{
		"Service.Type":                    "notify",
		"Service.NotifyAccess":            "main",
		"Service.WatchdogSec":             "30s",
		"Service.Restart":                 "on-failure",
		"Service.ExecReload":              "/bin/kill -HUP $MAINPID",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.StateDirectory":          "zlayer/overlayd",
		"Service.RuntimeDirectory":        "zlayer-overlayd",
		"Service.RestrictAddressFamilies": "AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET",
		"Service.SystemCallFilter":        "@system-service",
		"Service.SystemCallArchitectures": "native",
		"Service.DevicePolicy":            "closed",
		"Service.DeviceAllow":             "/dev/net/tun rw",
		"Service.CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_CHOWN",
	}
	for k, v := range want {
		if got := s[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// The daemon writes /proc/sys/net (forwarding, proxy_arp), opens
	// /dev/net/tun and owns the host's network: these must stay off.
	for _, k := range []string{"PrivateNetwork", "ProtectKernelTunables", "PrivateDevices", "ProtectProc", "ProcSubset", "PrivateUsers", "User", "DynamicUser"} {
		if v, ok := s["Service."+k]; ok {
			t.Errorf("Service.%s = %q: the daemon cannot work with it (docs/systemd.md)", k, v)
		}
	}
	// The socket the unit gives is the one its symlink and the
	// orchestrator's default path lead to.
	start := strings.Join(s["Service.ExecStart"], " ")
	if !strings.Contains(start, "--socket /run/zlayer-overlayd/zlayer-overlayd.sock") || !strings.Contains(start, "--data-dir /var/lib/zlayer") {
		t.Errorf("ExecStart=%s", start)
	}
	if !strings.Contains(strings.Join(s["Service.ExecStartPre"], "\n"), "ln -sfn /run/zlayer-overlayd/zlayer-overlayd.sock /run/zlayer-overlayd.sock") {
		t.Errorf("no ExecStartPre links /run/zlayer-overlayd.sock to the socket: %q", s["Service.ExecStartPre"])
	}
}

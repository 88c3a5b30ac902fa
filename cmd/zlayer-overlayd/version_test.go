//go:build linux

package main

import (
	"os/exec"
	"strings"
	"testing"
)

// --version and --help exit 0 on stdout; a bad flag exits 2.
func TestVersionAndHelpFlags(t *testing.T) {
	out, err := exec.Command(daemonBin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "overlayd ") || !strings.Contains(string(out), "protocol v1") {
		t.Fatalf("--version: %v: %q", err, out)
	}
	for _, h := range []string{"--help", "-h"} {
		out, err := exec.Command(daemonBin, h).Output()
		if err != nil || !strings.Contains(string(out), "usage: zlayer-overlayd") || !strings.Contains(string(out), "-data-dir") {
			t.Fatalf("%s: %v: %q", h, err, out)
		}
	}
	err = exec.Command(daemonBin, "--no-such-flag").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("a bad flag: %v, want exit 2", err)
	}
}

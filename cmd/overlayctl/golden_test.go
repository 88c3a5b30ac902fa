package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goldenCommands are the read commands the golden tests run on the
// fixture node, each with -o table, json and jsonl.
var goldenCommands = [][]string{
	{"status"}, {"peers"}, {"ipam"}, {"ipam", "--addresses"}, {"services"}, {"attachments"}, {"dns"},
	{"state"}, {"state", "--at", "5"}, {"state", "--at", "2026-11-30T09:00:10Z"},
	{"journal", "ls"}, {"journal", "ls", "--after", "10", "--limit", "3"},
	{"journal", "ls", "--type", "ip_reserved", "--type", "ip_released"},
	{"journal", "ls", "--type", "ip_reserved,dns_registered", "--reverse", "--limit", "2"},
	{"journal", "ls", "--op", "attach_container"},
	{"journal", "ls", "--since", "4", "--until", "2026-11-30T09:00:09Z"},
	{"journal", "ls", "--since", "01M8NTXZ6GJM26G2TEFJ5QCEGV"},
	{"journal", "ls", "--service", "db"},
	{"journal", "ls", "--ip", "10.200.3.2"},
	{"journal", "ls", "--cidr", "10.200.4.0/22"},
	{"journal", "ls", "--peer", fixPeerA},
	{"journal", "ls", "--pid", "3105"},
	{"journal", "ls", "--cause", "reconcile"},
	{"journal", "show", "12"}, {"journal", "show", "01M8NTXZ6GJM26G2TEFJ5QCEGV"},
	{"history", "10.200.3.2"}, {"history", "web"}, {"history", "linux_pid:4242"}, {"history", fixPeerA}, {"history", "api.web.prod.local"},
	{"diff", "5", "head"}, {"diff", "12", "13"},
	{"journal", "stats"}, {"journal", "export"}, {"journal", "verify"},
}

var (
	speedLine = regexp.MustCompile(`speed: +\d+ events in [0-9.]+ s \(\d+ events/s\)`)
	speedJSON = regexp.MustCompile(`"seconds":\s*[0-9.e+-]+,(\s*)"events_per_second":\s*[0-9.e+-]+`)
)

// scrubTimes replaces the measured speed of verify.
func scrubTimes(s string) string {
	s = speedLine.ReplaceAllString(s, "speed:      N events in T s (R events/s)")
	return speedJSON.ReplaceAllString(s, `"seconds": T,${1}"events_per_second": R`)
}

// goldenName is the file name for a command and format.
func goldenName(args []string, o string) string {
	n := strings.Join(args, "_")
	for _, r := range []string{"-", ":", "/", ","} {
		n = strings.ReplaceAll(n, r, "")
	}
	n = strings.ReplaceAll(n, fixPeerA, "peerA")
	return n + "." + o
}

// Every read command's output, table and JSON, on the fixture node read
// offline, against testdata/*.golden.
func TestGoldenOffline(t *testing.T) {
	data := t.TempDir()
	fixtureNode(t, data)
	for _, args := range goldenCommands {
		for _, o := range []string{"table", "json", "jsonl"} {
			code, out, errs := ctl(t, data, append(args, "-o", o)...)
			if code != 0 {
				t.Errorf("%v -o %s: exit %d: %s", args, o, code, errs)
				continue
			}
			golden(t, goldenName(args, o), scrubTimes(scrub(out, data)))
		}
	}
}

// journal repair on a sound journal changes nothing and says so (table
// and JSON), and call's output is the response object.
func TestGoldenRepairAndCall(t *testing.T) {
	data := t.TempDir()
	fixtureNode(t, data)
	for _, o := range []string{"table", "json"} {
		code, out, errs := ctl(t, data, "journal", "repair", "-o", o)
		if code != 0 {
			t.Fatalf("repair -o %s: exit %d: %s", o, code, errs)
		}
		golden(t, "journal_repair."+o, scrub(out, data))
	}
	sock := filepath.Join(data, "d.sock")
	liveDaemon(t, data, sock)
	code, out, errs := ctlSock(t, data, sock, "call", `{"op":"allocate_ip","service":"web","join_global":false}`)
	if code != 0 {
		t.Fatalf("call: exit %d: %s", code, errs)
	}
	golden(t, "call_allocate_ip", out)
	code, _, errs = ctlSock(t, data, sock, "call", `{"op":"release_ip","ip":"10.9.9.9"}`)
	if code != exitFailure || !strings.Contains(errs, "10.9.9.9") {
		t.Fatalf("call with an err answer: exit %d: %s", code, errs)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// The query commands answer the same through the daemon (journal_query,
// journal_stats, state_dump at) as from the journal file once the daemon
// has stopped, in every format; only the source differs.
func TestQueriesOnlineEqualOffline(t *testing.T) {
	data := t.TempDir()
	sock := filepath.Join(data, "d.sock")
	stop := liveDaemon(t, data, sock)
	c, err := ipc.Dial(context.Background(), sock, ipc.DialOptions{Attempts: 20, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, r := range []ipc.Request{
		ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: &fixSlice, WgPort: 51820},
		ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared},
		ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: fixPeerA, Endpoint: "192.0.2.10:51820", AllowedIPs: "10.200.4.0/24"}},
		ipc.AllocateIP{Service: "web"},
		ipc.AllocateIP{},
		ipc.RegisterDNS{Name: "api.web.prod.local", IP: ipc.AddrOf(netip.MustParseAddr("10.200.3.7"))},
		ipc.UnregisterDNS{Name: "api.web.prod.local"},
	} {
		if _, err := c.Call(ctx, r); err != nil {
			t.Fatalf("%T: %v", r, err)
		}
	}
	c.Close()
	queries := [][]string{
		{"journal", "ls"}, {"journal", "ls", "--type", "ip_reserved", "--reverse"}, {"journal", "ls", "--service", "web", "--limit", "2"},
		{"journal", "ls", "--cause", "request"}, {"journal", "ls", "--peer", fixPeerA}, {"journal", "ls", "--cidr", "10.200.0.0/16", "--since", "3"},
		{"journal", "show", "3"}, {"history", "web"}, {"history", "api.web.prod.local"}, {"diff", "2", "head"},
		{"state", "--at", "4"}, {"journal", "stats"},
	}
	online := map[string]string{}
	for _, q := range queries {
		for _, o := range []string{"table", "json", "jsonl"} {
			args := append(append([]string(nil), q...), "-o", o)
			code, out, errs := ctlSock(t, data, sock, args...)
			if code != 0 {
				t.Fatalf("%v online: exit %d: %s", args, code, errs)
			}
			if o == "table" && !strings.Contains(out, "source: live daemon") && !strings.Contains(out, "source:     live daemon") {
				t.Errorf("%v online does not say it is live:\n%s", args, out)
			}
			online[strings.Join(args, " ")] = out
		}
	}
	stop()
	for _, q := range queries {
		for _, o := range []string{"table", "json", "jsonl"} {
			args := append(append([]string(nil), q...), "-o", o)
			code, out, errs := ctlSock(t, data, sock, args...)
			if code != 0 {
				t.Fatalf("%v offline: exit %d: %s", args, code, errs)
			}
			on, off := withoutSource(t, online[strings.Join(args, " ")], o), withoutSource(t, out, o)
			if on != off {
				t.Errorf("%v: online and offline differ:\n%s\n--- offline\n%s", args, on, off)
			}
		}
	}
}

// withoutSource drops the source line of a table, or the "source" member
// of a JSON object.
func withoutSource(t *testing.T, s, format string) string {
	t.Helper()
	if format == "table" {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "source:") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if format == "json" && strings.HasPrefix(s, "{") {
		return dropSourceMember(t, s)
	}
	if format == "jsonl" {
		var out []string
		for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			out = append(out, dropSourceMember(t, l))
		}
		return strings.Join(out, "\n")
	}
	return s
}

func dropSourceMember(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return s
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	delete(m, "source")
	b, _ := json.Marshal(m)
	return string(b)
}

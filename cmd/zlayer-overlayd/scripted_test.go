//go:build linux

package main

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

const (
	keyA = "hM3ZhMk4eX1oP0nH1F7d2mY7qf3y2V9lE8Yt8s6QK0Y="
	keyB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
)

// setups are the idempotent requests whose answers must survive restarts.
func setups() []ipc.Request {
	return []ipc.Request{
		ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "4242", ClusterCIDR: "10.200.0.0/16", WgPort: 51820, NatEnabled: true},
		ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeAuto},
		ipc.SetupServiceOverlay{Service: "db", Mode: ipc.ModeDedicated},
	}
}

// A scripted run of every op through the client; kill -9; restart: status
// and overlayctl state are identical, setups answer the same, a new
// allocation differs from every live address, and the journal verifies.
func TestScriptedRunSurvivesKill9(t *testing.T) {
	n := newNode(t)
	n.start()
	c := n.client()
	ctr1, ctr2 := sleeper(t), sleeper(t)

	call(t, c, ipc.SetLocalNodeID{NodeID: 7})
	st := call(t, c, ipc.Status{}).(ipc.StatusResult)
	ownKey := *st.PublicKey
	call(t, c, ipc.SetLocalWgPubkey{Pubkey: keyB}) // differs: status keeps ours
	var setupAnswers []string
	for _, r := range setups() {
		setupAnswers = append(setupAnswers, jsonOf(call(t, c, r)))
	}
	ip1 := call(t, c, ipc.AllocateIP{Service: "web", JoinGlobal: true}).(ipc.IPResult)
	ip2 := call(t, c, ipc.AllocateIP{Service: "", JoinGlobal: true}).(ipc.IPResult)
	call(t, c, ipc.ReleaseIP{IP: ip2.IP})
	call(t, c, ipc.ReleaseIP{IP: ip2.IP}) // again: a no-op
	att1 := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr1.Process.Pid)}, Service: "web", JoinGlobal: true}).(ipc.Attached)
	att2 := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr2.Process.Pid)}, Service: "db", JoinGlobal: false,
		DNSServer: &ipc.Addr{Addr: netip.MustParseAddr("10.200.0.1")}, DNSDomain: strp("overlay.local")}).(ipc.Attached)
	if att1.IP == att2.IP || att1.IP == ip1.IP {
		t.Fatalf("address handed out twice: %v %v %v", att1.IP, att2.IP, ip1.IP)
	}
	msg := callErr(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformWindows, ContainerID: "ctr-abc"}, Service: "web"})
	if !strings.Contains(msg, "handle.platform") {
		t.Errorf("windows attach on linux: %q", msg)
	}
	gc := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-1"}, Service: "web", JoinGlobal: true}).(ipc.GuestConfig)
	if gc.PrivateKey == "" || gc.PublicKey == "" || len(gc.Peers) == 0 || gc.Peers[0].PublicKey != ownKey || gc.ListenPort != 51820 {
		t.Fatalf("guest config: %+v", gc)
	}
	call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-2"}, Service: "web"})
	call(t, c, ipc.DetachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-2"}})
	call(t, c, ipc.DetachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformGuest, ID: "vm-2"}}) // idempotent
	call(t, c, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.10:51820", AllowedIPs: "10.201.0.17/32, 10.201.1.0/28", PersistentKeepaliveSecs: 25}})
	call(t, c, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.10:51821", AllowedIPs: "10.202.0.0/24", PersistentKeepaliveSecs: 25}, Scope: &ipc.PeerScope{Service: "db"}})
	call(t, c, ipc.AddAllowedIP{Pubkey: keyA, CIDR: "10.201.2.0/28"})
	call(t, c, ipc.AddAllowedIP{Pubkey: keyA, CIDR: "10.201.3.0/28"})
	call(t, c, ipc.RemoveAllowedIP{Pubkey: keyA, CIDR: "10.201.3.0/28"})
	call(t, c, ipc.RemoveAllowedIP{Pubkey: keyA, CIDR: "10.202.0.0/24", Scope: &ipc.PeerScope{Service: "db"}})
	call(t, c, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyB, Endpoint: "192.0.2.11:51820", AllowedIPs: "10.203.0.1/32", PersistentKeepaliveSecs: 0}})
	call(t, c, ipc.RemovePeer{Pubkey: keyB})
	call(t, c, ipc.RemovePeer{Pubkey: keyB}) // idempotent
	call(t, c, ipc.RegisterDNS{Name: "web.prod.overlay.local", IP: ipc.Addr{Addr: netip.MustParseAddr("10.200.0.5")}})
	call(t, c, ipc.RegisterDNS{Name: "web.prod.overlay.local", IP: ipc.Addr{Addr: netip.MustParseAddr("fd00:200::5")}})
	call(t, c, ipc.RegisterDNS{Name: "gone.prod.overlay.local", IP: ipc.Addr{Addr: netip.MustParseAddr("10.200.0.6")}})
	call(t, c, ipc.UnregisterDNS{Name: "gone.prod.overlay.local"})
	call(t, c, ipc.NatTick{})
	call(t, c, ipc.SetupServiceOverlay{Service: "tmp", Mode: ipc.ModeShared})
	call(t, c, ipc.TeardownServiceOverlay{Service: "tmp"})

	before := call(t, c, ipc.Status{}).(ipc.StatusResult)
	if *before.PublicKey != ownKey || before.PeerCount != 2 || before.ServiceCount != 2 || len(before.DedicatedServices) != 1 {
		t.Fatalf("status: %s", jsonOf(before))
	}
	stateBefore := n.mustCtl("state", "-o", "json")
	c.Close()

	n.kill9()
	n.start()
	c = n.client()
	defer c.Close()
	after := call(t, c, ipc.Status{}).(ipc.StatusResult)
	if jsonOf(after) != jsonOf(before) {
		t.Fatalf("status changed across kill -9:\nbefore %s\nafter  %s", jsonOf(before), jsonOf(after))
	}
	if got := n.mustCtl("state", "-o", "json"); got != stateBefore {
		t.Fatalf("overlayctl state changed across kill -9:\nbefore %s\nafter  %s", stateBefore, got)
	}
	// The same setups (with another instance_id, as the orchestrator sends
	// its PID there) answer the same.
	for i, r := range setups() {
		if g, ok := r.(ipc.SetupGlobalOverlay); ok {
			g.InstanceID = "9999"
			r = g
		}
		if got := jsonOf(call(t, c, r)); got != setupAnswers[i] {
			t.Errorf("setup %d answered %s after restart, first %s", i, got, setupAnswers[i])
		}
	}
	again := call(t, c, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: uint32(ctr1.Process.Pid)}, Service: "web", JoinGlobal: true}).(ipc.Attached)
	if again.IP != att1.IP {
		t.Errorf("repeated attach answered %v, first %v", again.IP, att1.IP)
	}
	live := n.state()
	fresh := call(t, c, ipc.AllocateIP{Service: "web", JoinGlobal: true}).(ipc.IPResult)
	if _, taken := live.IPAM.Owners[fresh.IP.Addr]; taken {
		t.Fatalf("allocate_ip after restart returned live address %v", fresh.IP)
	}
	if out := n.mustCtl("journal", "verify"); !strings.Contains(out, "OK") || !strings.Contains(out, "equals a replay") {
		t.Fatalf("online verify:\n%s", out)
	}
	call(t, c, ipc.Shutdown{})
	if err := n.wait(20 * time.Second); err != nil {
		t.Fatalf("shutdown op: exit %v\n%s", err, n.logs())
	}
	out := n.mustCtl("journal", "verify")
	if !strings.Contains(out, "OK") || !strings.Contains(out, "snapshot:   at") {
		t.Fatalf("offline verify:\n%s", out)
	}
	if ls := n.mustCtl("journal", "ls"); !strings.Contains(ls, "container_attached") || !strings.Contains(ls, "uid=") {
		t.Fatalf("journal ls:\n%s", ls)
	}
}

// Every rejected request names the field at fault.
func TestRejectedRequestsNameTheField(t *testing.T) {
	n := newNode(t)
	n.start()
	c := n.client()
	defer c.Close()
	pid := uint32(sleeper(t).Process.Pid)
	h := ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: pid}
	cases := []struct {
		req   ipc.Request
		field string
	}{
		{ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared}, "service"}, // before global
		{ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/33", WgPort: 51820}, "cluster_cidr"},
		{ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.5/16", WgPort: 51820}, "cluster_cidr"},
		{ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.9.0.0/24"), WgPort: 51820}, "slice_cidr"},
		{ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 0}, "wg_port"},
		{ipc.SetupGlobalOverlay{Deployment: "", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 1}, "deployment"},
	}
	for _, tc := range cases {
		if msg := callErr(t, c, tc.req); !strings.Contains(msg, tc.field+":") {
			t.Errorf("%s %s: message %q does not name %s", tc.req.Op(), jsonOf(tc.req), msg, tc.field)
		}
	}
	call(t, c, ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: strp("10.200.9.0/24"), WgPort: 51820})
	web := call(t, c, ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared}).(ipc.ServiceOverlay)
	cases = []struct {
		req   ipc.Request
		field string
	}{
		{ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.201.0.0/16", WgPort: 51820}, "cluster_cidr"},
		{ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", WgPort: 51821}, "wg_port"},
		{ipc.SetupServiceOverlay{Service: "bad name", Mode: ipc.ModeShared}, "service"},
		{ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeDedicated}, "mode"},
		{ipc.SetupServiceOverlay{Service: strings.Repeat("a", 64), Mode: ipc.ModeShared}, "service"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: "k", Endpoint: "192.0.2.1:1", AllowedIPs: "10.9.0.0/24"}}, "public_key"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "peer.example:51820", AllowedIPs: "10.9.0.0/24"}}, "endpoint"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.1:0", AllowedIPs: "10.9.0.0/24"}}, "endpoint"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.1:1", AllowedIPs: "10.9.0.0/24,bogus"}}, "allowed_ips"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.1:1", AllowedIPs: "10.200.9.7/32"}}, "allowed_ips"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.1:1", AllowedIPs: *web.Subnet}}, "allowed_ips"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.1:1", AllowedIPs: "10.9.0.0/24", PersistentKeepaliveSecs: 70000}}, "persistent_keepalive_secs"},
		{ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: keyA, Endpoint: "192.0.2.1:1", AllowedIPs: "10.9.0.0/24"}, Scope: &ipc.PeerScope{Service: "web"}}, "scope.service"},
		{ipc.AddAllowedIP{Pubkey: keyB, CIDR: "10.9.1.0/24"}, "pubkey"},
		{ipc.AddAllowedIP{Pubkey: keyB, CIDR: "nope"}, "cidr"},
		{ipc.ReleaseIP{IP: ipc.Addr{Addr: netip.MustParseAddr("10.200.9.1")}}, "ip"},
		{ipc.ReleaseIP{IP: ipc.Addr{Addr: netip.MustParseAddr("192.0.2.1")}}, "ip"},
		{ipc.RegisterDNS{Name: "bad_label-.example", IP: ipc.Addr{Addr: netip.MustParseAddr("10.0.0.1")}}, "name"},
		{ipc.RegisterDNS{Name: strings.Repeat("a.", 130), IP: ipc.Addr{Addr: netip.MustParseAddr("10.0.0.1")}}, "name"},
		{ipc.RegisterDNS{Name: "ok.example", IP: ipc.Addr{Addr: netip.MustParseAddr("0.0.0.0")}}, "ip"},
		{ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: 0}, Service: "web"}, "handle.pid"},
		{ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformLinuxPID, PID: 4194304}, Service: "web"}, "handle.pid"},
		{ipc.AttachContainer{Handle: h, Service: "never"}, "service"},
		{ipc.AttachContainer{Handle: h, Service: "web", DNSDomain: strp("bad domain")}, "dns_domain"},
		{ipc.SetLocalWgPubkey{Pubkey: "not-a-key"}, "pubkey"},
	}
	for _, tc := range cases {
		if msg := callErr(t, c, tc.req); !strings.Contains(msg, tc.field+":") {
			t.Errorf("%s %s: message %q does not name %s", tc.req.Op(), jsonOf(tc.req), msg, tc.field)
		}
	}
	// Nothing refused was journaled.
	st := n.state()
	if len(st.Attachments) != 0 || len(st.Peers) != 0 || len(st.DNS) != 0 || len(st.Services) != 1 || len(st.IPAM.Owners) != 2 {
		t.Fatalf("refused requests left state behind: %s", jsonOf(st))
	}
}

func TestSecondDaemonRefusesToStart(t *testing.T) {
	n := newNode(t)
	n.start()
	// Its own log: the first daemon's must not answer for it.
	second := &node{t: t, dataDir: n.dataDir, socket: n.socket, ns: n.ns, logPath: filepath.Join(t.TempDir(), "second.log")}
	if err := second.startNoWait(); err != nil {
		t.Fatal(err)
	}
	if err := second.wait(20 * time.Second); err == nil {
		t.Fatal("a second daemon on the same data dir started")
	}
	if l := second.logs(); !strings.Contains(l, "another") {
		t.Fatalf("no clear message:\n%s", l)
	}
	// Another data dir but the same socket: refused too.
	third := newNode(t, "--socket", n.socket)
	if err := third.startNoWait(); err != nil {
		t.Fatal(err)
	}
	if err := third.wait(20 * time.Second); err == nil {
		t.Fatal("a second daemon on the same socket started")
	}
	if l := third.logs(); !strings.Contains(l, "socket in use") {
		t.Fatalf("no clear message:\n%s", l)
	}
	// The first one still serves.
	c := n.client()
	defer c.Close()
	call(t, c, ipc.Status{})
}

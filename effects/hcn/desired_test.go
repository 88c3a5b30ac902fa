package hcn_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/hcn"
	"github.com/zlayer/overlayd/projections"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json")

var owner = effects.Owner{Journal: "0123456789ab", Home: "home1"}

// node is a Windows node's state built through Decide, as the daemon
// builds it: a global overlay (slice 10.200.7.0/24, NAT on), a shared
// service web and a dedicated service db.
type node struct {
	t  testing.TB
	st *projections.State
}

func newNode(t testing.TB) *node {
	n := &node{t: t, st: projections.New()}
	n.do(projections.SetNodeIdentity{PublicKey: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", Source: "generated"})
	n.do(projections.SetupGlobal{Deployment: "prod", InstanceID: "42", ClusterCIDR: "10.200.0.0/16", SliceCIDR: "10.200.7.0/24", Port: 51820, NATEnabled: true})
	n.do(projections.SetupService{Service: "web", Mode: "shared"})
	n.do(projections.SetupService{Service: "db", Mode: "dedicated", NewPublicKey: "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="})
	return n
}

func (n *node) do(cmd projections.Command) projections.Reply {
	n.t.Helper()
	cfg := projections.DefaultConfig()
	cfg.Platform = "windows"
	d, err := projections.Decide(n.st, cfg, cmd)
	if err != nil {
		n.t.Fatalf("%T: %v", cmd, err)
	}
	for _, ev := range d.Events {
		if err := n.st.Apply(ev); err != nil {
			n.t.Fatalf("apply %s: %v", ev.EventType(), err)
		}
		n.st.Seq++
	}
	return d.Reply
}

// attach attaches a windows container and returns its namespace GUID.
func (n *node) attach(id, service string, global bool, dnsServer, dnsDomain string) string {
	n.t.Helper()
	c := projections.Attach{Handle: projections.Handle{Platform: projections.PlatformWindows, ContainerID: id}, Service: service, JoinGlobal: global, DNSDomain: dnsDomain}
	if dnsServer != "" {
		c.DNSServer = netip.MustParseAddr(dnsServer)
	}
	return n.do(c).(projections.ReplyAttached).NamespaceGUID
}

func (n *node) detach(id string) {
	n.do(projections.Detach{Handle: projections.Handle{Platform: projections.PlatformWindows, ContainerID: id}})
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (run with -update after checking the change):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func network(t *testing.T, objs *hcn.Objects, key string) hcn.Network {
	t.Helper()
	for _, n := range objs.Networks {
		if n.Key == key {
			return n.Doc
		}
	}
	t.Fatalf("no network for %s in %+v", key, objs.Networks)
	return hcn.Network{}
}

// attachment is what a golden file holds for one attachment: its
// namespace document, then each endpoint's document with the name of the
// network it is created on.
type attachment struct {
	Namespace hcn.Namespace
	Endpoints []endpointDoc
}

type endpointDoc struct {
	Leg      hcn.Leg
	Network  string
	Document hcn.Endpoint
}

func attachmentOf(t *testing.T, objs *hcn.Objects, guid string) attachment {
	t.Helper()
	var out attachment
	for _, ns := range objs.Namespaces {
		if ns.Doc.Id == guid {
			out.Namespace = ns.Doc
		}
	}
	for _, e := range objs.Endpoints {
		if e.Namespace == guid {
			out.Endpoints = append(out.Endpoints, endpointDoc{Leg: e.Leg, Network: e.Network, Document: e.Doc})
		}
	}
	if out.Namespace.Id == "" || len(out.Endpoints) == 0 {
		t.Fatalf("no objects for namespace %s", guid)
	}
	return out
}

// The documents, against golden files: the overlay network (Internal, and
// Transparent on an uplink adapter), a shared and a dedicated service's
// networks, an attach without and with join_global, and one with DNS
// settings. Each document is what hcsshim sends (api_windows_test.go
// checks that these types marshal as hcsshim's do).
func TestDesiredGolden(t *testing.T) {
	n := newNode(t)
	plain := n.attach("ctr-plain", "web", false, "", "")
	joined := n.attach("ctr-joined", "db", true, "", "")
	dns := n.attach("ctr-dns", "web", false, "10.200.7.1", "overlay.")
	objs := hcn.Desired(n.st, hcn.Config{}, owner)
	golden(t, "overlay", network(t, objs, "global"))
	golden(t, "overlay_uplink", network(t, hcn.Desired(n.st, hcn.Config{UplinkAdapter: "Ethernet 2"}, owner), "global"))
	golden(t, "service_shared", network(t, objs, "service/web"))
	golden(t, "service_dedicated", network(t, objs, "service/db"))
	golden(t, "attach", attachmentOf(t, objs, plain))
	golden(t, "attach_join_global", attachmentOf(t, objs, joined))
	golden(t, "attach_dns", attachmentOf(t, objs, dns))
	if len(objs.Networks) != 3 || len(objs.Namespaces) != 3 || len(objs.Endpoints) != 4 {
		t.Fatalf("%d networks, %d namespaces, %d endpoints; want 3, 3, 4", len(objs.Networks), len(objs.Namespaces), len(objs.Endpoints))
	}
}

// Names carry the owner's journal; Linux and guest attachments make no
// HCN objects; without NAT no endpoint has an OutBoundNAT policy; a
// teardown of everything wants nothing.
func TestDesiredScope(t *testing.T) {
	n := newNode(t)
	n.attach("ctr-1", "web", true, "", "")
	for _, o := range hcn.Desired(n.st, hcn.Config{}, owner).Networks {
		if !strings.HasPrefix(o.Doc.Name, "zlayer-") || !strings.HasSuffix(o.Doc.Name, ".0123456789ab") {
			t.Errorf("network name %q carries no owner mark", o.Doc.Name)
		}
	}
	n.st.Attachments["linux_pid:7"] = &projections.Attachment{Handle: projections.Handle{Platform: projections.PlatformLinuxPID, PID: 7}, Service: "web"}
	if got := hcn.Desired(n.st, hcn.Config{}, owner); len(got.Endpoints) != 2 || len(got.Namespaces) != 1 {
		t.Fatalf("a linux attachment made HCN objects: %+v", got)
	}
	delete(n.st.Attachments, "linux_pid:7")
	n.st.Global.NAT = false
	for _, e := range hcn.Desired(n.st, hcn.Config{}, owner).Endpoints {
		for _, p := range e.Doc.Policies {
			if p.Type == hcn.PolicyOutBoundNAT {
				t.Errorf("endpoint %s has OutBoundNAT with NAT off", e.Doc.Name)
			}
		}
	}
	n.detach("ctr-1")
	n.do(projections.TeardownService{Service: "web"})
	n.do(projections.TeardownService{Service: "db"})
	n.do(projections.TeardownGlobal{})
	if got := hcn.Desired(n.st, hcn.Config{}, owner); len(got.Networks)+len(got.Endpoints)+len(got.Namespaces) != 0 {
		t.Fatalf("an empty state wants %+v", got)
	}
}

package hcn_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/effects/hcn"
	"github.com/zlayer/overlayd/effects/hcn/hcnfake"
	"github.com/zlayer/overlayd/projections"
)

// rig is a node's state, a fake HCN and a reconciler over both.
type rig struct {
	*node
	t   *testing.T
	api *hcnfake.Fake
	r   *hcn.Reconciler
}

func (n *node) Read(fn func(st *projections.State)) { fn(n.st) }

func newRig(t *testing.T) *rig {
	api := hcnfake.New()
	return &rig{node: newNode(t), t: t, api: api, r: hcn.New(api, testLog(t), owner, hcn.Config{})}
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// restart is a new reconciler (a daemon started again) over the same HCN.
func (g *rig) restart() { g.r = hcn.New(g.api, testLog(g.t), owner, hcn.Config{}) }

func (g *rig) full() error { return g.r.Reconcile(context.Background(), g.node, nil, true) }
func (g *rig) change(keys ...string) error {
	return g.r.Reconcile(context.Background(), g.node, keys, false)
}

func (g *rig) must(err error) {
	g.t.Helper()
	if err != nil {
		g.t.Fatal(err)
	}
}

// converged checks that a full pass now changes nothing (adoption).
func (g *rig) converged() {
	g.t.Helper()
	g.api.Mutations()
	g.must(g.full())
	if m := g.api.Mutations(); len(m) != 0 {
		g.t.Fatalf("a second pass changed %q", m)
	}
}

func same(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s:\ngot:\n%s\nwant:\n%s", what, got, want)
	}
}

// wired is the fake HCN after TestFakeAttach: the three networks, a
// container of web (one endpoint) and one of db joining the global
// overlay (two endpoints), each container's endpoints in its namespace.
const wired = `network zlayer-overlay.0123456789ab Internal 10.200.7.0/24 0.0.0.0/0 via 10.200.7.1
  endpoint zlayer-ep-GUIDB-g.0123456789ab 10.200.7.2/24 in GUIDB
network zlayer-svc-db.0123456789ab Internal 10.200.162.0/28 0.0.0.0/0 via 10.200.162.1
  endpoint zlayer-ep-GUIDB-s.0123456789ab 10.200.162.2/28 in GUIDB
network zlayer-svc-web.0123456789ab Internal 10.200.156.224/28 0.0.0.0/0 via 10.200.156.225
  endpoint zlayer-ep-GUIDA-s.0123456789ab 10.200.156.226/28 in GUIDA
`

func (g *rig) wiredWant(a, b string) string {
	w := strings.ReplaceAll(strings.ReplaceAll(wired, "GUIDA", a), "GUIDB", b)
	nss := []string{"namespace " + a + " zlayer-ep-" + a + "-s.0123456789ab\n",
		"namespace " + b + " zlayer-ep-" + b + "-g.0123456789ab zlayer-ep-" + b + "-s.0123456789ab\n"}
	slices.Sort(nss)
	return w + strings.Join(nss, "")
}

// twoAttached is a rig with wired converged, and the two GUIDs.
func twoAttached(t *testing.T) (*rig, string, string) {
	g := newRig(t)
	g.must(g.full())
	a := g.attach("ctr-a", "web", false, "", "")
	b := g.attach("ctr-b", "db", true, "", "")
	g.must(g.change("attachment/windows_container:ctr-a", "attachment/windows_container:ctr-b"))
	return g, a, b
}

// An attach makes its endpoints, then its namespace under the journaled
// GUID, and puts the endpoints into it; a second pass (and a restarted
// daemon's boot pass) adopts everything and changes nothing.
func TestFakeAttach(t *testing.T) {
	g, a, b := twoAttached(t)
	same(t, "HCN after the attaches", g.api.Render(), g.wiredWant(a, b))
	g.converged()
	g.restart()
	g.converged()
}

// A detach deletes the container's namespace and its endpoints (the
// reference leaks both) and nothing else; the networks stay.
func TestFakeDetach(t *testing.T) {
	g, a, b := twoAttached(t)
	g.api.Mutations()
	g.detach("ctr-b")
	g.must(g.change("attachment/windows_container:ctr-b"))
	got := g.api.Mutations()
	want := []string{"DeleteNamespace " + b, "DeleteEndpoint zlayer-ep-" + b + "-g.0123456789ab", "DeleteEndpoint zlayer-ep-" + b + "-s.0123456789ab"}
	if !slices.Equal(got, want) {
		t.Fatalf("the detach did %q, want %q", got, want)
	}
	if r := g.api.Render(); strings.Contains(r, b) || !strings.Contains(r, a) {
		t.Fatalf("after the detach:\n%s", r)
	}
	// By the namespace GUID, as the reference client sends it.
	g.detach(a)
	g.must(g.change("attachment/windows_container:ctr-a"))
	if _, eps, nss := g.api.Count(); eps != 0 || nss != 0 {
		t.Fatalf("after detaching by GUID: %d endpoints, %d namespaces:\n%s", eps, nss, g.api.Render())
	}
}

// Teardown (services, then the global overlay) leaves nothing in HCN.
func TestFakeTeardownLeavesNothing(t *testing.T) {
	g, _, _ := twoAttached(t)
	g.do(projections.TeardownService{Service: "web"})
	g.do(projections.TeardownService{Service: "db"})
	g.do(projections.TeardownGlobal{})
	g.must(g.change("service/web", "service/db", "global"))
	if nets, eps, nss := g.api.Count(); nets+eps+nss != 0 {
		t.Fatalf("teardown left:\n%s", g.api.Render())
	}
}

// A crash between creating and recording: objects marked as this owner's
// that the state does not have (the decision that made them was never
// made durable; the daemon rolled back) are deleted by the boot pass of
// the next start, namespace included, though nothing in this process made
// it: the endpoint's name names it.
func TestFakeCrashBetweenCreateAndRecord(t *testing.T) {
	g, a, b := twoAttached(t)
	delete(g.st.Attachments, "windows_container:ctr-b") // the state as it was before the attach
	g.restart()
	g.api.Mutations()
	g.must(g.full())
	got := g.api.Mutations()
	slices.Sort(got)
	want := []string{"DeleteEndpoint zlayer-ep-" + b + "-g.0123456789ab", "DeleteEndpoint zlayer-ep-" + b + "-s.0123456789ab", "DeleteNamespace " + b}
	if !slices.Equal(got, want) {
		t.Fatalf("the boot pass did %q, want %q", got, want)
	}
	if r := g.api.Render(); !strings.Contains(r, a) {
		t.Fatalf("the recorded attachment went too:\n%s", r)
	}
}

type crash struct{}

// crashAt runs fn, crashing (a panic: no deferred clean-up of the
// reconciler's runs on it) when the failpoint name is hit.
func crashAt(t *testing.T, name string, fn func() error) {
	t.Helper()
	effects.Failpoint = func(n string) {
		if n == name {
			panic(crash{})
		}
	}
	defer func() {
		effects.Failpoint = nil
		if r := recover(); r != nil {
			if _, ok := r.(crash); !ok {
				panic(r)
			}
			return
		}
		t.Fatalf("failpoint %s was not hit", name)
	}()
	_ = fn()
}

// A crash inside an attach (after an endpoint is made, after the
// namespace is made but before the endpoints are put into it): the boot
// pass of the next start finishes the attach when it is recorded, and
// removes what was made when it is not.
func TestFakeCrashInsideAttach(t *testing.T) {
	for _, fp := range []string{"hcn/after-endpoint-create", "hcn/after-namespace-create"} {
		for _, recorded := range []bool{true, false} {
			name := fp + "/unrecorded"
			if recorded {
				name = fp + "/recorded"
			}
			t.Run(name, func(t *testing.T) {
				g := newRig(t)
				g.must(g.full())
				a := g.attach("ctr-a", "db", true, "", "")
				crashAt(t, fp, func() error { return g.change("attachment/windows_container:ctr-a") })
				if _, eps, _ := g.api.Count(); eps == 0 {
					t.Fatalf("the crash left nothing to clean up")
				}
				if !recorded {
					delete(g.st.Attachments, "windows_container:ctr-a")
				}
				g.restart()
				g.must(g.full())
				_, eps, nss := g.api.Count()
				if recorded {
					r := g.api.Render()
					if eps != 2 || nss != 1 || !strings.Contains(r, "namespace "+a+" zlayer-ep-"+a+"-g.0123456789ab zlayer-ep-"+a+"-s.0123456789ab\n") {
						t.Fatalf("the boot pass did not finish the attach:\n%s", r)
					}
					g.converged()
				} else if eps != 0 || nss != 0 {
					t.Fatalf("the boot pass left:\n%s", g.api.Render())
				}
			})
		}
	}
}

// Drift repair: an endpoint deleted by hand is made again and put back in
// its namespace; a namespace deleted by hand is made again under its GUID
// with its endpoints; a network deleted by hand is made again and its
// attachments' endpoints with it.
func TestFakeDriftRepair(t *testing.T) {
	g, a, b := twoAttached(t)
	want := g.wiredWant(a, b)
	for _, name := range []string{
		"zlayer-ep-" + b + "-s.0123456789ab",
		"zlayer-ep-" + b + "-g.0123456789ab",
		a, // a namespace
	} {
		if g.api.DeleteByName(name) != 1 {
			t.Fatalf("nothing named %s", name)
		}
		g.must(g.full())
		same(t, "after deleting "+name+" by hand and a pass", g.api.Render(), want)
	}
	// A network deleted with its endpoints.
	g.api.DeleteByName("zlayer-ep-" + a + "-s.0123456789ab")
	g.api.DeleteByName("zlayer-svc-web.0123456789ab")
	g.must(g.full())
	if r := g.api.Render(); !strings.Contains(r, "network zlayer-svc-web.0123456789ab") || !strings.Contains(r, "namespace "+a+" zlayer-ep-"+a+"-s") {
		t.Fatalf("the network or its endpoint was not made again:\n%s", r)
	}
	g.converged()
}

// A failed attach is rolled back: whatever step fails (each endpoint, the
// namespace, putting an endpoint into it), what the pass made for that
// attach is deleted again, the error names the attachment's key and the
// step, the other objects stay, and the next pass makes it all.
func TestFakeRollback(t *testing.T) {
	boom := errors.New("injected")
	for _, c := range []struct {
		op   string
		skip int // calls of op that succeed first
		step string
	}{
		{"CreateEndpoint", 0, "endpoint"},
		{"CreateEndpoint", 1, "endpoint"}, // the second leg
		{"CreateNamespace", 0, "namespace"},
		{"AddNamespaceEndpoint", 0, "namespace-endpoint"},
		{"AddNamespaceEndpoint", 1, "namespace-endpoint"},
	} {
		t.Run(c.op+"-"+string(rune('0'+c.skip)), func(t *testing.T) {
			g := newRig(t)
			g.must(g.full())
			other := g.attach("ctr-other", "web", false, "", "")
			g.must(g.change("attachment/windows_container:ctr-other"))
			before := g.api.Render()
			a := g.attach("ctr-a", "db", true, "", "")
			g.api.Mutations()
			if c.skip > 0 {
				g.api.FailNext(c.op, nil)
			}
			g.api.FailNext(c.op, boom)
			err := g.change("attachment/windows_container:ctr-a")
			var ke effects.KeyErrors
			var se *hcn.StepError
			if !errors.As(err, &ke) || !errors.As(ke["attachment/windows_container:ctr-a"], &se) || se.Step != c.step || !errors.Is(se, boom) {
				t.Fatalf("error %v: want a KeyErrors with a StepError %q for the attachment", err, c.step)
			}
			if r := g.api.Render(); r != before {
				t.Fatalf("the failed attach left objects behind (mutations %q):\n%s\nbefore:\n%s", g.api.Mutations(), r, before)
			}
			if !strings.Contains(g.api.Render(), other) {
				t.Fatal("the other attachment was touched")
			}
			g.must(g.change("attachment/windows_container:ctr-a"))
			if r := g.api.Render(); !strings.Contains(r, "namespace "+a+" zlayer-ep-"+a+"-g.0123456789ab zlayer-ep-"+a+"-s.0123456789ab\n") {
				t.Fatalf("the retry did not attach:\n%s", r)
			}
		})
	}
}

// An attach whose service network is gone and cannot be made again fails
// at the "network" step with the cause, makes nothing, and the service's
// key carries the network's error too; the next pass makes both.
func TestFakeRollbackNetworkStep(t *testing.T) {
	g := newRig(t)
	g.must(g.full())
	g.api.DeleteByName("zlayer-svc-web.0123456789ab")
	before := g.api.Render()
	a := g.attach("ctr-a", "web", false, "", "")
	boom := errors.New("injected")
	g.api.FailNext("CreateNetwork", boom)
	err := g.change("attachment/windows_container:ctr-a")
	var ke effects.KeyErrors
	var se *hcn.StepError
	if !errors.As(err, &ke) || !errors.As(ke["attachment/windows_container:ctr-a"], &se) || se.Step != "network" || !errors.Is(se, boom) || !errors.Is(ke["service/web"], boom) {
		t.Fatalf("error %v: want the network's failure under the attachment (step network) and the service", err)
	}
	if r := g.api.Render(); r != before {
		t.Fatalf("the failed attach made:\n%s", r)
	}
	g.must(g.change("attachment/windows_container:ctr-a"))
	if r := g.api.Render(); !strings.Contains(r, "namespace "+a+" zlayer-ep-"+a+"-s.0123456789ab\n") {
		t.Fatalf("the retry did not attach:\n%s", r)
	}
}

// Objects of other owners are never touched, whatever the state: another
// journal's networks and endpoints, the reference daemon's (no owner in
// the name), a stranger's, and a namespace nothing of ours names.
func TestFakeForeignUntouched(t *testing.T) {
	g := newRig(t)
	api := g.api
	ipam := []hcn.Ipam{{Type: "Static", Subnets: []hcn.Subnet{{IpAddressPrefix: "10.99.0.0/24", Routes: []hcn.Route{{NextHop: "10.99.0.1", DestinationPrefix: "0.0.0.0/0"}}}}}}
	var foreign []string
	for _, name := range []string{"zlayer-overlay.bbbbbbbbbbbb", "zlayer-overlay", "zlayer-overlay-svc-web", "nat", "zlayer-svc-web.bbbbbbbbbbbb"} {
		n, err := api.CreateNetwork(&hcn.Network{Name: name, Type: "Internal", Ipams: ipam})
		g.must(err)
		foreign = append(foreign, "network "+name)
		ep := "zlayer-ep-11111111-2222-5333-8444-555555555555-s.bbbbbbbbbbbb"
		if name != "zlayer-overlay.bbbbbbbbbbbb" {
			ep = "ep-of-" + name
		}
		_, err = api.CreateEndpoint(n.Id, &hcn.Endpoint{Name: ep, IpConfigurations: []hcn.IpConfig{{IpAddress: "10.99.0.9", PrefixLength: 24}}})
		g.must(err)
		foreign = append(foreign, "endpoint "+ep)
	}
	_, err := api.CreateNamespace(&hcn.Namespace{Id: "11111111-2222-5333-8444-555555555555", Type: "Host"})
	g.must(err)
	_, err = api.CreateNamespace(&hcn.Namespace{Id: "99999999-2222-5333-8444-555555555555", Type: "Host"})
	g.must(err)
	foreign = append(foreign, "namespace 11111111-2222-5333-8444-555555555555", "namespace 99999999-2222-5333-8444-555555555555")
	g.attach("ctr-a", "web", true, "", "")
	g.must(g.full())
	g.detach("ctr-a")
	g.do(projections.TeardownService{Service: "web"})
	g.do(projections.TeardownService{Service: "db"})
	g.do(projections.TeardownGlobal{})
	g.must(g.full())
	r := api.Render()
	for _, f := range foreign {
		if !strings.Contains(r, f) {
			t.Errorf("%s was removed", f)
		}
	}
	if strings.Contains(r, "0123456789ab") {
		t.Errorf("our own objects remain:\n%s", r)
	}
}

// A listing that fails changes nothing (nothing is taken for absent).
func TestFakeListFailureChangesNothing(t *testing.T) {
	g, _, _ := twoAttached(t)
	before := g.api.Render()
	g.do(projections.TeardownService{Service: "web"})
	for _, op := range []string{"ListNetworks", "ListEndpoints", "ListNamespaces"} {
		g.api.FailNext(op, errors.New("injected"))
		if err := g.full(); err == nil {
			t.Fatalf("%s failed and the pass did not say so", op)
		}
		if g.api.Render() != before {
			t.Fatalf("a pass with %s failing changed HCN", op)
		}
	}
}

// Relevant: the global overlay, services and windows_container
// attachments only.
func TestRelevant(t *testing.T) {
	for key, want := range map[string]bool{
		"global": true, "service/web": true, "attachment/windows_container:ctr-1": true,
		"attachment/linux_pid:4": false, "attachment/guest_managed:vm": false, "peer/global/k": false, "dns/a": false, "node": false,
	} {
		if hcn.Relevant(key) != want {
			t.Errorf("Relevant(%q) = %v", key, !want)
		}
	}
}

// Package hcnfake is an in-memory Host Compute Network service: an
// hcn.API for tests on any platform, with failure injection and a text
// rendering of what exists.
//
// It keeps what HCN keeps as far as the reconciler can tell: GUIDs it
// gives to networks and endpoints (namespaces are created under the GUID
// asked for), names that need not be unique, an endpoint's address inside
// one of its network's subnets and not taken on it, an endpoint in at most
// one namespace, a network that refuses deletion while endpoints are on
// it, a deleted namespace letting its endpoints go. It also refuses what
// hcsshim refuses before calling HCN (a subnet without a default gateway,
// an endpoint created with a namespace). What it cannot tell — whether
// HNS accepts a policy, routes a packet, or honours a GUID — no test
// through it shows.
package hcnfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/zlayer/overlayd/effects/hcn"
)

// Fake is the in-memory HCN. Safe for concurrent use.
type Fake struct {
	mu    sync.Mutex
	nets  map[string]*hcn.Network
	eps   map[string]*hcn.Endpoint
	nss   map[string]*hcn.Namespace
	next  int
	fails map[string][]error
	muts  []string
}

var _ hcn.API = (*Fake)(nil)

// New returns an empty HCN.
func New() *Fake {
	return &Fake{nets: map[string]*hcn.Network{}, eps: map[string]*hcn.Endpoint{}, nss: map[string]*hcn.Namespace{}, fails: map[string][]error{}}
}

// FailNext makes the next call of op (a method name of hcn.API, e.g.
// "CreateEndpoint") return err without doing anything. Calls queue up.
func (f *Fake) FailNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails[op] = append(f.fails[op], err)
}

func (f *Fake) fail(op string) error {
	q := f.fails[op]
	if len(q) == 0 {
		return nil
	}
	f.fails[op] = q[1:]
	return q[0]
}

// Mutations returns the changing calls made since the last call, as
// "<op> <name or id>", and forgets them.
func (f *Fake) Mutations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.muts
	f.muts = nil
	return m
}

func (f *Fake) id(kind int) string {
	f.next++
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", kind, f.next)
}

func clone[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var c T
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}

func notFound(what, id string) error { return fmt.Errorf("%s %s: %w", what, id, hcn.ErrNotFound) }

func (f *Fake) ListNetworks() ([]hcn.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("ListNetworks"); err != nil {
		return nil, err
	}
	var out []hcn.Network
	for _, id := range sortedKeys(f.nets) {
		out = append(out, *clone(f.nets[id]))
	}
	return out, nil
}

func (f *Fake) CreateNetwork(doc *hcn.Network) (*hcn.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("CreateNetwork"); err != nil {
		return nil, err
	}
	if doc.Type == "" || doc.Name == "" {
		return nil, errors.New("hcnfake: a network needs a name and a type")
	}
	for _, ipam := range doc.Ipams {
		for _, s := range ipam.Subnets {
			if _, err := netip.ParsePrefix(s.IpAddressPrefix); err != nil {
				return nil, fmt.Errorf("hcnfake: subnet %q: %w", s.IpAddressPrefix, err)
			}
			def := false
			for _, r := range s.Routes {
				if r.NextHop == "" {
					return nil, errors.New("network create error, subnet has address prefix but no gateway specified")
				}
				def = def || r.DestinationPrefix == "0.0.0.0/0" || r.DestinationPrefix == "::/0"
			}
			if !def {
				return nil, errors.New("network create error, no default gateway")
			}
		}
	}
	n := clone(doc)
	n.Id = f.id(1)
	f.nets[n.Id] = n
	f.muts = append(f.muts, "CreateNetwork "+n.Name)
	return clone(n), nil
}

func (f *Fake) DeleteNetwork(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("DeleteNetwork"); err != nil {
		return err
	}
	n := f.nets[id]
	if n == nil {
		return notFound("network", id)
	}
	for _, e := range f.eps {
		if e.HostComputeNetwork == id {
			return fmt.Errorf("hcnfake: network %s has endpoint %s", n.Name, e.Name)
		}
	}
	delete(f.nets, id)
	f.muts = append(f.muts, "DeleteNetwork "+n.Name)
	return nil
}

func (f *Fake) ListEndpoints() ([]hcn.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("ListEndpoints"); err != nil {
		return nil, err
	}
	var out []hcn.Endpoint
	for _, id := range sortedKeys(f.eps) {
		out = append(out, *clone(f.eps[id]))
	}
	return out, nil
}

func (f *Fake) CreateEndpoint(networkID string, doc *hcn.Endpoint) (*hcn.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("CreateEndpoint"); err != nil {
		return nil, err
	}
	if doc.HostComputeNamespace != "" {
		return nil, errors.New("endpoint create error, endpoint json HostComputeNamespace is read only and should not be set")
	}
	n := f.nets[networkID]
	if n == nil {
		return nil, notFound("network", networkID)
	}
	for _, ipc := range doc.IpConfigurations {
		a, err := netip.ParseAddr(ipc.IpAddress)
		if err != nil {
			return nil, fmt.Errorf("hcnfake: address %q: %w", ipc.IpAddress, err)
		}
		in := false
		for _, ipam := range n.Ipams {
			for _, s := range ipam.Subnets {
				p, _ := netip.ParsePrefix(s.IpAddressPrefix)
				in = in || p.Contains(a)
			}
		}
		if !in {
			return nil, fmt.Errorf("hcnfake: %s is in no subnet of network %s", a, n.Name)
		}
		for _, e := range f.eps {
			if e.HostComputeNetwork == networkID && slices.ContainsFunc(e.IpConfigurations, func(c hcn.IpConfig) bool { return c.IpAddress == ipc.IpAddress }) {
				return nil, fmt.Errorf("hcnfake: %s is taken on network %s by endpoint %s", a, n.Name, e.Name)
			}
		}
	}
	e := clone(doc)
	e.Id = f.id(2)
	e.HostComputeNetwork = networkID
	f.eps[e.Id] = e
	f.muts = append(f.muts, "CreateEndpoint "+e.Name)
	return clone(e), nil
}

func (f *Fake) DeleteEndpoint(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("DeleteEndpoint"); err != nil {
		return err
	}
	return f.deleteEndpoint(id)
}

func (f *Fake) deleteEndpoint(id string) error {
	e := f.eps[id]
	if e == nil {
		return notFound("endpoint", id)
	}
	if ns := f.nss[e.HostComputeNamespace]; ns != nil {
		ns.Resources = slices.DeleteFunc(ns.Resources, func(r hcn.NamespaceResource) bool {
			return r.Type == "Endpoint" && resourceID(r) == id
		})
	}
	delete(f.eps, id)
	f.muts = append(f.muts, "DeleteEndpoint "+e.Name)
	return nil
}

func resourceID(r hcn.NamespaceResource) string {
	var d hcn.NamespaceResourceEndpoint
	_ = json.Unmarshal(r.Data, &d)
	return d.Id
}

func (f *Fake) ListNamespaces() ([]hcn.Namespace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("ListNamespaces"); err != nil {
		return nil, err
	}
	var out []hcn.Namespace
	for _, id := range sortedKeys(f.nss) {
		out = append(out, *clone(f.nss[id]))
	}
	return out, nil
}

func (f *Fake) CreateNamespace(doc *hcn.Namespace) (*hcn.Namespace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("CreateNamespace"); err != nil {
		return nil, err
	}
	ns := clone(doc)
	if ns.Id == "" {
		ns.Id = f.id(3)
	}
	if f.nss[ns.Id] != nil {
		return nil, fmt.Errorf("hcnfake: namespace %s already exists", ns.Id)
	}
	ns.Resources = nil
	ns.NamespaceId = uint32(f.next + 100)
	f.nss[ns.Id] = ns
	f.muts = append(f.muts, "CreateNamespace "+ns.Id)
	return clone(ns), nil
}

func (f *Fake) DeleteNamespace(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("DeleteNamespace"); err != nil {
		return err
	}
	if f.nss[id] == nil {
		return notFound("namespace", id)
	}
	for _, e := range f.eps {
		if e.HostComputeNamespace == id {
			e.HostComputeNamespace = ""
		}
	}
	delete(f.nss, id)
	f.muts = append(f.muts, "DeleteNamespace "+id)
	return nil
}

func (f *Fake) AddNamespaceEndpoint(namespaceID, endpointID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("AddNamespaceEndpoint"); err != nil {
		return err
	}
	ns, e := f.nss[namespaceID], f.eps[endpointID]
	switch {
	case ns == nil:
		return notFound("namespace", namespaceID)
	case e == nil:
		return notFound("endpoint", endpointID)
	case e.HostComputeNamespace == namespaceID:
		return nil
	case e.HostComputeNamespace != "":
		return fmt.Errorf("hcnfake: endpoint %s is in namespace %s", e.Name, e.HostComputeNamespace)
	}
	data, _ := json.Marshal(hcn.NamespaceResourceEndpoint{Id: endpointID})
	ns.Resources = append(ns.Resources, hcn.NamespaceResource{Type: "Endpoint", Data: data})
	e.HostComputeNamespace = namespaceID
	f.muts = append(f.muts, "AddNamespaceEndpoint "+namespaceID+" "+e.Name)
	return nil
}

// DeleteByName deletes, as a person would by hand, the endpoints or the
// networks named name (namespaces: by GUID), and says how many went.
func (f *Fake) DeleteByName(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for id, e := range f.eps {
		if e.Name == name {
			_ = f.deleteEndpoint(id)
			n++
		}
	}
	for id, nw := range f.nets {
		if nw.Name == name {
			delete(f.nets, id)
			n++
		}
	}
	if f.nss[name] != nil {
		for _, e := range f.eps {
			if e.HostComputeNamespace == name {
				e.HostComputeNamespace = ""
			}
		}
		delete(f.nss, name)
		n++
	}
	f.muts = nil
	return n
}

// Render lists what exists, one object a line, sorted: networks (name,
// type, subnets with their gateway, adapter), each with its endpoints
// (name, addresses, namespace), then namespaces (GUID, endpoint names).
func (f *Fake) Render() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	nets := sortedBy(f.nets, func(n *hcn.Network) string { return n.Name + " " + n.Id })
	for _, n := range nets {
		fmt.Fprintf(&b, "network %s %s", n.Name, n.Type)
		for _, ipam := range n.Ipams {
			for _, s := range ipam.Subnets {
				fmt.Fprintf(&b, " %s", s.IpAddressPrefix)
				for _, r := range s.Routes {
					fmt.Fprintf(&b, " %s via %s", r.DestinationPrefix, r.NextHop)
				}
			}
		}
		for _, p := range n.Policies {
			fmt.Fprintf(&b, " %s%s", p.Type, p.Settings)
		}
		b.WriteString("\n")
		eps := sortedBy(f.eps, func(e *hcn.Endpoint) string { return e.Name + " " + e.Id })
		for _, e := range eps {
			if e.HostComputeNetwork != n.Id {
				continue
			}
			fmt.Fprintf(&b, "  endpoint %s", e.Name)
			for _, c := range e.IpConfigurations {
				fmt.Fprintf(&b, " %s/%d", c.IpAddress, c.PrefixLength)
			}
			if e.HostComputeNamespace != "" {
				fmt.Fprintf(&b, " in %s", e.HostComputeNamespace)
			}
			b.WriteString("\n")
		}
	}
	for _, id := range sortedKeys(f.nss) {
		fmt.Fprintf(&b, "namespace %s", id)
		var names []string
		for _, r := range f.nss[id].Resources {
			if e := f.eps[resourceID(r)]; e != nil {
				names = append(names, e.Name)
			}
		}
		sort.Strings(names)
		for _, nm := range names {
			b.WriteString(" " + nm)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Count is the number of networks, endpoints and namespaces.
func (f *Fake) Count() (nets, eps, nss int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.nets), len(f.eps), len(f.nss)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedBy[V any](m map[string]*V, key func(*V) string) []*V {
	out := make([]*V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	return out
}

package hcn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/projections"
)

// Reconciler keeps the HCN networks, endpoints and namespaces equal to the
// projected state (doc.go).
type Reconciler struct {
	api   API
	log   *slog.Logger
	owner effects.Owner
	cfg   Config
	marks marks

	mu sync.Mutex // one pass at a time (the runner already serialises)
	// made holds the namespaces this process created, by GUID, until they
	// are deleted: a namespace has no name to carry a mark, so one whose
	// endpoints are gone is known as ours from here (and, after a
	// restart, from the endpoints' names: see removeStrays).
	made map[string]bool
}

var _ effects.Reconciler = (*Reconciler)(nil)

// New returns the reconciler over api. owner is whose marks it writes and
// the only owner whose objects it adopts, repairs or deletes; cfg holds
// the node's choices (the uplink adapter).
func New(api API, log *slog.Logger, owner effects.Owner, cfg Config) *Reconciler {
	return &Reconciler{api: api, log: log, owner: owner, cfg: cfg, marks: newMarks(owner), made: map[string]bool{}}
}

func (r *Reconciler) Name() string { return "hcn" }

// Relevant reports whether a change key concerns HCN objects: the global
// overlay (the overlay network, NAT, the cluster), services (their
// networks) and windows_container attachments.
func (r *Reconciler) Relevant(key string) bool { return Relevant(key) }

// Relevant is Reconciler.Relevant.
func Relevant(key string) bool {
	return key == "global" || strings.HasPrefix(key, "service/") ||
		strings.HasPrefix(key, "attachment/"+projections.PlatformWindows+":")
}

// host is one listing of what HCN has.
type host struct {
	nets []Network
	eps  []Endpoint
	nss  []Namespace
}

func (r *Reconciler) list() (*host, error) {
	var h host
	var err error
	if h.nets, err = r.api.ListNetworks(); err != nil {
		return nil, fmt.Errorf("hcn: list networks: %w", err)
	}
	if h.eps, err = r.api.ListEndpoints(); err != nil {
		return nil, fmt.Errorf("hcn: list endpoints: %w", err)
	}
	if h.nss, err = r.api.ListNamespaces(); err != nil {
		return nil, fmt.Errorf("hcn: list namespaces: %w", err)
	}
	return &h, nil
}

// Reconcile converges the objects named by changed (everything when all,
// or when changed names the global overlay), then deletes this owner's
// objects that the state does not want. It lists what HCN has first: a
// listing that fails changes nothing. Failures of single objects come back
// as effects.KeyErrors under their change keys ("global", "service/<name>",
// "attachment/<handle>"); an attachment's error is a *StepError naming
// the step.
func (r *Reconciler) Reconcile(ctx context.Context, view effects.View, changed []string, all bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var want *Objects
	view.Read(func(st *projections.State) { want = Desired(st, r.cfg, r.owner) })
	h, err := r.list()
	if err != nil {
		return err
	}
	scope := map[string]bool{}
	for _, k := range changed {
		scope[k] = true
		if k == "global" {
			all = true // NAT, the cluster and the slice are in every document
		}
	}
	in := func(keys ...string) bool {
		if all {
			return true
		}
		for _, k := range keys {
			if scope[k] {
				return true
			}
		}
		return false
	}
	keyErrs := effects.KeyErrors{}
	// Networks first: endpoints need their GUIDs.
	netIDs := map[string]string{} // name -> id, of our networks that are as wanted
	remade := map[string]bool{}   // networks made again: their endpoints with them
	netErrs := map[string]error{} // networks that could not be made
	for i := range want.Networks {
		ns := &want.Networks[i]
		have := findNetwork(h.nets, ns.Doc.Name)
		if !in(ns.Key) && have != nil {
			netIDs[ns.Doc.Name] = have.Id
			continue
		}
		id, again, err := r.ensureNetwork(h, ns, have)
		if err != nil {
			keyErrs[ns.Key] = err
			netErrs[ns.Doc.Name] = err
			continue
		}
		netIDs[ns.Doc.Name] = id
		remade[ns.Doc.Name] = again
	}
	byAtt := map[string][]*EndpointSpec{}
	for i := range want.Endpoints {
		e := &want.Endpoints[i]
		byAtt[e.Attachment] = append(byAtt[e.Attachment], e)
	}
	for i := range want.Namespaces {
		ns := &want.Namespaces[i]
		if ctx.Err() != nil {
			break
		}
		eps := byAtt[ns.Attachment]
		svc := "service/" + serviceOf(eps, r.marks)
		force := false
		for _, e := range eps {
			force = force || remade[e.Network]
		}
		if !force && !in("attachment/"+ns.Attachment, svc) {
			continue
		}
		if err := r.ensureAttachment(h, ns, eps, netIDs, netErrs); err != nil {
			keyErrs["attachment/"+ns.Attachment] = err
		}
	}
	var errs []error
	if err := r.removeStrays(h, want); err != nil {
		errs = append(errs, err)
	}
	if len(keyErrs) > 0 {
		errs = append(errs, keyErrs)
	}
	return errors.Join(errs...)
}

// serviceOf is the service of an attachment's endpoints (the service
// leg's network name).
func serviceOf(eps []*EndpointSpec, m marks) string {
	for _, e := range eps {
		if e.Leg == LegService {
			if p, ok := m.owns(e.Network); ok {
				return p.service
			}
		}
	}
	return ""
}

func findNetwork(nets []Network, name string) *Network {
	for i := range nets {
		if nets[i].Name == name {
			return &nets[i]
		}
	}
	return nil
}

func findEndpoint(eps []Endpoint, name string) *Endpoint {
	for i := range eps {
		if eps[i].Name == name {
			return &eps[i]
		}
	}
	return nil
}

func findNamespace(nss []Namespace, id string) *Namespace {
	for i := range nss {
		if sameID(nss[i].Id, id) {
			return &nss[i]
		}
	}
	return nil
}

// ensureNetwork adopts the network named as ns wants when it matches,
// makes it again when it drifted (its endpoints of this owner go first;
// again is then true), and creates it when it is missing.
func (r *Reconciler) ensureNetwork(h *host, ns *NetworkSpec, have *Network) (id string, again bool, err error) {
	if have != nil {
		if networkMatches(have, &ns.Doc) {
			return have.Id, false, nil
		}
		r.log.Warn("HCN network drifted; making it again", "network", ns.Doc.Name, "id", have.Id)
		for i := range h.eps {
			ep := &h.eps[i]
			if !sameID(ep.HostComputeNetwork, have.Id) {
				continue
			}
			if _, ours := r.marks.owns(ep.Name); !ours {
				return "", false, fmt.Errorf("network %s drifted and holds endpoint %s, which is not this daemon's: %w", ns.Doc.Name, ep.Name, ErrNotOurs)
			}
			if err := r.deleteEndpoint(ep); err != nil {
				return "", false, fmt.Errorf("network %s drifted: delete its endpoint %s: %w", ns.Doc.Name, ep.Name, err)
			}
		}
		if err := r.api.DeleteNetwork(have.Id); err != nil && !notFound(err) {
			return "", false, fmt.Errorf("network %s drifted: delete it: %w", ns.Doc.Name, err)
		}
		h.nets = dropID(h.nets, have.Id, networkID)
		again = true
	}
	doc := ns.Doc
	made, err := r.api.CreateNetwork(&doc)
	if err != nil {
		return "", false, fmt.Errorf("create network %s: %w", ns.Doc.Name, err)
	}
	r.log.Info("created HCN network", "network", made.Name, "id", made.Id, "type", made.Type)
	h.nets = append(h.nets, *made)
	return made.Id, again, nil
}

// ensureAttachment makes an attachment's endpoints and namespace as the
// state wants them: an endpoint of this owner that matches is adopted, one
// that drifted (another address, policy, network, namespace) is deleted
// and made again, a missing one is made; the namespace is made under its
// journaled GUID when missing; each endpoint is put into it. Endpoints
// are made before the namespace (a namespace has no name: the endpoints'
// names are what marks it as ours). When a step fails, what this call
// created is deleted again (the namespace first, then the endpoints) and
// the error names the step.
func (r *Reconciler) ensureAttachment(h *host, ns *NamespaceSpec, eps []*EndpointSpec, netIDs map[string]string, netErrs map[string]error) (err error) {
	var createdEps []*Endpoint
	createdNs := false
	defer func() {
		if err == nil {
			return
		}
		if createdNs {
			if derr := r.api.DeleteNamespace(ns.Doc.Id); derr != nil && !notFound(derr) {
				r.log.Warn("undo a failed attach: delete the namespace it made", "handle", ns.Attachment, "namespace", ns.Doc.Id, "err", derr)
			} else {
				delete(r.made, ns.Doc.Id)
				h.nss = dropID(h.nss, ns.Doc.Id, namespaceID)
			}
		}
		for _, ep := range createdEps {
			if derr := r.deleteEndpoint(ep); derr != nil {
				r.log.Warn("undo a failed attach: delete an endpoint it made", "handle", ns.Attachment, "endpoint", ep.Name, "err", derr)
			} else {
				h.eps = dropID(h.eps, ep.Id, endpointID)
			}
		}
	}()
	have := make([]*Endpoint, len(eps))
	for i, e := range eps {
		netID := netIDs[e.Network]
		if netID == "" {
			cause := netErrs[e.Network]
			if cause == nil {
				cause = fmt.Errorf("network %s: %w", e.Network, ErrNotFound)
			}
			return step("network", cause)
		}
		cur := findEndpoint(h.eps, e.Doc.Name)
		if cur != nil && endpointMatches(cur, &e.Doc, netID) &&
			(cur.HostComputeNamespace == "" || sameID(cur.HostComputeNamespace, ns.Doc.Id)) {
			have[i] = cur
			continue
		}
		if cur != nil {
			r.log.Warn("HCN endpoint drifted; making it again", "handle", ns.Attachment, "endpoint", cur.Name)
			if err := r.deleteEndpoint(cur); err != nil {
				return step("delete-endpoint", fmt.Errorf("endpoint %s: %w", cur.Name, err))
			}
			h.eps = dropID(h.eps, cur.Id, endpointID)
		}
		doc := e.Doc
		doc.HostComputeNetwork = netID
		made, err := r.api.CreateEndpoint(netID, &doc)
		if err != nil {
			return step("endpoint", fmt.Errorf("create endpoint %s on network %s: %w", e.Doc.Name, e.Network, err))
		}
		effects.Hit("hcn/after-endpoint-create")
		createdEps = append(createdEps, made)
		h.eps = append(h.eps, *made)
		c := *made
		have[i] = &c
	}
	nsHave := findNamespace(h.nss, ns.Doc.Id)
	if nsHave == nil {
		doc := ns.Doc
		made, err := r.api.CreateNamespace(&doc)
		if err != nil {
			return step("namespace", fmt.Errorf("create namespace %s: %w", ns.Doc.Id, err))
		}
		if !sameID(made.Id, ns.Doc.Id) {
			// The answer to the attach named the journaled GUID: a
			// namespace under another one is of no use.
			if derr := r.api.DeleteNamespace(made.Id); derr != nil && !notFound(derr) {
				r.log.Warn("delete a namespace made under the wrong GUID", "namespace", made.Id, "err", derr)
			}
			return step("namespace", fmt.Errorf("HCN made namespace %s instead of %s", made.Id, ns.Doc.Id))
		}
		createdNs = true
		r.made[ns.Doc.Id] = true
		effects.Hit("hcn/after-namespace-create")
		h.nss = append(h.nss, *made)
		c := *made
		nsHave = &c
	}
	for i, ep := range have {
		if sameID(ep.HostComputeNamespace, ns.Doc.Id) || containsID(nsHave.EndpointIDs(), ep.Id) {
			continue
		}
		if err := r.api.AddNamespaceEndpoint(ns.Doc.Id, ep.Id); err != nil {
			return step("namespace-endpoint", fmt.Errorf("add endpoint %s to namespace %s: %w", eps[i].Doc.Name, ns.Doc.Id, err))
		}
		ep.HostComputeNamespace = ns.Doc.Id
	}
	return nil
}

// deleteEndpoint deletes an endpoint; "not found" is success.
func (r *Reconciler) deleteEndpoint(ep *Endpoint) error {
	if err := r.api.DeleteEndpoint(ep.Id); err != nil && !notFound(err) {
		return err
	}
	return nil
}

// removeStrays deletes what this owner made and the state does not want,
// namespaces first (while the endpoints whose names mark them still
// exist), then endpoints, then networks: a namespace that no wanted
// attachment has and that a stray endpoint of this owner names (or is in),
// or that this process made; this owner's endpoints that are not wanted
// (and second copies of wanted names); this owner's networks that are not
// wanted. Objects of other owners, and names that are no marks, are never
// touched.
func (r *Reconciler) removeStrays(h *host, want *Objects) error {
	wantNs, wantEp, wantNet := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, n := range want.Namespaces {
		wantNs[canonID(n.Doc.Id)] = true
	}
	for _, e := range want.Endpoints {
		wantEp[e.Doc.Name] = true
	}
	for _, n := range want.Networks {
		wantNet[n.Doc.Name] = true
	}
	var errs []error
	var strayEps []*Endpoint
	seen := map[string]bool{}
	doomedNs := map[string]bool{}
	for g := range r.made {
		if !wantNs[g] {
			doomedNs[g] = true
		}
	}
	for i := range h.eps {
		ep := &h.eps[i]
		m, ours := r.marks.owns(ep.Name)
		if !ours || m.kind != "endpoint" {
			continue
		}
		if wantEp[ep.Name] && !seen[ep.Name] {
			seen[ep.Name] = true
			continue
		}
		strayEps = append(strayEps, ep)
		for _, g := range []string{m.guid, canonID(ep.HostComputeNamespace)} {
			if g != "" && !wantNs[g] {
				doomedNs[g] = true
			}
		}
	}
	for i := range h.nss {
		ns := &h.nss[i]
		g := canonID(ns.Id)
		if !doomedNs[g] {
			continue
		}
		if err := r.api.DeleteNamespace(ns.Id); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("hcn: remove stray namespace %s: %w", ns.Id, err))
			doomedNs[g] = false // still there: still ours to delete
			continue
		}
		r.log.Info("removed an HCN namespace that belongs to nothing", "namespace", ns.Id)
	}
	for g, gone := range doomedNs {
		if gone {
			delete(r.made, g)
		}
	}
	deleted := map[string]bool{}
	for _, ep := range strayEps {
		if err := r.deleteEndpoint(ep); err != nil {
			errs = append(errs, fmt.Errorf("hcn: remove stray endpoint %s: %w", ep.Name, err))
			continue
		}
		deleted[ep.Id] = true
		r.log.Info("removed an HCN endpoint that belongs to nothing", "endpoint", ep.Name)
	}
	seenNet := map[string]bool{}
	for i := range h.nets {
		n := &h.nets[i]
		if _, ours := r.marks.owns(n.Name); !ours {
			continue
		}
		if wantNet[n.Name] && !seenNet[n.Name] {
			seenNet[n.Name] = true
			continue
		}
		busy := ""
		for j := range h.eps {
			if sameID(h.eps[j].HostComputeNetwork, n.Id) && !deleted[h.eps[j].Id] {
				busy = h.eps[j].Name
				break
			}
		}
		if busy != "" {
			errs = append(errs, fmt.Errorf("hcn: stray network %s still holds endpoint %s (not this daemon's, or not deleted): left in place", n.Name, busy))
			continue
		}
		if err := r.api.DeleteNetwork(n.Id); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("hcn: remove stray network %s: %w", n.Name, err))
			continue
		}
		r.log.Info("removed an HCN network that belongs to nothing", "network", n.Name, "id", n.Id)
	}
	return errors.Join(errs...)
}

func containsID(ids []string, id string) bool {
	for _, x := range ids {
		if sameID(x, id) {
			return true
		}
	}
	return false
}

// canonID is a GUID's bare lowercase form (other strings lowercased).
func canonID(s string) string {
	if g, ok := projections.CanonicalGUID(s); ok {
		return g
	}
	return strings.ToLower(s)
}

// dropID is items without the one whose id (idOf) is id.
func dropID[T any](items []T, id string, idOf func(T) string) []T {
	out := items[:0:0]
	for _, it := range items {
		if !sameID(idOf(it), id) {
			out = append(out, it)
		}
	}
	return out
}

func networkID(n Network) string     { return n.Id }
func endpointID(e Endpoint) string   { return e.Id }
func namespaceID(n Namespace) string { return n.Id }

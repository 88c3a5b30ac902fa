// Package hcn makes the overlay real on a Windows node through the Host
// Compute Network service: the node's overlay network, a network per
// service, and for every windows_container attachment a namespace with an
// endpoint on its service's network (and, with join_global, a second one
// on the overlay network). docs/windows-hcn.md explains every field of
// every document, and where this differs from the reference daemon.
//
// # Layers
//
//   - Desired (desired.go) computes, from a *projections.State, the HCN
//     objects that must exist, as the JSON documents hcsshim's hcn package
//     sends (documents.go declares them with hcsshim's field names; they
//     build everywhere and are tested on Linux against golden files in
//     testdata/, `go test -update` rewrites them).
//   - Reconciler (reconciler.go) converges HCN to them over API (api.go),
//     a small interface shaped after hcsshim's calls.
//   - NewAPI is the real API on Windows (api_windows.go, the only file
//     that calls hcsshim); elsewhere it returns ErrUnsupported. hcnfake is
//     an in-memory API with failure injection, for tests anywhere.
//
// What the daemon wires (on Windows):
//
//	api, err := hcn.NewAPI()                         // ErrUnsupported off Windows
//	rec := hcn.New(api, log, owner, hcn.Config{UplinkAdapter: flag})
//	runner := effects.NewRunner(view, log, interval, …, rec)
//
// rec is an effects.Reconciler and an effects.Filter (Relevant: "global",
// "service/…", "attachment/windows_container:…"). An attach's outcome is
// Runner.Err("attachment/windows_container:<container id>"), a
// *StepError naming the step that failed.
//
// # Passes
//
// Every pass lists the networks, endpoints and namespaces first (three
// calls); a listing that fails changes nothing and fails the pass. A
// change pass converges what the change keys name (a "global" change
// converges everything: NAT, the cluster and the slice appear in every
// document); a full pass (all: boot, periodic checks, retries) converges
// everything. Then every pass deletes this owner's objects that the state
// does not want. Per object:
//
//   - a network that exists with this owner's name and matches (type,
//     subnet, gateway route, uplink adapter) is adopted; one that drifted
//     is deleted with this owner's endpoints on it and made again (its
//     attachments' endpoints with it); a missing one is made;
//   - an attachment's endpoints are made first, then its namespace under
//     the journaled GUID, then each endpoint is put into it. An endpoint
//     that matches (network, address, routes, DNS, policies, namespace) is
//     adopted; one that drifted is deleted and made again; one deleted by
//     hand is made again. When a step fails, what this call made for the
//     attachment is deleted again (the namespace, then the endpoints) and
//     the error is a *StepError naming the step ("network", "endpoint",
//     "delete-endpoint", "namespace", "namespace-endpoint");
//   - strays are deleted namespaces first, then endpoints, then networks.
//
// HCN does not keep names unique: a second object with one of this
// owner's wanted names is a stray too.
//
// # Names and marks
//
// HCN networks and endpoints have a free-form Name and no other free-form
// field in every schema version (no labels, no AdditionalParams), so the
// Name is the ownership mark, and it carries the journal id as the
// bridges' link aliases do (effects.Owner.Journal; the Home is left out:
// HCN objects are the host's, like the bridges):
//
//	zlayer-overlay.<journal>                 the node's overlay network
//	zlayer-svc-<service>.<journal>           a service's network
//	zlayer-ep-<namespace GUID>-<leg>.<journal>
//	                                         an attachment's endpoint; leg s
//	                                         (service network) or g (overlay)
//
// <journal> is the journal's short id, letters and digits only, at most
// 64 ("nojournal" for an Owner without one: no HCN object predates journal
// ids, so Owner.Legacy changes nothing here). A name without ".<journal>"
// (the reference daemon's "zlayer-overlay", "<deployment>-overlay-svc-…")
// or with another journal is never adopted, changed or deleted.
//
// Namespaces have no name at all. Their GUID is decided with the attach
// and journaled (projections.NamespaceGUID), and the names of the
// attachment's endpoints carry it. Endpoints are made before their
// namespace and deleted after it, so a crash at any point leaves an
// endpoint naming each namespace this daemon made (the one exception, an
// endpoint being made again after drift, concerns an attachment the state
// still wants, which the next pass completes). A namespace is deleted as
// a stray when the state does not want its GUID and one of this owner's
// endpoints names it or is in it, or this process made it; no other
// namespace is ever touched.
//
// # What is tested where
//
// On Linux (and under wine): the documents (golden files), the names, the
// reconciler against hcnfake (attach, detach, teardown, crash between
// making and recording, crashes inside an attach, drift repair, rollback
// at each step, foreign objects, failed listings). On Windows builds
// (and under wine): that the documents marshal byte for byte as hcsshim's
// types do. Nowhere here: a real HCN (wine has none), so whether HNS takes
// these documents, honours the namespace GUID, or routes as intended is
// not shown by any test of this package.
package hcn

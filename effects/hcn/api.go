package hcn

import (
	"errors"

	"github.com/zlayer/overlayd/effects"
)

// API is the part of the Host Compute Network service the reconciler uses,
// shaped after github.com/Microsoft/hcsshim/hcn's calls (ListNetworks,
// HostComputeNetwork.Create, …, AddNamespaceEndpoint). NewAPI returns the
// real one on Windows (api_windows.go); hcnfake is an in-memory one.
//
// Implementations translate "no such object" into an error wrapping
// ErrNotFound. HCN does not make names unique: the reconciler lists before
// it creates. Calls are made from one goroutine at a time.
type API interface {
	ListNetworks() ([]Network, error)
	// CreateNetwork creates a network from doc (doc.Id empty: HCN picks
	// the GUID) and returns it as HCN reports it, Id included.
	CreateNetwork(doc *Network) (*Network, error)
	DeleteNetwork(id string) error

	// ListEndpoints reports each endpoint's network and namespace
	// (HostComputeNetwork, HostComputeNamespace).
	ListEndpoints() ([]Endpoint, error)
	// CreateEndpoint creates doc on the network networkID
	// (doc.HostComputeNamespace must be empty).
	CreateEndpoint(networkID string, doc *Endpoint) (*Endpoint, error)
	DeleteEndpoint(id string) error

	// ListNamespaces reports each namespace's endpoints (Resources).
	ListNamespaces() ([]Namespace, error)
	// CreateNamespace creates a namespace whose GUID is doc.Id (the
	// journaled one: the answer to the attach already named it).
	CreateNamespace(doc *Namespace) (*Namespace, error)
	DeleteNamespace(id string) error
	AddNamespaceEndpoint(namespaceID, endpointID string) error
}

// ErrNotFound is what an API returns (wrapped) for an object that does
// not exist.
var ErrNotFound = errors.New("hcn: not found")

// ErrNotOurs marks an object in the way that this owner did not make.
var ErrNotOurs = errors.New("hcn: not this daemon's object")

// ErrUnsupported is what NewAPI returns where there is no HCN.
var ErrUnsupported = errors.New("hcn: the Host Compute Network service exists only on Windows")

func notFound(err error) bool { return errors.Is(err, ErrNotFound) }

// StepError says which step of making an attachment's objects failed:
// "network", "endpoint", "namespace", "namespace-endpoint", or a repair's
// "delete-endpoint".
type StepError = effects.StepError

func step(name string, err error) error { return effects.Step(name, err) }

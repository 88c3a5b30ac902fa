//go:build windows

package hcn

import (
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"github.com/Microsoft/go-winio/pkg/guid"
	"github.com/Microsoft/hcsshim/hcn"
	"golang.org/x/sys/windows"
)

// NewAPI returns this machine's Host Compute Network service, through
// github.com/Microsoft/hcsshim/hcn. It fails when HCN's v2 API (Windows
// 10 1809 / Server 2019 and later) is not there.
func NewAPI() (API, error) {
	if err := hcn.V2ApiSupported(); err != nil {
		return nil, fmt.Errorf("hcn: %w", err)
	}
	return winAPI{}, nil
}

type winAPI struct{}

// convert turns one document type into another through its JSON: this
// package's types into hcsshim's and back (the field names are the same;
// api_windows_test.go checks the round trip).
func convert[T any](from any) (*T, error) {
	b, err := json.Marshal(from)
	if err != nil {
		return nil, fmt.Errorf("hcn: encode %T: %w", from, err)
	}
	var to T
	if err := json.Unmarshal(b, &to); err != nil {
		return nil, fmt.Errorf("hcn: decode %T as %T: %w", from, to, err)
	}
	return &to, nil
}

func convertAll[T, F any](from []F, err error) ([]T, error) {
	if err != nil {
		return nil, translate(err)
	}
	out := make([]T, 0, len(from))
	for i := range from {
		t, err := convert[T](&from[i])
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, nil
}

// translate maps hcsshim's "not found" errors onto ErrNotFound.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var nn hcn.NetworkNotFoundError
	var en hcn.EndpointNotFoundError
	var nsn hcn.NamespaceNotFoundError
	if hcn.IsElementNotFoundError(err) || errors.As(err, &nn) || errors.As(err, &en) || errors.As(err, &nsn) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func (winAPI) ListNetworks() ([]Network, error) {
	return convertAll[Network](hcn.ListNetworks())
}

func (winAPI) CreateNetwork(doc *Network) (*Network, error) {
	n, err := convert[hcn.HostComputeNetwork](doc)
	if err != nil {
		return nil, err
	}
	made, err := n.Create()
	if err != nil {
		return nil, translate(err)
	}
	return convert[Network](made)
}

func (winAPI) DeleteNetwork(id string) error {
	return translate((&hcn.HostComputeNetwork{Id: id}).Delete())
}

func (winAPI) ListEndpoints() ([]Endpoint, error) {
	return convertAll[Endpoint](hcn.ListEndpoints())
}

func (winAPI) CreateEndpoint(networkID string, doc *Endpoint) (*Endpoint, error) {
	e, err := convert[hcn.HostComputeEndpoint](doc)
	if err != nil {
		return nil, err
	}
	e.HostComputeNetwork = networkID
	made, err := e.Create()
	if err != nil {
		return nil, translate(err)
	}
	return convert[Endpoint](made)
}

func (winAPI) DeleteEndpoint(id string) error {
	return translate((&hcn.HostComputeEndpoint{Id: id}).Delete())
}

func (winAPI) ListNamespaces() ([]Namespace, error) {
	return convertAll[Namespace](hcn.ListNamespaces())
}

// CreateNamespace creates the namespace under doc.Id. hcsshim's
// HostComputeNamespace.Create always lets HCN pick the GUID (it passes a
// zero GUID to HcnCreateNamespace), so this calls HcnCreateNamespace
// itself with the journaled GUID, then reads the namespace back through
// hcsshim.
func (winAPI) CreateNamespace(doc *Namespace) (*Namespace, error) {
	id, err := guid.FromString(doc.Id)
	if err != nil {
		return nil, fmt.Errorf("hcn: namespace id %q: %w", doc.Id, err)
	}
	settings, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("hcn: encode namespace %s: %w", doc.Id, err)
	}
	if err := createNamespace(id, string(settings)); err != nil {
		return nil, fmt.Errorf("hcn: create namespace %s: %w", doc.Id, err)
	}
	made, err := hcn.GetNamespaceByID(doc.Id)
	if err != nil {
		return nil, fmt.Errorf("hcn: read namespace %s back: %w", doc.Id, translate(err))
	}
	return convert[Namespace](made)
}

func (winAPI) DeleteNamespace(id string) error {
	return translate((&hcn.HostComputeNamespace{Id: id}).Delete())
}

func (winAPI) AddNamespaceEndpoint(namespaceID, endpointID string) error {
	return translate(hcn.AddNamespaceEndpoint(namespaceID, endpointID))
}

var (
	computenetwork         = windows.NewLazySystemDLL("computenetwork.dll")
	procHcnCreateNamespace = computenetwork.NewProc("HcnCreateNamespace")
	procHcnCloseNamespace  = computenetwork.NewProc("HcnCloseNamespace")
)

// createNamespace is HcnCreateNamespace(id, settings, &handle, &record)
// then HcnCloseNamespace(handle), as hcsshim's zsyscall_windows.go calls
// them.
func createNamespace(id guid.GUID, settings string) error {
	if err := procHcnCreateNamespace.Find(); err != nil {
		return err
	}
	if err := procHcnCloseNamespace.Find(); err != nil {
		return err
	}
	p, err := windows.UTF16PtrFromString(settings)
	if err != nil {
		return err
	}
	var handle uintptr
	var record *uint16
	r0, _, _ := syscall.SyscallN(procHcnCreateNamespace.Addr(), uintptr(unsafe.Pointer(&id)), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&handle)), uintptr(unsafe.Pointer(&record)))
	msg := ""
	if record != nil {
		msg = windows.UTF16PtrToString(record)
		windows.CoTaskMemFree(unsafe.Pointer(record))
	}
	if int32(r0) < 0 {
		return fmt.Errorf("HcnCreateNamespace: HRESULT %#x: %s", uint32(r0), msg)
	}
	if r, _, _ := syscall.SyscallN(procHcnCloseNamespace.Addr(), handle); int32(r) < 0 {
		return fmt.Errorf("HcnCloseNamespace: HRESULT %#x", uint32(r))
	}
	return nil
}

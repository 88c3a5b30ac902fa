package hcn

import "encoding/json"

// The HCN documents, as github.com/Microsoft/hcsshim/hcn (v0.14.1,
// schema 2.0) marshals them: the same field names, tags and omissions,
// so that json.Marshal of these types gives the bytes hcsshim sends, on
// every platform (hcsshim's own types build on Windows only). Only the
// fields this daemon sets or reads are declared; api_windows.go converts
// them to and from hcsshim's types through their JSON (a test there checks
// the round trip is exact).

// SchemaVersion is an HCN schema version; the daemon writes 2.0.
type SchemaVersion struct {
	Major int `json:"Major"`
	Minor int `json:"Minor"`
}

// V2 is schema version 2.0 (hcn.V2SchemaVersion).
var V2 = SchemaVersion{Major: 2, Minor: 0}

// Route is a route of a subnet or an endpoint.
type Route struct {
	NextHop           string `json:",omitempty"`
	DestinationPrefix string `json:",omitempty"`
	Metric            uint16 `json:",omitempty"`
}

// Subnet is an address space of a network's IPAM.
type Subnet struct {
	IpAddressPrefix string            `json:",omitempty"`
	Policies        []json.RawMessage `json:",omitempty"`
	Routes          []Route           `json:",omitempty"`
}

// Ipam is a network's address management: "Static" here.
type Ipam struct {
	Type    string   `json:",omitempty"`
	Subnets []Subnet `json:",omitempty"`
}

// MacPool is declared for its place in the document (always empty here:
// hcsshim marshals it as {}).
type MacPool struct {
	Ranges []MacRange `json:",omitempty"`
}

// MacRange is a range of a MacPool.
type MacRange struct {
	StartMacAddress string `json:",omitempty"`
	EndMacAddress   string `json:",omitempty"`
}

// Dns is the DNS configuration of a network or an endpoint.
type Dns struct {
	Domain     string   `json:",omitempty"`
	Search     []string `json:",omitempty"`
	ServerList []string `json:",omitempty"`
	Options    []string `json:",omitempty"`
}

// ExtraParams and Health are read-only status HCN reports; hcsshim
// marshals an empty one as {"Extra":{}}.
type ExtraParams struct {
	Resources        json.RawMessage `json:",omitempty"`
	SharedContainers json.RawMessage `json:",omitempty"`
	LayeredOn        string          `json:",omitempty"`
	SwitchGuid       string          `json:",omitempty"`
	UtilityVM        string          `json:",omitempty"`
	VirtualMachine   string          `json:",omitempty"`
}

// Health is an object's status (read only).
type Health struct {
	Data  any         `json:",omitempty"`
	Extra ExtraParams `json:",omitempty"`
}

// Network types this daemon creates. "Internal" is a host-only virtual
// switch (hcsshim's NetworkType is a string and does not list it; HNS
// takes it, as the reference daemon's networks show).
const (
	TypeInternal    = "Internal"
	TypeTransparent = "Transparent"
)

// NetworkPolicy is a policy of a network.
type NetworkPolicy struct {
	Type     string          `json:""`
	Settings json.RawMessage `json:",omitempty"`
}

// Network is HostComputeNetwork.
type Network struct {
	Id            string          `json:"ID,omitempty"`
	Name          string          `json:",omitempty"`
	Type          string          `json:",omitempty"`
	Policies      []NetworkPolicy `json:",omitempty"`
	MacPool       MacPool         `json:",omitempty"`
	Dns           Dns             `json:",omitempty"`
	Ipams         []Ipam          `json:",omitempty"`
	Flags         uint32          `json:",omitempty"`
	Health        Health          `json:",omitempty"`
	SchemaVersion SchemaVersion   `json:",omitempty"`
}

// NetAdapterNameSettings binds a Transparent network to a host adapter.
type NetAdapterNameSettings struct {
	NetworkAdapterName string `json:",omitempty"`
}

// IpConfig is an address of an endpoint.
type IpConfig struct {
	IpAddress    string `json:",omitempty"`
	PrefixLength uint8  `json:",omitempty"`
}

// EndpointPolicy is a policy of an endpoint.
type EndpointPolicy struct {
	Type     string          `json:""`
	Settings json.RawMessage `json:",omitempty"`
}

// Endpoint policy types used here.
const (
	PolicyOutBoundNAT = "OutBoundNAT"
	PolicySDNRoute    = "SDNRoute"
	PolicyACL         = "ACL"
)

// OutboundNatSettings: NAT to the host's address, except Exceptions.
type OutboundNatSettings struct {
	VirtualIP        string   `json:",omitempty"`
	Exceptions       []string `json:",omitempty"`
	Destinations     []string `json:",omitempty"`
	Flags            uint32   `json:",omitempty"`
	MaxPortPoolUsage uint16   `json:",omitempty"`
}

// SDNRouteSettings routes a prefix out of the endpoint without NAT.
type SDNRouteSettings struct {
	DestinationPrefix string `json:",omitempty"`
	NextHop           string `json:",omitempty"`
	NeedEncap         bool   `json:",omitempty"`
}

// ACLSettings is a firewall rule of an endpoint.
type ACLSettings struct {
	Protocols       string `json:",omitempty"`
	Action          string `json:","`
	Direction       string `json:","`
	LocalAddresses  string `json:",omitempty"`
	RemoteAddresses string `json:",omitempty"`
	LocalPorts      string `json:",omitempty"`
	RemotePorts     string `json:",omitempty"`
	RuleType        string `json:",omitempty"`
	Priority        uint16 `json:",omitempty"`
}

// Endpoint is HostComputeEndpoint. HostComputeNamespace is read only (HCN
// reports the namespace the endpoint is in; a create must leave it empty).
type Endpoint struct {
	Id                   string           `json:"ID,omitempty"`
	Name                 string           `json:",omitempty"`
	HostComputeNetwork   string           `json:",omitempty"`
	HostComputeNamespace string           `json:",omitempty"`
	Policies             []EndpointPolicy `json:",omitempty"`
	IpConfigurations     []IpConfig       `json:",omitempty"`
	Dns                  Dns              `json:",omitempty"`
	Routes               []Route          `json:",omitempty"`
	MacAddress           string           `json:",omitempty"`
	Flags                uint32           `json:",omitempty"`
	Health               Health           `json:",omitempty"`
	SchemaVersion        SchemaVersion    `json:",omitempty"`
}

// Namespace types.
const (
	NamespaceHost = "Host" // a compartment of its own on the host (a process-isolated container)
)

// NamespaceResource is an endpoint or container in a namespace.
type NamespaceResource struct {
	Type string          `json:","` // "Endpoint" or "Container"
	Data json.RawMessage `json:","`
}

// NamespaceResourceEndpoint is the Data of an "Endpoint" resource.
type NamespaceResourceEndpoint struct {
	Id string `json:"ID,"`
}

// Namespace is HostComputeNamespace.
type Namespace struct {
	Id            string              `json:"ID,omitempty"`
	NamespaceId   uint32              `json:",omitempty"`
	Type          string              `json:",omitempty"`
	Resources     []NamespaceResource `json:",omitempty"`
	SchemaVersion SchemaVersion       `json:",omitempty"`
}

// EndpointIDs lists the endpoints a namespace reports holding.
func (n *Namespace) EndpointIDs() []string {
	var out []string
	for _, r := range n.Resources {
		if r.Type != "Endpoint" {
			continue
		}
		var e NamespaceResourceEndpoint
		if json.Unmarshal(r.Data, &e) == nil && e.Id != "" {
			out = append(out, e.Id)
		}
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic("hcn: marshal a policy: " + err.Error())
	}
	return b
}

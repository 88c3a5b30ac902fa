package projections

import "net/netip"

// Command is a request to change (or read a decision from) the state. The
// daemon builds commands from IPC requests; values that need I/O or
// randomness (the process's namespace inode, freshly generated public keys)
// are filled in by the daemon before Decide sees them.
type Command interface{ Op() string }

// Config holds the node-local choices Decide makes for new objects. It never
// affects Apply, so changing it only changes future decisions.
type Config struct {
	SlicePrefix4     int    // size of a derived node slice in an IPv4 cluster
	SlicePrefix6     int    // ... in an IPv6 cluster
	ServicePrefix4   int    // size of a service subnet in an IPv4 cluster
	ServicePrefix6   int    // ... in an IPv6 cluster
	DedicatedPortMin uint16 // band of ports for dedicated service devices
	DedicatedPortMax uint16
	Platform         string // "linux" or "windows": which handles can attach
	Keepalive        uint64 // persistent keepalive offered to guests for the node peer
}

// DefaultConfig is the configuration DESIGN.md specifies.
func DefaultConfig() Config {
	return Config{
		SlicePrefix4:     24,
		SlicePrefix6:     64,
		ServicePrefix4:   28,
		ServicePrefix6:   120,
		DedicatedPortMin: 51421,
		DedicatedPortMax: 51676,
		Platform:         "linux",
		Keepalive:        25,
	}
}

type (
	SetNodeID struct{ NodeID uint64 }
	// AnnounceKey records the key the orchestrator says this node has.
	AnnounceKey struct{ PublicKey string }
	// SetNodeIdentity records the daemon's own WireGuard public key (boot).
	SetNodeIdentity struct {
		PublicKey string
		Source    string // "generated" or "imported"
	}
	SetupGlobal struct {
		Deployment, InstanceID, ClusterCIDR string
		SliceCIDR                           string // "" = derive
		Port                                uint16
		NATEnabled                          bool
	}
	TeardownGlobal struct{}
	SetupService   struct {
		Service, Mode string
		// NewPublicKey is a freshly generated key the daemon offers for a
		// dedicated device; used only if a new device is decided.
		NewPublicKey string
	}
	TeardownService struct{ Service string }
	AllocateIP      struct {
		Service    string
		JoinGlobal bool
	}
	ReleaseIP struct{ IP netip.Addr }
	Attach    struct {
		Handle     Handle
		Service    string
		JoinGlobal bool
		DNSServer  netip.Addr
		DNSDomain  string
		Proc       ProcInfo
		// NewGuestKey is a freshly generated public key for a guest.
		NewGuestKey string
		// NodeAddress is the underlay address guests should reach this node
		// at; the endpoint is NodeAddress and the global WireGuard port.
		NodeAddress netip.Addr
		// HandleIP is the address a windows_container handle asks for
		// (handle.ip; zero: none): taken only when it lies in the
		// service's subnet and is free or reserved by allocate_ip.
		HandleIP netip.Addr
	}
	Detach struct {
		Handle Handle
		Reason string // "" = detach_container
		// IfNetnsInode, when set, detaches only the attachment made in that
		// network namespace (a reconciler reporting a dead container must
		// not detach a newer one with the same PID).
		IfNetnsInode uint64
	}
	AddPeer struct {
		Scope      Scope
		PublicKey  string
		Endpoint   string
		AllowedIPs string
		Keepalive  uint64
	}
	RemovePeer struct {
		Scope     Scope
		PublicKey string
	}
	AddAllowedIP struct {
		Scope     Scope
		PublicKey string
		CIDR      string
	}
	RemoveAllowedIP struct {
		Scope     Scope
		PublicKey string
		CIDR      string
	}
	RegisterDNS struct {
		Name string
		IP   netip.Addr
	}
	UnregisterDNS    struct{ Name string }
	ObserveEndpoints struct{ Observed []Observation }
)

// ProcInfo is what the daemon found about a linux_pid handle's process.
type ProcInfo struct {
	Exists     bool
	NetnsInode uint64 // 0 = unknown
	// HostNetwork is set when the process shares the daemon's own network
	// namespace: there is nothing to wire, and an eth0 made there would
	// be the node's.
	HostNetwork bool
}

// Observation is a peer endpoint currently used by a WireGuard device.
type Observation struct {
	Scope     Scope
	PublicKey string
	Endpoint  string
}

func (SetNodeID) Op() string        { return "set_local_node_id" }
func (AnnounceKey) Op() string      { return "set_local_wg_pubkey" }
func (SetNodeIdentity) Op() string  { return "boot_identity" }
func (SetupGlobal) Op() string      { return "setup_global_overlay" }
func (TeardownGlobal) Op() string   { return "teardown_global_overlay" }
func (SetupService) Op() string     { return "setup_service_overlay" }
func (TeardownService) Op() string  { return "teardown_service_overlay" }
func (AllocateIP) Op() string       { return "allocate_ip" }
func (ReleaseIP) Op() string        { return "release_ip" }
func (Attach) Op() string           { return "attach_container" }
func (Detach) Op() string           { return "detach_container" }
func (AddPeer) Op() string          { return "add_peer" }
func (RemovePeer) Op() string       { return "remove_peer" }
func (AddAllowedIP) Op() string     { return "add_allowed_ip" }
func (RemoveAllowedIP) Op() string  { return "remove_allowed_ip" }
func (RegisterDNS) Op() string      { return "register_dns" }
func (UnregisterDNS) Op() string    { return "unregister_dns" }
func (ObserveEndpoints) Op() string { return "nat_tick" }

// Reply is the answer a decision produces, before the daemon renders it on
// the wire. Repeating a command against the state it produced gives the same
// reply.
type Reply interface{ reply() }

type (
	ReplyOK         struct{}
	ReplyIP         struct{ IP netip.Addr }
	ReplyBridgeName struct{ Name string }
	// ReplyAttached: NamespaceGUID is set for a windows_container (bare,
	// lowercase).
	ReplyAttached struct {
		IP            netip.Addr
		NamespaceGUID string `json:",omitempty"`
	}
	// ReplyServiceOverlay: Name is the service bridge. PublicKey and Port are
	// set for a dedicated service.
	ReplyServiceOverlay struct {
		Name      string
		Mode      string
		PublicKey string
		Port      uint16
		OverlayIP netip.Addr
		Subnet    netip.Prefix
	}
	// ReplyGuestConfig lacks the private key, which the daemon adds: it is
	// never part of the state or the journal.
	ReplyGuestConfig struct {
		IP         netip.Addr
		PrefixLen  uint8
		PublicKey  string
		ListenPort uint16
		Peers      []PeerSpec
		DNSServer  netip.Addr
		DNSDomain  string
	}
)

// PeerSpec is a peer as a guest configuration lists it.
type PeerSpec struct {
	PublicKey  string
	Endpoint   string
	AllowedIPs string
	Keepalive  uint64
}

func (ReplyOK) reply()             {}
func (ReplyIP) reply()             {}
func (ReplyBridgeName) reply()     {}
func (ReplyAttached) reply()       {}
func (ReplyServiceOverlay) reply() {}
func (ReplyGuestConfig) reply()    {}

// Decision is Decide's result: the events to journal (none for a repeated
// command) and the reply to send once they are durable.
type Decision struct {
	Events []Event
	Reply  Reply
}

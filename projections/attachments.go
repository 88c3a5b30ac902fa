package projections

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Attach-handle platforms as the wire carries them.
const (
	PlatformLinuxPID = "linux_pid"
	PlatformWindows  = "windows_container"
	PlatformGuest    = "guest_managed"
)

// Handle identifies an attached workload.
type Handle struct {
	Platform    string `json:"platform"`
	PID         uint32 `json:"pid,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	ID          string `json:"id,omitempty"`
}

// ParseHandleKey is the inverse of Handle.Key.
func ParseHandleKey(key string) (Handle, error) {
	platform, rest, ok := strings.Cut(key, ":")
	if !ok {
		return Handle{}, fmt.Errorf("projections: bad handle key %q", key)
	}
	switch platform {
	case PlatformLinuxPID:
		pid, err := strconv.ParseUint(rest, 10, 32)
		if err != nil {
			return Handle{}, fmt.Errorf("projections: bad handle key %q", key)
		}
		return Handle{Platform: platform, PID: uint32(pid)}, nil
	case PlatformWindows:
		return Handle{Platform: platform, ContainerID: rest}, nil
	case PlatformGuest:
		return Handle{Platform: platform, ID: rest}, nil
	}
	return Handle{}, fmt.Errorf("projections: bad handle key %q", key)
}

// GuestHandle is the handle of a guest-managed attachment.
func GuestHandle(id string) Handle { return Handle{Platform: PlatformGuest, ID: id} }

// Key is the handle's stable string form, e.g. "linux_pid:4242".
func (h Handle) Key() string {
	switch h.Platform {
	case PlatformLinuxPID:
		return h.Platform + ":" + strconv.FormatUint(uint64(h.PID), 10)
	case PlatformWindows:
		return h.Platform + ":" + h.ContainerID
	default:
		return h.Platform + ":" + h.ID
	}
}

func (h Handle) validate() error {
	switch h.Platform {
	case PlatformLinuxPID:
		if h.PID == 0 {
			return errf("handle.pid", "must be greater than 0")
		}
	case PlatformWindows:
		return validateText("handle.container_id", h.ContainerID, true)
	case PlatformGuest:
		return validateText("handle.id", h.ID, true)
	default:
		return errf("handle.platform", "%q is not one of linux_pid, windows_container, guest_managed", h.Platform)
	}
	return nil
}

// Attachment is a workload wired into a service: its service address, its
// optional global address, and what identifies its network namespace.
type Attachment struct {
	Handle   Handle     `json:"handle"`
	Service  string     `json:"service"`
	IP       netip.Addr `json:"ip"`
	GlobalIP netip.Addr `json:"global_ip,omitzero"`
	// NetnsInode is the inode of /proc/<pid>/ns/net at attach time (0 =
	// unknown): a reused PID in another namespace is not this container.
	NetnsInode uint64     `json:"netns_inode,omitempty"`
	DNSServer  netip.Addr `json:"dns_server,omitzero"`
	DNSDomain  string     `json:"dns_domain,omitempty"`
	// PublicKey is a guest's WireGuard public key.
	PublicKey string `json:"public_key,omitempty"`
	// NamespaceGUID is a windows_container's HCN namespace: a bare
	// lowercase GUID decided with the attach (windows.go).
	NamespaceGUID string `json:"namespace_guid,omitempty"`
}

type (
	// ContainerAttached is version 1 without a namespace GUID (linux_pid)
	// and version 2 with one (windows_container): a daemon that knows only
	// version 1 refuses a Windows attach instead of losing its GUID.
	ContainerAttached struct {
		Handle        Handle     `json:"handle"`
		Service       string     `json:"service"`
		IP            netip.Addr `json:"ip"`
		GlobalIP      netip.Addr `json:"global_ip,omitzero"`
		NetnsInode    uint64     `json:"netns_inode,omitempty"`
		DNSServer     netip.Addr `json:"dns_server,omitzero"`
		DNSDomain     string     `json:"dns_domain,omitempty"`
		NamespaceGUID string     `json:"namespace_guid,omitempty"`
	}
	ContainerDetached struct {
		Handle Handle `json:"handle"`
		Reason string `json:"reason"`
	}
	// AttachmentGlobalLeft drops the global leg (eth1) of an attachment.
	AttachmentGlobalLeft struct {
		Handle Handle `json:"handle"`
		Reason string `json:"reason"`
	}
	GuestAttached struct {
		ID        string     `json:"id"`
		Service   string     `json:"service"`
		IP        netip.Addr `json:"ip"`
		PublicKey string     `json:"public_key"`
		DNSServer netip.Addr `json:"dns_server,omitzero"`
		DNSDomain string     `json:"dns_domain,omitempty"`
	}
	GuestKeyRotated struct {
		ID           string `json:"id"`
		PublicKey    string `json:"public_key"`
		OldPublicKey string `json:"old_public_key"`
	}
	GuestDetached struct {
		ID        string `json:"id"`
		PublicKey string `json:"public_key"`
		Reason    string `json:"reason"`
	}
)

func (*ContainerAttached) EventType() string { return "container_attached" }
func (e *ContainerAttached) EventVersion() uint16 {
	if e.NamespaceGUID != "" {
		return 2
	}
	return 1
}
func (*ContainerDetached) EventType() string       { return "container_detached" }
func (*ContainerDetached) EventVersion() uint16    { return 1 }
func (*AttachmentGlobalLeft) EventType() string    { return "attachment_global_left" }
func (*AttachmentGlobalLeft) EventVersion() uint16 { return 1 }
func (*GuestAttached) EventType() string           { return "guest_attached" }
func (*GuestAttached) EventVersion() uint16        { return 1 }
func (*GuestKeyRotated) EventType() string         { return "guest_key_rotated" }
func (*GuestKeyRotated) EventVersion() uint16      { return 1 }
func (*GuestDetached) EventType() string           { return "guest_detached" }
func (*GuestDetached) EventVersion() uint16        { return 1 }

func (s *State) applyContainerAttached(e *ContainerAttached) error {
	key := e.Handle.Key()
	if _, dup := s.Attachments[key]; dup {
		return corrupt("container_attached for attached handle %s", key)
	}
	if err := s.take(e.IP, Owner{Kind: OwnerContainer, Pool: servicePool(e.Service), Ref: key}); err != nil {
		return err
	}
	if e.GlobalIP.IsValid() {
		if err := s.take(e.GlobalIP, Owner{Kind: OwnerContainer, Pool: poolSlice, Ref: key}); err != nil {
			return err
		}
	}
	if e.NamespaceGUID != "" {
		if other := s.attachmentByNamespace(e.NamespaceGUID); other != nil {
			return corrupt("container_attached %s with the namespace GUID of %s", key, other.Handle.Key())
		}
	}
	s.Attachments[key] = &Attachment{Handle: e.Handle, Service: e.Service, IP: e.IP, GlobalIP: e.GlobalIP,
		NetnsInode: e.NetnsInode, DNSServer: e.DNSServer, DNSDomain: e.DNSDomain, NamespaceGUID: e.NamespaceGUID}
	return nil
}

func (s *State) applyContainerDetached(e *ContainerDetached) error {
	key := e.Handle.Key()
	a, ok := s.Attachments[key]
	if !ok || a.Handle.Platform == PlatformGuest {
		return corrupt("container_detached for unknown handle %s", key)
	}
	if err := s.free(a.IP, OwnerContainer, key); err != nil {
		return err
	}
	if a.GlobalIP.IsValid() {
		if err := s.free(a.GlobalIP, OwnerContainer, key); err != nil {
			return err
		}
	}
	delete(s.Attachments, key)
	return nil
}

func (s *State) applyGlobalLeft(e *AttachmentGlobalLeft) error {
	key := e.Handle.Key()
	a, ok := s.Attachments[key]
	if !ok || !a.GlobalIP.IsValid() {
		return corrupt("attachment_global_left for %s without a global address", key)
	}
	if err := s.free(a.GlobalIP, OwnerContainer, key); err != nil {
		return err
	}
	a.GlobalIP = netip.Addr{}
	return nil
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func (s *State) applyGuestAttached(e *GuestAttached) error {
	h := GuestHandle(e.ID)
	key := h.Key()
	if _, dup := s.Attachments[key]; dup {
		return corrupt("guest_attached for attached guest %s", e.ID)
	}
	if err := s.take(e.IP, Owner{Kind: OwnerGuest, Pool: poolSlice, Ref: e.ID}); err != nil {
		return err
	}
	s.Attachments[key] = &Attachment{Handle: h, Service: e.Service, IP: e.IP, PublicKey: e.PublicKey,
		DNSServer: e.DNSServer, DNSDomain: e.DNSDomain}
	return s.putPeer(Scope{}, &Peer{PublicKey: e.PublicKey, AllowedIPs: []netip.Prefix{hostPrefix(e.IP)}, Guest: e.ID})
}

func (s *State) applyGuestKeyRotated(e *GuestKeyRotated) error {
	a, ok := s.Attachments[GuestHandle(e.ID).Key()]
	if !ok || a.PublicKey != e.OldPublicKey {
		return corrupt("guest_key_rotated for unknown guest %s", e.ID)
	}
	p := s.peer(Scope{}, e.OldPublicKey)
	if p == nil {
		return corrupt("guest %s has no peer", e.ID)
	}
	delete(s.Peers[Scope{}.Key()], e.OldPublicKey)
	np := *p
	np.PublicKey = e.PublicKey
	np.ObservedEndpoint = ""
	a.PublicKey = e.PublicKey
	return s.putPeer(Scope{}, &np)
}

func (s *State) applyGuestDetached(e *GuestDetached) error {
	key := GuestHandle(e.ID).Key()
	a, ok := s.Attachments[key]
	if !ok {
		return corrupt("guest_detached for unknown guest %s", e.ID)
	}
	if err := s.free(a.IP, OwnerGuest, e.ID); err != nil {
		return err
	}
	delete(s.Peers[Scope{}.Key()], a.PublicKey)
	delete(s.Attachments, key)
	return nil
}

func (s *State) decideAttach(cfg Config, c Attach) (Decision, error) {
	if err := c.Handle.validate(); err != nil {
		return Decision{}, err
	}
	if err := ValidateLabel("service", c.Service); err != nil {
		return Decision{}, err
	}
	if c.DNSDomain != "" {
		if _, err := NormalizeDNSName("dns_domain", c.DNSDomain); err != nil {
			return Decision{}, err
		}
	}
	switch c.Handle.Platform {
	case PlatformGuest:
		return s.decideAttachGuest(cfg, c)
	case PlatformWindows:
		if cfg.Platform != "windows" {
			return Decision{}, errf("handle.platform", "windows_container attach is only supported on Windows nodes (this node is %s)", cfg.Platform)
		}
		return s.decideAttachWindows(c)
	case PlatformLinuxPID:
		if cfg.Platform != "linux" {
			return Decision{}, errf("handle.platform", "linux_pid attach is only supported on Linux nodes (this node is %s)", cfg.Platform)
		}
		if !c.Proc.Exists {
			return Decision{}, errf("handle.pid", "process %d does not exist", c.Handle.PID)
		}
		if c.Proc.HostNetwork {
			return Decision{}, errf("handle.pid", "process %d uses the node's own network namespace (host networking): there is nothing to attach", c.Handle.PID)
		}
	}
	if _, ok := s.Services[c.Service]; !ok {
		return Decision{}, errf("service", "service %s is not set up on this node (setup_service_overlay first)", c.Service)
	}
	key := c.Handle.Key()
	var evs []Event
	if a, ok := s.Attachments[key]; ok {
		reused := a.NetnsInode != 0 && c.Proc.NetnsInode != 0 && a.NetnsInode != c.Proc.NetnsInode
		if !reused {
			if a.Service != c.Service {
				return Decision{}, errf("service", "%s is already attached to service %s; detach_container first", key, a.Service)
			}
			// A repeat changes nothing, join_global included: the first
			// attach decided the container's legs.
			return Decision{Reply: ReplyAttached{IP: a.IP}}, nil
		}
		// The PID now names another network namespace: the container we
		// attached is gone. Detach it, then attach the new one.
		evs = append(evs, &ContainerDetached{Handle: c.Handle, Reason: fmt.Sprintf("pid %d reused: netns inode %d is now %d", c.Handle.PID, a.NetnsInode, c.Proc.NetnsInode)})
		st := s.Clone()
		if err := st.Apply(evs[0]); err != nil {
			return Decision{}, err
		}
		s = st
	}
	ip, err := s.nextFree("service", servicePool(c.Service), "service "+c.Service+" subnet")
	if err != nil {
		return Decision{}, err
	}
	ev := &ContainerAttached{Handle: c.Handle, Service: c.Service, IP: ip, NetnsInode: c.Proc.NetnsInode,
		DNSServer: c.DNSServer, DNSDomain: c.DNSDomain}
	if c.JoinGlobal && s.Global != nil {
		if ev.GlobalIP, err = s.nextFree("join_global", poolSlice, "node slice"); err != nil {
			return Decision{}, err
		}
	}
	evs = append(evs, ev)
	return Decision{Events: evs, Reply: ReplyAttached{IP: ip}}, nil
}

func (s *State) decideAttachGuest(cfg Config, c Attach) (Decision, error) {
	if s.Global == nil {
		return Decision{}, errf("handle", "guest-managed attach needs the global overlay (setup_global_overlay first)")
	}
	key, err := ParseKey("handle", c.NewGuestKey)
	if err != nil {
		return Decision{}, errf("handle", "no key was generated for the guest: %v", err)
	}
	if err := s.checkNewGuestKey(key, c.Handle.ID); err != nil {
		return Decision{}, err
	}
	if a, ok := s.Attachments[c.Handle.Key()]; ok {
		// The private key was returned once and never stored: a guest asking
		// again gets the same address under a fresh key.
		ev := &GuestKeyRotated{ID: c.Handle.ID, PublicKey: key, OldPublicKey: a.PublicKey}
		na := *a
		na.PublicKey = key
		return Decision{Events: []Event{ev}, Reply: s.guestConfig(cfg, &na, c.NodeAddress)}, nil
	}
	ip, err := s.nextFree("handle", poolSlice, "node slice")
	if err != nil {
		return Decision{}, err
	}
	ev := &GuestAttached{ID: c.Handle.ID, Service: c.Service, IP: ip, PublicKey: key, DNSServer: c.DNSServer, DNSDomain: c.DNSDomain}
	a := &Attachment{Handle: c.Handle, Service: c.Service, IP: ip, PublicKey: key, DNSServer: c.DNSServer, DNSDomain: c.DNSDomain}
	return Decision{Events: []Event{ev}, Reply: s.guestConfig(cfg, a, c.NodeAddress)}, nil
}

// checkNewGuestKey refuses a generated guest key that some key of this
// state already is: the node's, a dedicated service's, or any peer of the
// global scope other than this guest's own (another guest's included). The daemon draws the key at
// random, so this never fires in practice, but a decision that would
// journal an event the state cannot apply must be refused, not taken.
func (s *State) checkNewGuestKey(key, guest string) error {
	if key == s.Node.PublicKey {
		return errf("handle", "the key generated for the guest, %s, is this node's own public key; ask again", key)
	}
	for _, name := range sortedKeys(s.Services) {
		if d := s.Services[name].Dedicated; d != nil && d.PublicKey == key {
			return errf("handle", "the key generated for the guest, %s, is this node's key for service %s; ask again", key, name)
		}
	}
	if p := s.peer(Scope{}, key); p != nil && p.Guest != guest {
		return errf("handle", "the key generated for the guest, %s, is already a peer of the global overlay; ask again", key)
	}
	return nil
}

// guestConfig lists what a guest needs to join: its address within the
// cluster prefix, the node as its first peer (routing the whole cluster),
// then the node's global peers.
func (s *State) guestConfig(cfg Config, a *Attachment, nodeAddr netip.Addr) ReplyGuestConfig {
	g := s.Global
	nodeEndpoint := ""
	if nodeAddr.IsValid() {
		nodeEndpoint = netip.AddrPortFrom(nodeAddr, g.Port).String()
	}
	r := ReplyGuestConfig{
		IP:         a.IP,
		PrefixLen:  uint8(g.ClusterCIDR.Bits()),
		PublicKey:  a.PublicKey,
		ListenPort: g.Port,
		DNSServer:  a.DNSServer,
		DNSDomain:  a.DNSDomain,
	}
	r.Peers = append(r.Peers, PeerSpec{PublicKey: s.Node.PublicKey, Endpoint: nodeEndpoint,
		AllowedIPs: g.ClusterCIDR.String(), Keepalive: cfg.Keepalive})
	peers := s.Peers[Scope{}.Key()]
	for _, k := range sortedKeys(peers) {
		p := peers[k]
		if p.Guest != "" {
			continue
		}
		r.Peers = append(r.Peers, PeerSpec{PublicKey: p.PublicKey, Endpoint: p.Endpoint,
			AllowedIPs: FormatPrefixes(p.AllowedIPs), Keepalive: p.Keepalive})
	}
	return r
}

func (s *State) decideDetach(c Detach) (Decision, error) {
	if err := c.Handle.validate(); err != nil {
		return Decision{}, err
	}
	a, found := s.Attachments[c.Handle.Key()]
	if !found && c.Handle.Platform == PlatformWindows {
		// The reference client detaches a Windows container by the
		// namespace GUID the attach answered, in container_id.
		a = s.attachmentByNamespace(c.Handle.ContainerID)
		found = a != nil
	}
	if !found || (c.IfNetnsInode != 0 && a.NetnsInode != c.IfNetnsInode) {
		return okWith()
	}
	reason := c.Reason
	if reason == "" {
		reason = "detach_container"
	}
	if a.Handle.Platform == PlatformGuest {
		return okWith(&GuestDetached{ID: a.Handle.ID, PublicKey: a.PublicKey, Reason: reason})
	}
	return okWith(&ContainerDetached{Handle: a.Handle, Reason: reason})
}

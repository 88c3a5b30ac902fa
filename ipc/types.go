package ipc

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
)

// Request is one op. Its JSON is the op's fields; the "op" tag is added by
// the frame encoder.
type Request interface{ Op() string }

// Response is one result; the "result" tag is added by the frame encoder.
type Response interface{ Result() string }

// Event is an unsolicited server push; the "event" tag is added by the
// frame encoder.
type Event interface{ EventName() string }

// Field conventions for the strict decoder (see decode.go): a non-pointer
// field is required and may not be null; a pointer field is optional and
// null means absent; `ovl:"default"` marks a field that may be absent but
// may not be null.

type (
	SetLocalNodeID struct {
		NodeID uint64 `json:"node_id"`
	}
	SetLocalWgPubkey struct {
		Pubkey string `json:"pubkey"`
	}
	SetupGlobalOverlay struct {
		Deployment  string  `json:"deployment"`
		InstanceID  string  `json:"instance_id"`
		ClusterCIDR string  `json:"cluster_cidr"`
		SliceCIDR   *string `json:"slice_cidr,omitempty"`
		WgPort      uint16  `json:"wg_port"`
		NatEnabled  bool    `json:"nat_enabled"`
	}
	TeardownGlobalOverlay struct{}
	SetupServiceOverlay   struct {
		Service string `json:"service"`
		Mode    Mode   `json:"mode"`
	}
	TeardownServiceOverlay struct {
		Service string `json:"service"`
	}
	AllocateIP struct {
		Service    string `json:"service"`
		JoinGlobal bool   `json:"join_global"`
	}
	ReleaseIP struct {
		IP Addr `json:"ip"`
	}
	AttachContainer struct {
		Handle     AttachHandle `json:"handle"`
		Service    string       `json:"service"`
		JoinGlobal bool         `json:"join_global"`
		DNSServer  *Addr        `json:"dns_server,omitempty"`
		DNSDomain  *string      `json:"dns_domain,omitempty"`
	}
	DetachContainer struct {
		Handle AttachHandle `json:"handle"`
	}
	// AddPeer carries the peer's fields inline next to op and scope.
	AddPeer struct {
		PeerSpec
		Scope *PeerScope `json:"scope,omitempty" ovl:"default"`
	}
	RemovePeer struct {
		Pubkey string     `json:"pubkey"`
		Scope  *PeerScope `json:"scope,omitempty" ovl:"default"`
	}
	AddAllowedIP struct {
		Pubkey string     `json:"pubkey"`
		CIDR   string     `json:"cidr"`
		Scope  *PeerScope `json:"scope,omitempty" ovl:"default"`
	}
	RemoveAllowedIP struct {
		Pubkey string     `json:"pubkey"`
		CIDR   string     `json:"cidr"`
		Scope  *PeerScope `json:"scope,omitempty" ovl:"default"`
	}
	RegisterDNS struct {
		Name string `json:"name"`
		IP   Addr   `json:"ip"`
	}
	UnregisterDNS struct {
		Name string `json:"name"`
	}
	Status   struct{}
	NatTick  struct{}
	Shutdown struct{}

	// JournalList (extension) reads committed events after AfterSeq.
	JournalList struct {
		AfterSeq uint64  `json:"after_seq"`
		Limit    *uint32 `json:"limit,omitempty"`
	}
	// JournalVerify (extension) verifies the hash chain and the replay.
	// With Archives (a directory on the daemon's host; CMP), a compacted
	// journal's archives are verified too: the chain from event 1 and
	// their replay against the checkpoint.
	JournalVerify struct {
		Archives *string `json:"archives,omitempty"`
	}
	// StateDump (extension) returns the projected state as canonical JSON,
	// in parts that fit a frame. Without DumpID the daemon takes the state
	// at the request's turn and answers its first part; the following
	// requests name the dump and the offset of the next part.
	StateDump struct {
		DumpID *uint64 `json:"dump_id,omitempty"`
		Offset *uint64 `json:"offset,omitempty"`
		// At (issue 10) asks for the state after an earlier point of the
		// journal (a sequence, an RFC 3339 time or a ULID) instead of now.
		At *string `json:"at,omitempty"`
	}
)

// Queries (issue 10, the lead's block): overlayctl's journal queries run by
// the daemon with its indexes while it holds the journal.
type (
	// JournalQuery lists events matching every given filter (see
	// cmd/internal/audit.Filter), a page at a time: the answer's Next is
	// the cursor of the following page (absent at the end).
	JournalQuery struct {
		Types   []string `json:"types,omitempty" ovl:"default"`
		OpName  *string  `json:"op_name,omitempty"`
		Since   *string  `json:"since,omitempty"`
		Until   *string  `json:"until,omitempty"`
		Service *string  `json:"service,omitempty"`
		IP      *string  `json:"ip,omitempty"`
		CIDR    *string  `json:"cidr,omitempty"`
		Peer    *string  `json:"peer,omitempty"`
		PID     *uint32  `json:"pid,omitempty"`
		Cause   *string  `json:"cause,omitempty"`
		Object  *string  `json:"object,omitempty"`
		Ref     *string  `json:"ref,omitempty"`
		Reverse bool     `json:"reverse,omitempty" ovl:"default"`
		Limit   *uint32  `json:"limit,omitempty"`
		Cursor  *uint64  `json:"cursor,omitempty"`
	}
	// JournalStats counts the journal's events and bytes by type, op and
	// day.
	JournalStats struct{}
)

func (JournalQuery) Op() string { return "journal_query" }
func (JournalStats) Op() string { return "journal_stats" }

func init() {
	for _, f := range []func() Request{
		func() Request { return &JournalQuery{} },
		func() Request { return &JournalStats{} },
	} {
		requestTypes[f().Op()] = f
	}
	for _, f := range []func() Response{
		func() Response { return &JournalPage{} },
		func() Response { return &JournalStatsResult{} },
	} {
		responseTypes[f().Result()] = f
	}
}

type (
	// JournalPage answers journal_query.
	JournalPage struct {
		HeadSeq uint64         `json:"head_seq"`
		Events  []JournalEvent `json:"events"`
		Next    *uint64        `json:"next,omitempty"`
		// How says how the daemon found them: "index" or "scan".
		How string `json:"how,omitempty" ovl:"default"`
	}
	// JournalStatsResult answers journal_stats: the JSON of
	// cmd/internal/audit.Stats.
	JournalStatsResult struct {
		Stats json.RawMessage `json:"stats"`
	}
)

func (JournalPage) Result() string        { return "journal_page" }
func (JournalStatsResult) Result() string { return "journal_stats" }

func (SetLocalNodeID) Op() string         { return "set_local_node_id" }
func (SetLocalWgPubkey) Op() string       { return "set_local_wg_pubkey" }
func (SetupGlobalOverlay) Op() string     { return "setup_global_overlay" }
func (TeardownGlobalOverlay) Op() string  { return "teardown_global_overlay" }
func (SetupServiceOverlay) Op() string    { return "setup_service_overlay" }
func (TeardownServiceOverlay) Op() string { return "teardown_service_overlay" }
func (AllocateIP) Op() string             { return "allocate_ip" }
func (ReleaseIP) Op() string              { return "release_ip" }
func (AttachContainer) Op() string        { return "attach_container" }
func (DetachContainer) Op() string        { return "detach_container" }
func (AddPeer) Op() string                { return "add_peer" }
func (RemovePeer) Op() string             { return "remove_peer" }
func (AddAllowedIP) Op() string           { return "add_allowed_ip" }
func (RemoveAllowedIP) Op() string        { return "remove_allowed_ip" }
func (RegisterDNS) Op() string            { return "register_dns" }
func (UnregisterDNS) Op() string          { return "unregister_dns" }
func (Status) Op() string                 { return "status" }
func (NatTick) Op() string                { return "nat_tick" }
func (Shutdown) Op() string               { return "shutdown" }
func (JournalList) Op() string            { return "journal_list" }
func (JournalVerify) Op() string          { return "journal_verify" }
func (StateDump) Op() string              { return "state_dump" }

var requestTypes = map[string]func() Request{}

func init() {
	for _, f := range []func() Request{
		func() Request { return &SetLocalNodeID{} },
		func() Request { return &SetLocalWgPubkey{} },
		func() Request { return &SetupGlobalOverlay{} },
		func() Request { return &TeardownGlobalOverlay{} },
		func() Request { return &SetupServiceOverlay{} },
		func() Request { return &TeardownServiceOverlay{} },
		func() Request { return &AllocateIP{} },
		func() Request { return &ReleaseIP{} },
		func() Request { return &AttachContainer{} },
		func() Request { return &DetachContainer{} },
		func() Request { return &AddPeer{} },
		func() Request { return &RemovePeer{} },
		func() Request { return &AddAllowedIP{} },
		func() Request { return &RemoveAllowedIP{} },
		func() Request { return &RegisterDNS{} },
		func() Request { return &UnregisterDNS{} },
		func() Request { return &Status{} },
		func() Request { return &NatTick{} },
		func() Request { return &Shutdown{} },
		func() Request { return &JournalList{} },
		func() Request { return &JournalVerify{} },
		func() Request { return &StateDump{} },
	} {
		requestTypes[f().Op()] = f
	}
}

// Mode is a service overlay mode: "auto", "shared" or "dedicated".
type Mode string

const (
	ModeAuto      Mode = "auto"
	ModeShared    Mode = "shared"
	ModeDedicated Mode = "dedicated"
)

func (m *Mode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected one of \"auto\", \"shared\", \"dedicated\", got %s", b)
	}
	switch Mode(s) {
	case ModeAuto, ModeShared, ModeDedicated:
		*m = Mode(s)
		return nil
	}
	return fmt.Errorf("%q is not one of auto, shared, dedicated", s)
}

// PeerSpec is a WireGuard peer as the wire carries it. AllowedIPs is a
// comma-separated CIDR list.
type PeerSpec struct {
	PublicKey               string `json:"public_key"`
	Endpoint                string `json:"endpoint"`
	AllowedIPs              string `json:"allowed_ips"`
	PersistentKeepaliveSecs uint64 `json:"persistent_keepalive_secs"`
}

func (p *PeerSpec) UnmarshalJSON(b []byte) error {
	type plain PeerSpec
	return decodeObject(b, (*plain)(p))
}

// PeerScope selects a device: global (Service empty) or a dedicated service.
type PeerScope struct {
	Service string
}

func (s PeerScope) MarshalJSON() ([]byte, error) {
	if s.Service == "" {
		return []byte(`{"scope":"global"}`), nil
	}
	b, _ := marshalNoEscape(s.Service)
	return append(append([]byte(`{"scope":"service","service":`), b...), '}'), nil
}

func (s *PeerScope) UnmarshalJSON(b []byte) error {
	obj, err := parseObject(b, "")
	if err != nil {
		return err
	}
	tag, err := obj.tag("scope")
	if err != nil {
		return err
	}
	switch tag {
	case "global":
		*s = PeerScope{}
		return nil
	case "service":
		var v struct {
			Service string `json:"service"`
		}
		if err := decodeFields(obj, &v); err != nil {
			return err
		}
		*s = PeerScope{Service: v.Service}
		return nil
	}
	return fmt.Errorf("unknown scope %q (expected global or service)", tag)
}

// AttachHandle identifies a workload: linux_pid {pid}, windows_container
// {container_id, ip?} or guest_managed {id}.
type AttachHandle struct {
	Platform    string
	PID         uint32
	ContainerID string
	IP          *Addr
	ID          string
}

const (
	PlatformLinuxPID = "linux_pid"
	PlatformWindows  = "windows_container"
	PlatformGuest    = "guest_managed"
)

func (h AttachHandle) MarshalJSON() ([]byte, error) {
	switch h.Platform {
	case PlatformLinuxPID:
		return tagged("platform", h.Platform, struct {
			PID uint32 `json:"pid"`
		}{h.PID})
	case PlatformWindows:
		return tagged("platform", h.Platform, struct {
			ContainerID string `json:"container_id"`
			IP          *Addr  `json:"ip,omitempty"`
		}{h.ContainerID, h.IP})
	case PlatformGuest:
		return tagged("platform", h.Platform, struct {
			ID string `json:"id"`
		}{h.ID})
	}
	return nil, fmt.Errorf("ipc: unknown handle platform %q", h.Platform)
}

func (h *AttachHandle) UnmarshalJSON(b []byte) error {
	obj, err := parseObject(b, "")
	if err != nil {
		return err
	}
	tag, err := obj.tag("platform")
	if err != nil {
		return err
	}
	switch tag {
	case PlatformLinuxPID:
		var v struct {
			PID uint32 `json:"pid"`
		}
		err = decodeFields(obj, &v)
		*h = AttachHandle{Platform: tag, PID: v.PID}
	case PlatformWindows:
		var v struct {
			ContainerID string `json:"container_id"`
			IP          *Addr  `json:"ip"`
		}
		err = decodeFields(obj, &v)
		*h = AttachHandle{Platform: tag, ContainerID: v.ContainerID, IP: v.IP}
	case PlatformGuest:
		var v struct {
			ID string `json:"id"`
		}
		err = decodeFields(obj, &v)
		*h = AttachHandle{Platform: tag, ID: v.ID}
	default:
		return fmt.Errorf("unknown platform %q (expected linux_pid, windows_container or guest_managed)", tag)
	}
	return err
}

// Addr is an IP address in canonical string form.
type Addr struct{ netip.Addr }

// AddrOf wraps a netip.Addr.
func AddrOf(a netip.Addr) Addr { return Addr{a} }

// AddrPtr wraps a netip.Addr, or returns nil for the zero Addr.
func AddrPtr(a netip.Addr) *Addr {
	if !a.IsValid() {
		return nil
	}
	return &Addr{a}
}

func (a Addr) MarshalJSON() ([]byte, error) {
	if !a.IsValid() {
		return nil, fmt.Errorf("ipc: invalid IP address")
	}
	return []byte(strconv.Quote(a.String())), nil
}

func (a *Addr) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected an IP address string, got %s", b)
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("invalid IP address %q: %v", s, err)
	}
	if ip.Zone() != "" {
		return fmt.Errorf("invalid IP address %q: zones are not allowed", s)
	}
	a.Addr = ip
	return nil
}

// Responses.
type (
	OK       struct{}
	IPResult struct {
		IP Addr `json:"ip"`
	}
	Attached struct {
		IP            Addr    `json:"ip"`
		NamespaceGUID *string `json:"namespace_guid,omitempty"`
	}
	GuestConfig struct {
		OverlayIP  Addr       `json:"overlay_ip"`
		PrefixLen  uint8      `json:"prefix_len"`
		PrivateKey string     `json:"private_key"`
		PublicKey  string     `json:"public_key"`
		ListenPort uint16     `json:"listen_port"`
		Peers      []PeerSpec `json:"peers"`
		DNSServer  *Addr      `json:"dns_server,omitempty"`
		DNSDomain  *string    `json:"dns_domain,omitempty"`
	}
	BridgeName struct {
		Name string `json:"name"`
	}
	StatusResult struct {
		Interface         *string                  `json:"interface,omitempty"`
		NodeIP            *Addr                    `json:"node_ip,omitempty"`
		PublicKey         *string                  `json:"public_key,omitempty"`
		OverlayCIDR       *string                  `json:"overlay_cidr,omitempty"`
		SliceCIDR         *string                  `json:"slice_cidr,omitempty"`
		PeerCount         uint32                   `json:"peer_count"`
		ServiceCount      uint32                   `json:"service_count"`
		Peers             []PeerStatus             `json:"peers,omitempty" ovl:"default"`
		DedicatedServices []DedicatedServiceStatus `json:"dedicated_services,omitempty" ovl:"default"`
		// Extensions (a reference decoder ignores unknown fields):
		// Degraded is set while the journal refuses writes (reads are
		// served, the data plane keeps forwarding), since DegradedSince
		// (Unix seconds); Problems lists what is wrong now, each kept
		// until it is fixed.
		Degraded      bool      `json:"degraded,omitempty" ovl:"default"`
		DegradedSince int64     `json:"degraded_since_unix_secs,omitempty" ovl:"default"`
		Problems      []Problem `json:"problems,omitempty" ovl:"default"`
	}
	ServiceOverlay struct {
		Name        string  `json:"name"`
		Mode        Mode    `json:"mode"`
		WgPublicKey *string `json:"wg_public_key,omitempty"`
		WgPort      *uint16 `json:"wg_port,omitempty"`
		OverlayIP   *Addr   `json:"overlay_ip,omitempty"`
		Subnet      *string `json:"subnet,omitempty"`
	}
	Err struct {
		Message string `json:"message"`
	}

	// JournalEvents (extension) answers journal_list.
	JournalEvents struct {
		HeadSeq uint64         `json:"head_seq"`
		Events  []JournalEvent `json:"events"`
	}
	// JournalReport (extension) answers journal_verify.
	JournalReport struct {
		OK       bool            `json:"ok"`
		Report   json.RawMessage `json:"report"`
		Problems []string        `json:"problems,omitempty" ovl:"default"`
	}
	// StateResult (extension) answers state_dump: Part is the slice
	// [Offset, Offset+len(Part)) of a Total-byte JSON document, the state
	// after event Seq.
	StateResult struct {
		DumpID uint64 `json:"dump_id"`
		Seq    uint64 `json:"seq"`
		Total  uint64 `json:"total"`
		Offset uint64 `json:"offset"`
		Part   string `json:"part"`
	}
)

// JournalEvent is one journal entry as journal_list returns it.
type JournalEvent struct {
	Seq       uint64  `json:"seq"`
	ID        string  `json:"id"`
	Time      string  `json:"time"`
	Type      string  `json:"type"`
	Version   uint16  `json:"version"`
	Op        string  `json:"op"`
	RequestID uint64  `json:"request_id"`
	PeerUID   *uint32 `json:"peer_uid,omitempty"`
	PeerPID   *uint32 `json:"peer_pid,omitempty"`
	// Exe is the caller's executable (issue 10; absent in older events).
	Exe      string          `json:"exe,omitempty" ovl:"default"`
	Payload  json.RawMessage `json:"payload"`
	Hash     string          `json:"hash"`
	PrevHash string          `json:"prev_hash,omitempty" ovl:"default"`
}

// Problem is one thing wrong with the node now (status extension):
// Resource names what is affected ("journal", "global", "service/web",
// "attachment/linux_pid:42", "socket", …), Error says why, and
// SinceUnixSecs since when.
type Problem struct {
	Resource      string `json:"resource"`
	Error         string `json:"error"`
	SinceUnixSecs int64  `json:"since_unix_secs"`
}

func (p *Problem) UnmarshalJSON(b []byte) error {
	type plain Problem
	return decodeObject(b, (*plain)(p))
}

// PeerStatus is a peer in status.
type PeerStatus struct {
	PublicKey             string `json:"public_key"`
	Endpoint              string `json:"endpoint"`
	AllowedIPs            string `json:"allowed_ips"`
	LastHandshakeUnixSecs int64  `json:"last_handshake_unix_secs"`
	// Extensions (issue 10, CLI slice; a reference decoder ignores
	// unknown fields), from the device's counters as `wg show` prints
	// them: bytes received from and sent to the peer, and Health:
	// "healthy" (a handshake at most the daemon's --peer-unhealthy-after
	// old), "unhealthy" (older, or none), "" when the device cannot be
	// read.
	RxBytes uint64 `json:"rx_bytes,omitempty" ovl:"default"`
	TxBytes uint64 `json:"tx_bytes,omitempty" ovl:"default"`
	Health  string `json:"health,omitempty" ovl:"default"`
}

// Peer health values (PeerStatus.Health).
const (
	PeerHealthy   = "healthy"
	PeerUnhealthy = "unhealthy"
)

func (p *PeerStatus) UnmarshalJSON(b []byte) error {
	type plain PeerStatus
	return decodeObject(b, (*plain)(p))
}

// DedicatedServiceStatus is a dedicated service device in status.
type DedicatedServiceStatus struct {
	Service    string `json:"service"`
	Interface  string `json:"interface"`
	PublicKey  string `json:"public_key"`
	ListenPort uint16 `json:"listen_port"`
	OverlayIP  Addr   `json:"overlay_ip"`
	Subnet     string `json:"subnet"`
	PeerCount  uint32 `json:"peer_count"`
}

func (d *DedicatedServiceStatus) UnmarshalJSON(b []byte) error {
	type plain DedicatedServiceStatus
	return decodeObject(b, (*plain)(d))
}

func (OK) Result() string             { return "ok" }
func (IPResult) Result() string       { return "ip" }
func (Attached) Result() string       { return "attached" }
func (GuestConfig) Result() string    { return "guest_config" }
func (BridgeName) Result() string     { return "bridge_name" }
func (StatusResult) Result() string   { return "status" }
func (ServiceOverlay) Result() string { return "service_overlay" }
func (Err) Result() string            { return "err" }
func (JournalEvents) Result() string  { return "journal_events" }
func (JournalReport) Result() string  { return "journal_report" }
func (StateResult) Result() string    { return "state" }

func (e Err) Error() string { return e.Message }

var responseTypes = map[string]func() Response{}

func init() {
	for _, f := range []func() Response{
		func() Response { return &OK{} },
		func() Response { return &IPResult{} },
		func() Response { return &Attached{} },
		func() Response { return &GuestConfig{} },
		func() Response { return &BridgeName{} },
		func() Response { return &StatusResult{} },
		func() Response { return &ServiceOverlay{} },
		func() Response { return &Err{} },
		func() Response { return &JournalEvents{} },
		func() Response { return &JournalReport{} },
		func() Response { return &StateResult{} },
	} {
		responseTypes[f().Result()] = f
	}
}

// Events.
type (
	PeerHealthChanged struct {
		Pubkey  string `json:"pubkey"`
		Healthy bool   `json:"healthy"`
	}
	NatEndpointChanged struct {
		Pubkey   string `json:"pubkey"`
		Endpoint string `json:"endpoint"`
	}
)

func (PeerHealthChanged) EventName() string  { return "peer_health_changed" }
func (NatEndpointChanged) EventName() string { return "nat_endpoint_changed" }

var eventTypes = map[string]func() Event{
	"peer_health_changed":  func() Event { return &PeerHealthChanged{} },
	"nat_endpoint_changed": func() Event { return &NatEndpointChanged{} },
}

// LIVE slice (issue 10): journal_follow and journal_backup.
type (
	// JournalFollow (extension) asks the daemon to push, on this
	// connection, every committed event after AfterSeq, in sequence order,
	// as journal_event events: those already in the journal first, then
	// each one as it commits. Answered Following.
	JournalFollow struct {
		AfterSeq uint64 `json:"after_seq"`
	}
	// Following (extension) answers journal_follow: the journal's head
	// when the follow started. The events follow the answer.
	Following struct {
		HeadSeq uint64 `json:"head_seq"`
	}
	// JournalFollowEvent (extension) is one committed event pushed to a
	// connection that sent journal_follow.
	JournalFollowEvent struct {
		Entry JournalEvent `json:"entry"`
	}
	// JournalBackup (extension) takes a consistent copy of the journal
	// file (without BackupID) and answers its first part; the following
	// requests name the backup and the offset of the next part.
	JournalBackup struct {
		BackupID *uint64 `json:"backup_id,omitempty"`
		Offset   *uint64 `json:"offset,omitempty"`
	}
	// BackupResult (extension) answers journal_backup: Part is the slice
	// [Offset, Offset+len(Part)) of a Size-byte copy of the journal file
	// whose SHA-256 is SHA256 (hex) and whose last event is HeadSeq (hash
	// HeadHash, hex) of journal JournalID.
	BackupResult struct {
		BackupID  uint64 `json:"backup_id"`
		JournalID string `json:"journal_id"`
		HeadSeq   uint64 `json:"head_seq"`
		HeadHash  string `json:"head_hash"`
		Size      uint64 `json:"size"`
		SHA256    string `json:"sha256"`
		Offset    uint64 `json:"offset"`
		Part      []byte `json:"part"`
	}
)

func (JournalFollow) Op() string             { return "journal_follow" }
func (JournalBackup) Op() string             { return "journal_backup" }
func (Following) Result() string             { return "following" }
func (BackupResult) Result() string          { return "backup" }
func (JournalFollowEvent) EventName() string { return "journal_event" }

func init() {
	requestTypes["journal_follow"] = func() Request { return &JournalFollow{} }
	requestTypes["journal_backup"] = func() Request { return &JournalBackup{} }
	responseTypes["following"] = func() Response { return &Following{} }
	responseTypes["backup"] = func() Response { return &BackupResult{} }
	eventTypes["journal_event"] = func() Event { return &JournalFollowEvent{} }
}

// Journal compaction (issue 10, CMP slice): the journal_compact extension
// op and its answer.
type (
	// JournalCompact (extension) seals the events before BeforeSeq, or
	// before BeforeTime (RFC 3339), into an archive file and replaces them
	// in the journal by a checkpoint. Exactly one of the two is given.
	JournalCompact struct {
		BeforeSeq  *uint64 `json:"before_seq,omitempty"`
		BeforeTime *string `json:"before_time,omitempty"`
	}
	// JournalCompacted (extension) answers journal_compact.
	JournalCompacted struct {
		// Archive is the archive file's path; CheckpointSeq the last
		// archived event (the journal holds CheckpointSeq+1..HeadSeq).
		Archive       string `json:"archive"`
		FirstSeq      uint64 `json:"first_seq"`
		CheckpointSeq uint64 `json:"checkpoint_seq"`
		Events        uint64 `json:"events"`
		HeadSeq       uint64 `json:"head_seq"`
		ArchiveBytes  int64  `json:"archive_bytes"`
		BytesBefore   int64  `json:"bytes_before"`
		BytesAfter    int64  `json:"bytes_after"`
		// TookMS is the whole compaction; HeldMS the part during which
		// commands waited (the rewrite and the swap of the file).
		TookMS float64 `json:"took_ms"`
		HeldMS float64 `json:"held_ms"`
	}
)

func (JournalCompact) Op() string       { return "journal_compact" }
func (JournalCompacted) Result() string { return "journal_compacted" }

func init() {
	requestTypes[JournalCompact{}.Op()] = func() Request { return &JournalCompact{} }
	responseTypes[JournalCompacted{}.Result()] = func() Response { return &JournalCompacted{} }
}

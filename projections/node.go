package projections

import "strconv"

// Node is this node's identity.
type Node struct {
	// ID is the cluster's id for this node (set_local_node_id); 0 = unset.
	ID uint64 `json:"id,omitempty"`
	// PublicKey is the daemon's own WireGuard public key: the one peers must
	// use and status reports. The private key never enters the state.
	PublicKey string `json:"public_key,omitempty"`
	// Announced is the key the orchestrator says this node has
	// (set_local_wg_pubkey); it may differ from PublicKey.
	Announced string `json:"announced_key,omitempty"`
}

type (
	NodeIDSet struct {
		NodeID uint64 `json:"node_id"`
	}
	NodeKeyAnnounced struct {
		PublicKey string `json:"public_key"`
	}
	NodeIdentitySet struct {
		PublicKey string `json:"public_key"`
		Source    string `json:"source"`
	}
)

func (*NodeIDSet) EventType() string           { return "node_id_set" }
func (*NodeIDSet) EventVersion() uint16        { return 1 }
func (*NodeKeyAnnounced) EventType() string    { return "node_key_announced" }
func (*NodeKeyAnnounced) EventVersion() uint16 { return 1 }
func (*NodeIdentitySet) EventType() string     { return "node_identity_set" }
func (*NodeIdentitySet) EventVersion() uint16  { return 1 }

// NodeKey is the key this node hashes to derive its slice and service
// subnets: the node id in decimal when set, else its own public key.
func (s *State) NodeKey() string {
	if s.Node.ID != 0 {
		return strconv.FormatUint(s.Node.ID, 10)
	}
	return s.Node.PublicKey
}

func (s *State) decideSetNodeID(c SetNodeID) (Decision, error) {
	if c.NodeID == s.Node.ID {
		return okWith()
	}
	return okWith(&NodeIDSet{NodeID: c.NodeID})
}

func (s *State) decideAnnounceKey(c AnnounceKey) (Decision, error) {
	k, err := ParseKey("pubkey", c.PublicKey)
	if err != nil {
		return Decision{}, err
	}
	if k == s.Node.Announced {
		return okWith()
	}
	return okWith(&NodeKeyAnnounced{PublicKey: k})
}

func (s *State) decideNodeIdentity(c SetNodeIdentity) (Decision, error) {
	k, err := ParseKey("public_key", c.PublicKey)
	if err != nil {
		return Decision{}, err
	}
	if k == s.Node.PublicKey {
		return okWith()
	}
	return okWith(&NodeIdentitySet{PublicKey: k, Source: c.Source})
}

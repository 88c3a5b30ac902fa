//go:build linux

package netlab

import (
	"context"
	"fmt"

	"github.com/zlayer/overlayd/ipc"
)

// Port is the WireGuard port every lab node uses for the global overlay.
const Port = 51820

// NodeInfo is what the orchestrator learns about a node.
type NodeInfo struct {
	PublicKey string
	NodeIP    string
	Slice     string
	Device    string
}

// Setup plays the orchestrator's part for one node: node id i+1, the
// global overlay (cluster Lab.Cluster, default 10.200.0.0/16, slice derived
// by the daemon), and returns what status reports.
func (n *Node) Setup(ctx context.Context, c *ipc.Client) (NodeInfo, error) {
	if _, err := c.Call(ctx, ipc.SetLocalNodeID{NodeID: uint64(n.Index + 1)}); err != nil {
		return NodeInfo{}, err
	}
	cluster := n.Lab.Cluster
	if cluster == "" {
		cluster = "10.200.0.0/16"
	}
	r, err := c.Call(ctx, ipc.SetupGlobalOverlay{Deployment: "lab", InstanceID: "1", ClusterCIDR: cluster, WgPort: Port})
	if err != nil {
		return NodeInfo{}, err
	}
	st, err := c.Call(ctx, ipc.Status{})
	if err != nil {
		return NodeInfo{}, err
	}
	s := st.(ipc.StatusResult)
	return NodeInfo{PublicKey: *s.PublicKey, NodeIP: s.NodeIP.String(), Slice: *s.SliceCIDR, Device: r.(ipc.BridgeName).Name}, nil
}

// Mesh starts every node's daemon (if not running), sets each one up and
// adds every other node as a peer routing its slice, keepalive keepalive
// seconds. It returns the nodes' infos.
func (l *Lab) Mesh(ctx context.Context, keepalive uint64) ([]NodeInfo, error) {
	infos := make([]NodeInfo, len(l.Nodes))
	for i, nd := range l.Nodes {
		if nd.PID() == 0 {
			if err := nd.Start(); err != nil {
				return nil, err
			}
		}
		c, err := nd.Client(nil)
		if err != nil {
			return nil, err
		}
		infos[i], err = nd.Setup(ctx, c)
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	for i, nd := range l.Nodes {
		c, err := nd.Client(nil)
		if err != nil {
			return nil, err
		}
		for j, other := range l.Nodes {
			if i == j {
				continue
			}
			_, err := c.Call(ctx, ipc.AddPeer{PeerSpec: ipc.PeerSpec{PublicKey: infos[j].PublicKey,
				Endpoint: fmt.Sprintf("%s:%d", other.Underlay, Port), AllowedIPs: infos[j].Slice, PersistentKeepaliveSecs: keepalive}})
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("node %d add_peer %d: %w", i, j, err)
			}
		}
		c.Close()
	}
	return infos, nil
}

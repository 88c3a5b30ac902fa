package bridge

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/zlayer/overlayd/projections"
)

// Bridge is the desired state of one service bridge.
type Bridge struct {
	Service string
	Name    string
	Gateway netip.Prefix // gateway/subnet prefix
	MAC     net.HardwareAddr
}

// Attachment is the desired wiring of one linux_pid container.
type Attachment struct {
	Key        string // handle key, e.g. linux_pid:4242
	PID        uint32
	NetnsInode uint64 // 0: not known, not checked
	Service    string
	Bridge     string
	IP         netip.Prefix // eth0: service address/subnet prefix
	Gateway    netip.Addr
	GlobalIP   netip.Addr   // eth1 when valid
	Cluster    netip.Prefix // routed through eth1
	NodeIP     netip.Addr   // source of the host route to eth1
}

// Leg names a veth pair of an attachment: "s" (service, eth0) or "g"
// (global, eth1).
type Leg string

const (
	LegService Leg = "s"
	LegGlobal  Leg = "g"
)

// HostName is the host end's name of a leg: "zv" + 8 hex digits of a hash
// of the handle and the namespace inode + the leg. The hash changes with the
// inode, so a reused PID in another namespace gets other links.
func (a *Attachment) HostName(leg Leg) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", a.Key, a.NetnsInode)
	return fmt.Sprintf("zv%08x%s", h.Sum32(), leg)
}

// legIP is a leg's address in the container: the service address on eth0,
// the global address as a host prefix on eth1.
func (a *Attachment) legIP(leg Leg) netip.Prefix {
	if leg == LegGlobal {
		return netip.PrefixFrom(a.GlobalIP, a.GlobalIP.BitLen())
	}
	return a.IP
}

// isHostName reports whether name has the form HostName gives.
func isHostName(name string) bool {
	if len(name) != 11 || name[:2] != "zv" || (name[10] != 's' && name[10] != 'g') {
		return false
	}
	for _, c := range name[2:10] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ID identifies one incarnation of an attachment (handle and namespace).
func (a *Attachment) ID() string { return fmt.Sprintf("%s/%d", a.Key, a.NetnsInode) }

// bridgeMAC is a fixed, locally administered MAC derived from the name, so
// the bridge keeps one address whatever ports come and go.
func bridgeMAC(name string) net.HardwareAddr {
	h := fnv.New32a()
	h.Write([]byte(name))
	mac := make(net.HardwareAddr, 6)
	mac[0], mac[1] = 0x02, 0x5a
	binary.BigEndian.PutUint32(mac[2:], h.Sum32())
	return mac
}

// Desired derives the bridges and container wiring from the state.
func Desired(st *projections.State) ([]Bridge, []Attachment) {
	var bridges []Bridge
	for _, name := range sortedServices(st) {
		bridges = append(bridges, *bridgeOf(st, name))
	}
	var atts []Attachment
	for _, a := range st.Attachments {
		if at, ok := attachmentOf(st, a); ok {
			atts = append(atts, at)
		}
	}
	sort.Slice(atts, func(i, j int) bool { return atts[i].Key < atts[j].Key })
	return bridges, atts
}

// bridgeOf is the desired bridge of a service; nil when there is no such
// service.
func bridgeOf(st *projections.State, service string) *Bridge {
	sv := st.Services[service]
	if sv == nil {
		return nil
	}
	return &Bridge{Service: service, Name: sv.Bridge, Gateway: netip.PrefixFrom(sv.Gateway, sv.Subnet.Bits()), MAC: bridgeMAC(sv.Bridge)}
}

// bridgesOf is the desired bridge of every attachment a change wires, by
// service (an attach finding its bridge deleted makes it again).
func bridgesOf(st *projections.State, chs []Change) map[string]*Bridge {
	out := map[string]*Bridge{}
	for _, ch := range chs {
		if ch.Att != nil && out[ch.Att.Service] == nil {
			if b := bridgeOf(st, ch.Att.Service); b != nil {
				out[ch.Att.Service] = b
			}
		}
	}
	return out
}

func attachmentOf(st *projections.State, a *projections.Attachment) (Attachment, bool) {
	if a.Handle.Platform != projections.PlatformLinuxPID {
		return Attachment{}, false
	}
	sv := st.Services[a.Service]
	if sv == nil {
		return Attachment{}, false
	}
	at := Attachment{Key: a.Handle.Key(), PID: a.Handle.PID, NetnsInode: a.NetnsInode, Service: a.Service,
		Bridge: sv.Bridge, IP: netip.PrefixFrom(a.IP, sv.Subnet.Bits()), Gateway: sv.Gateway}
	if a.GlobalIP.IsValid() && st.Global != nil {
		at.GlobalIP, at.Cluster, at.NodeIP = a.GlobalIP, st.Global.ClusterCIDR, st.Global.NodeIP
	}
	return at, true
}

// Change is the desired state of what one change key names: a bridge
// (Service set; Bridge nil when gone) or an attachment (Key set; Att nil
// when gone).
type Change struct {
	Service string
	Bridge  *Bridge
	Key     string
	Att     *Attachment
}

// Changes resolves change keys against the state. ok is false when a key
// needs a full pass.
func Changes(st *projections.State, keys []string) (out []Change, ok bool) {
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, "service/"):
			name := strings.TrimPrefix(k, "service/")
			ch := Change{Service: name, Bridge: bridgeOf(st, name)}
			out = append(out, ch)
		case strings.HasPrefix(k, "attachment/"):
			key := strings.TrimPrefix(k, "attachment/")
			if !strings.HasPrefix(key, projections.PlatformLinuxPID+":") {
				continue
			}
			ch := Change{Key: key}
			if a := st.Attachments[key]; a != nil {
				if at, ok := attachmentOf(st, a); ok {
					ch.Att = &at
				}
			}
			out = append(out, ch)
		case k == "global":
			return nil, false // node address or cluster changed: eth1 routes
		}
	}
	// Bridges before attachments, so an attachment finds its bridge.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Service != "" && out[j].Service == "" })
	return out, true
}

// Relevant reports whether a change key concerns bridges or attachments.
func Relevant(key string) bool {
	return strings.HasPrefix(key, "service/") || strings.HasPrefix(key, "attachment/"+projections.PlatformLinuxPID+":") || key == "global"
}

func sortedServices(st *projections.State) []string {
	return slices.Sorted(maps.Keys(st.Services))
}

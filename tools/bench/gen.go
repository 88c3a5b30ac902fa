//go:build linux

package main

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// newGenerator prepares dataDir for a generated journal: it writes the
// node key file (so that the daemon boots on the journal unchanged) and
// journals the node's identity, a global overlay and eight services.
func newGenerator(dataDir string) (*generator, error) {
	dir := filepath.Join(dataDir, "overlayd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "wg-private.key"), []byte(key.String()+"\n"), 0o600); err != nil {
		return nil, err
	}
	g := &generator{s: projections.New(), cfg: projections.DefaultConfig(), dir: dir}
	if err := g.open(); err != nil {
		return nil, err
	}
	g.do(projections.SetNodeIdentity{PublicKey: key.PublicKey().String(), Source: "generated"})
	g.do(projections.SetupGlobal{Deployment: "bench", InstanceID: "1", ClusterCIDR: "10.0.0.0/8", SliceCIDR: "10.64.0.0/12", Port: 51820})
	for i := 0; i < 8; i++ {
		g.do(projections.SetupService{Service: fmt.Sprintf("svc%d", i), Mode: "shared"})
	}
	return g, g.close()
}

// extend appends events until the journal holds total: the decisions a
// busy node makes (addresses allocated and released, DNS names registered
// and removed, peers added and removed), keeping about live addresses and
// names, and live/10 peers, alive.
func (g *generator) extend(total, live int) error {
	if err := g.open(); err != nil {
		return err
	}
	for g.s.Seq < uint64(total) && g.err == nil {
		g.n++
		n := g.n
		switch n % 4 {
		case 0, 1:
			if len(g.addrs) >= live {
				g.do(projections.ReleaseIP{IP: g.addrs[0]})
				g.addrs = g.addrs[1:]
			}
			if r, ok := g.do(projections.AllocateIP{}).(projections.ReplyIP); ok {
				g.addrs = append(g.addrs, r.IP)
			}
		case 2:
			if len(g.names) >= live {
				g.do(projections.UnregisterDNS{Name: g.names[0]})
				g.names = g.names[1:]
			}
			name := fmt.Sprintf("task-%d.svc%d.bench.local", n, n%8)
			g.do(projections.RegisterDNS{Name: name, IP: netip.AddrFrom4([4]byte{10, 64, byte(n >> 8), byte(n)})})
			g.names = append(g.names, name)
		case 3:
			if len(g.peers) >= live/10 {
				g.do(projections.RemovePeer{PublicKey: g.peers[0]})
				g.peers = g.peers[1:]
			}
			var b [32]byte
			b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), 0x77
			k := base64.StdEncoding.EncodeToString(b[:])
			aip := fmt.Sprintf("10.%d.%d.0/24,10.%d.%d.1/32", 128+(n>>16)%64, (n>>8)&255, 192+(n>>16)%32, (n>>8)&255)
			g.do(projections.AddPeer{PublicKey: k, Endpoint: "192.0.2.10:51820", AllowedIPs: aip, Keepalive: 25})
			g.peers = append(g.peers, k)
		}
	}
	g.flush()
	if g.err != nil {
		return g.err
	}
	return g.close()
}

type generator struct {
	s     *projections.State
	cfg   projections.Config
	dir   string
	store *journal.BoltStore
	batch []journal.Record
	err   error

	n     int
	addrs []netip.Addr
	names []string
	peers []string
}

func (g *generator) open() error {
	if g.store != nil {
		return nil
	}
	var err error
	g.store, err = journal.Open(g.dir, journal.Options{})
	return err
}

func (g *generator) close() error {
	g.flush()
	if g.store == nil {
		return g.err
	}
	err := g.store.Close()
	g.store = nil
	if g.err != nil {
		return g.err
	}
	return err
}

func (g *generator) do(c projections.Command) projections.Reply {
	if g.err != nil {
		return nil
	}
	d, err := projections.Decide(g.s, g.cfg, c)
	if err != nil {
		return nil // e.g. a name that collides; the generator moves on
	}
	for _, ev := range d.Events {
		if err := g.s.Apply(ev); err != nil {
			g.err = err
			return nil
		}
		typ, ver, payload, _ := projections.EncodeEvent(ev)
		g.batch = append(g.batch, journal.Record{Type: typ, Version: ver, Cause: journal.Cause{Op: c.Op(), RequestID: g.s.Seq + 1}, Payload: payload})
		g.s.Seq++
	}
	if len(g.batch) >= 20000 {
		g.flush()
	}
	return d.Reply
}

func (g *generator) flush() {
	if len(g.batch) == 0 || g.err != nil {
		return
	}
	_, g.err = g.store.Append(g.batch).Wait()
	g.batch = nil
}

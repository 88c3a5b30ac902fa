package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

func (a *app) state(args []string) error {
	o, err := a.outputFlag("state", args, nil)
	if err != nil {
		return err
	}
	src, err := a.open()
	if err != nil {
		return err
	}
	defer src.Close()
	var raw []byte
	if src.store != nil {
		st, _, err := replay.Load(src.store, replay.Options{Verify: true})
		if err != nil {
			return err
		}
		if raw, err = st.CanonicalJSON(); err != nil {
			return err
		}
	} else {
		_, raw, err = ipc.FetchState(context.Background(), src.client)
		if err != nil {
			return fmt.Errorf("state_dump: %w", err)
		}
	}
	if o == "json" {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		fmt.Fprintf(a.out, "%s\n", buf.Bytes())
		return nil
	}
	st, err := projections.ParseCanonicalJSON(raw)
	if err != nil {
		return err
	}
	printState(a, st)
	return nil
}

func printState(a *app, st *projections.State) {
	w := a.out
	fmt.Fprintf(w, "journal sequence: %d\n", st.Seq)
	fmt.Fprintf(w, "node:   id %d, public key %s", st.Node.ID, st.Node.PublicKey)
	if st.Node.Announced != "" && st.Node.Announced != st.Node.PublicKey {
		fmt.Fprintf(w, " (orchestrator announced %s)", st.Node.Announced)
	}
	fmt.Fprintln(w)
	if g := st.Global; g != nil {
		how := "given"
		if g.SliceDerived {
			how = "derived"
		}
		fmt.Fprintf(w, "global: device %s, port %d, cluster %s, slice %s (%s), node %s, nat %t, deployment %s\n",
			g.Device, g.Port, g.ClusterCIDR, g.Slice, how, g.NodeIP, g.NAT, g.Deployment)
	} else {
		fmt.Fprintln(w, "global: not set up")
	}
	names := sortedKeys(st.Services)
	fmt.Fprintf(w, "services: %d\n", len(names))
	for _, n := range names {
		sv := st.Services[n]
		fmt.Fprintf(w, "  %-16s %-9s subnet %s gateway %s bridge %s", n, sv.Mode, sv.Subnet, sv.Gateway, sv.Bridge)
		if d := sv.Dedicated; d != nil {
			fmt.Fprintf(w, " device %s port %d key %s", d.Device, d.Port, d.PublicKey)
		}
		fmt.Fprintln(w)
	}
	keys := sortedKeys(st.Attachments)
	fmt.Fprintf(w, "attachments: %d\n", len(keys))
	for _, k := range keys {
		at := st.Attachments[k]
		fmt.Fprintf(w, "  %-28s service %-12s ip %s", k, at.Service, at.IP)
		if at.GlobalIP.IsValid() {
			fmt.Fprintf(w, " global %s", at.GlobalIP)
		}
		if at.NetnsInode != 0 {
			fmt.Fprintf(w, " netns %d", at.NetnsInode)
		}
		fmt.Fprintln(w)
	}
	for _, s := range sortedKeys(st.Peers) {
		fmt.Fprintf(w, "peers (%s): %d\n", s, len(st.Peers[s]))
		for _, k := range sortedKeys(st.Peers[s]) {
			p := st.Peers[s][k]
			fmt.Fprintf(w, "  %s endpoint %q allowed %s keepalive %d", k, p.Endpoint, projections.FormatPrefixes(p.AllowedIPs), p.Keepalive)
			if p.Guest != "" {
				fmt.Fprintf(w, " guest %s", p.Guest)
			}
			fmt.Fprintln(w)
		}
	}
	reservations := 0
	for _, o := range st.IPAM.Owners {
		if o.Kind == projections.OwnerReservation {
			reservations++
		}
	}
	fmt.Fprintf(w, "addresses: %d held (%d reservations)\n", len(st.IPAM.Owners), reservations)
	fmt.Fprintf(w, "dns records: %d\n", len(st.DNS))
	for _, n := range sortedKeys(st.DNS) {
		r := st.DNS[n]
		fmt.Fprintf(w, "  %s", n)
		if r.V4.IsValid() {
			fmt.Fprintf(w, " A %s", r.V4)
		}
		if r.V6.IsValid() {
			fmt.Fprintf(w, " AAAA %s", r.V6)
		}
		fmt.Fprintln(w)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

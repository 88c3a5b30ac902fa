package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/cmd/internal/audit"
	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

func newStateCmd(a *app) *cobra.Command {
	var at string
	c := &cobra.Command{
		Use:   "state",
		Short: "The projected state (now, or --at an earlier point): node, global overlay, services, attachments, peers, addresses, DNS",
		Long: `state prints the node's state as the journal projects it: offline a replay of
the journal (from its snapshot), online the daemon's state (state_dump).
--at SEQ|TIME|ULID gives the state right after that event (a time: the last
event at or before it), from the nearest retained state before it.`,
		Example: "  overlayctl state\n  overlayctl state -o json\n  overlayctl state --at 2026-11-30T18:00:00Z",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if at == "" {
				return a.state(c.Context())
			}
			p, err := point("--at", at)
			if err != nil {
				return err
			}
			return a.stateAt(c.Context(), *p)
		},
	}
	c.Flags().StringVar(&at, "at", "", "the state after this point: SEQ, RFC 3339 time, ULID or head")
	return c
}

func (a *app) state(ctx context.Context) error {
	src, err := a.source(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	st, raw, err := loadState(ctx, src)
	if err != nil {
		return err
	}
	if a.output != "table" {
		return printStateJSON(a, raw)
	}
	fmt.Fprintf(a.out, "source: %s\n", src)
	printState(a, st)
	return nil
}

func (a *app) stateAt(ctx context.Context, p audit.Point) error {
	q, src, err := a.querier(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := q.StateAt(ctx, p)
	if err != nil {
		return queryError(fmt.Errorf("state --at %s: %w", p, err))
	}
	if a.output != "table" {
		raw, err := st.CanonicalJSON()
		if err != nil {
			return err
		}
		return printStateJSON(a, raw)
	}
	fmt.Fprintf(a.out, "source: %s, state at %s\n", src, p)
	printState(a, st)
	return nil
}

// printStateJSON writes a state's canonical JSON (indented with -o json,
// on one line with -o jsonl). It carries no "source": it is the document
// state_dump and the snapshot hold, so that the daemon's and a replay's
// compare byte for byte; its "seq" names the point it is at.
func printStateJSON(a *app, raw []byte) error {
	var buf bytes.Buffer
	var err error
	if a.output == "json" {
		err = json.Indent(&buf, raw, "", "  ")
	} else {
		err = json.Compact(&buf, raw)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.out, "%s\n", buf.Bytes())
	return err
}

// loadState is the state and its canonical JSON: offline a replay of the
// journal (verified against the snapshot), online the daemon's state_dump.
func loadState(ctx context.Context, src *source) (*projections.State, []byte, error) {
	if src.store != nil {
		st, _, err := replay.Load(src.store, replay.Options{Verify: true})
		if err != nil {
			return nil, nil, err
		}
		raw, err := st.CanonicalJSON()
		return st, raw, err
	}
	_, raw, err := ipc.FetchState(ctx, src.client)
	if err != nil {
		return nil, nil, fmt.Errorf("state_dump: %w", err)
	}
	st, err := projections.ParseCanonicalJSON(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("state_dump: %w", err)
	}
	return st, raw, nil
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

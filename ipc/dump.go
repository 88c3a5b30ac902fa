package ipc

import (
	"context"
	"fmt"
)

// FetchState reads the daemon's state (canonical JSON) with state_dump,
// part by part.
func FetchState(ctx context.Context, c *Client) (seq uint64, state []byte, err error) {
	return FetchStateAt(ctx, c, "")
}

// FetchStateAt is FetchState for the state after an earlier point of the
// journal (a sequence, an RFC 3339 time or a ULID; "" for now).
func FetchStateAt(ctx context.Context, c *Client, at string) (seq uint64, state []byte, err error) {
	req := StateDump{}
	if at != "" {
		req.At = &at
	}
	r, err := c.Call(ctx, req)
	if err != nil {
		return 0, nil, err
	}
	first := r.(StateResult)
	out := make([]byte, 0, first.Total)
	out = append(out, first.Part...)
	for uint64(len(out)) < first.Total {
		id, off := first.DumpID, uint64(len(out))
		r, err := c.Call(ctx, StateDump{DumpID: &id, Offset: &off})
		if err != nil {
			return 0, nil, err
		}
		p := r.(StateResult)
		if p.Offset != off || p.Part == "" {
			return 0, nil, fmt.Errorf("state_dump: asked for offset %d, got %d (+%d bytes)", off, p.Offset, len(p.Part))
		}
		out = append(out, p.Part...)
	}
	return first.Seq, out, nil
}

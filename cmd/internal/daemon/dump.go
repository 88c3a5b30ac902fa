package daemon

import (
	"fmt"
	"sync"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// dumpPart is the most JSON text one state_dump answer carries: escaped
// into a JSON string it stays under a frame even if every byte doubled.
const dumpPart = 3 << 20

// dumps keeps recent state dumps so that a large state can be read in
// parts that all belong to one consistent state.
type dumps struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]*dump
}

type dump struct {
	seq     uint64
	body    []byte
	created time.Time
}

func (ds *dumps) put(seq uint64, body []byte) uint64 {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.m == nil {
		ds.m = map[uint64]*dump{}
	}
	for id, d := range ds.m { // keep a few, for a short time
		if time.Since(d.created) > 2*time.Minute || len(ds.m) >= 4 {
			delete(ds.m, id)
		}
	}
	ds.next++
	ds.m[ds.next] = &dump{seq: seq, body: body, created: time.Now()}
	return ds.next
}

func (ds *dumps) get(id uint64) *dump {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.m[id]
}

func part(id uint64, d *dump, off uint64) ipc.Response {
	if off > uint64(len(d.body)) {
		return ipc.Err{Message: fmt.Sprintf("state_dump: offset: %d is past the end (%d bytes)", off, len(d.body))}
	}
	end := min(off+dumpPart, uint64(len(d.body)))
	return ipc.StateResult{DumpID: id, Seq: d.seq, Total: uint64(len(d.body)), Offset: off, Part: string(d.body[off:end])}
}

// stateDump answers state_dump: a new dump taken at the request's turn in
// the command order, or the next part of an earlier one. A new dump's
// state is copied on the sequencer (read) and encoded off it (finish).
func (d *Daemon) stateDump(r ipc.StateDump) (read func(*projections.State) ipc.Response, finish func(ipc.Response, []projections.Event) ipc.Response, direct ipc.Response) {
	if r.DumpID != nil {
		dp := d.dumps.get(*r.DumpID)
		if dp == nil {
			return nil, nil, ipc.Err{Message: fmt.Sprintf("state_dump: dump_id: %d is unknown or expired; ask again without dump_id", *r.DumpID)}
		}
		off := uint64(0)
		if r.Offset != nil {
			off = *r.Offset
		}
		return nil, nil, part(*r.DumpID, dp, off)
	}
	read = func(st *projections.State) ipc.Response { return stateCopy{st.Clone()} }
	finish = func(resp ipc.Response, _ []projections.Event) ipc.Response {
		c, ok := resp.(stateCopy)
		if !ok {
			return resp
		}
		b, err := c.st.CanonicalJSON()
		if err != nil {
			return ipc.Err{Message: "state_dump: " + err.Error()}
		}
		dp := &dump{seq: c.st.Seq, body: b}
		return part(d.dumps.put(c.st.Seq, b), dp, 0)
	}
	return read, finish, nil
}

// stateCopy carries a state copy from the sequencer to the encoder; it
// never reaches the wire.
type stateCopy struct{ st *projections.State }

func (stateCopy) Result() string { return "state" }

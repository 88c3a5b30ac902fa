package daemon

import (
	"context"
	"encoding/json"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/audit"
	"github.com/zlayer/overlayd/ipc"
)

// queryTimeout bounds one query the daemon runs for overlayctl.
const queryTimeout = 2 * time.Minute

// journalQuery answers journal_query from the journal (through its
// indexes when they are complete), off the sequencer.
func (d *Daemon) journalQuery(q ipc.JournalQuery) ipc.Response {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	return audit.Answer(ctx, audit.NewLocal(d.store), q)
}

func (d *Daemon) journalStats() ipc.Response {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	s, err := audit.NewLocal(d.store).Stats(ctx)
	if err != nil {
		return ipc.Err{Message: "journal_stats: " + err.Error()}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return ipc.Err{Message: "journal_stats: " + err.Error()}
	}
	return ipc.JournalStatsResult{Stats: b}
}

// stateDumpAt answers state_dump with at: the state after that point,
// rebuilt from the journal, as a dump read in parts like the live one.
func (d *Daemon) stateDumpAt(at string) ipc.Response {
	p, err := audit.ParsePoint(at)
	if err != nil {
		return ipc.Err{Message: "state_dump: at: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	st, err := audit.NewLocal(d.store).StateAt(ctx, p)
	if err != nil {
		return ipc.Err{Message: "state_dump: at " + at + ": " + err.Error()}
	}
	b, err := st.CanonicalJSON()
	if err != nil {
		return ipc.Err{Message: "state_dump: " + err.Error()}
	}
	dp := &dump{seq: st.Seq, body: b}
	return part(d.dumps.put(st.Seq, b), dp, 0)
}

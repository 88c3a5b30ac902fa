package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// followPage is how many events a follower reads from the journal in one
// read transaction; it pushes them, then reads the next page. A follower
// holds at most one page (and its connection's bounded queue), however far
// behind it starts.
const followPage = 256

// followPoll is how often a follower looks at the journal's head without
// being told it moved (a safety net; commits notify).
const followPoll = time.Second

// followers tells the journal_follow goroutines that the journal's head
// moved. notify is the only thing the command path does for them: O(1),
// never blocking, nothing at all while nobody follows.
type followers struct {
	n     atomic.Int32 // followers running
	mu    sync.Mutex
	moved chan struct{} // closed and replaced by notify
}

// notify wakes every follower (after a commit is durable).
func (f *followers) notify() {
	if f.n.Load() == 0 {
		return
	}
	f.mu.Lock()
	if f.moved != nil {
		close(f.moved)
		f.moved = nil
	}
	f.mu.Unlock()
}

// wait returns a channel closed at the next notify.
func (f *followers) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.moved == nil {
		f.moved = make(chan struct{})
	}
	return f.moved
}

// journalFollow answers journal_follow: following {head_seq}, then (on the
// connection only) every committed event after after_seq as a
// journal_event, in order.
func (d *Daemon) journalFollow(r ipc.JournalFollow) ipc.Response {
	head, _ := d.store.Head()
	if r.AfterSeq > head {
		return ipc.Err{Message: fmt.Sprintf("journal_follow: after_seq: %d is past the journal's head %d", r.AfterSeq, head)}
	}
	if ck := journal.CheckpointOf(d.store); ck != nil && r.AfterSeq < ck.Seq {
		// CMP: the events after it up to the checkpoint are in the
		// archives; following from there would skip them unseen.
		return ipc.Err{Message: fmt.Sprintf("journal_follow: after_seq: events %d..%d were compacted into archive(s) up to %s; follow from %d or later",
			r.AfterSeq+1, ck.Seq, ck.Archive().Name, ck.Seq)}
	}
	return ipc.Streaming{Response: ipc.Following{HeadSeq: head}, Start: func(c ipc.Conn) { d.follow(c, r.AfterSeq) }}
}

// errPageFull ends a page's read.
var errPageFull = errors.New("page full")

// follow pushes the events after after to c until c is gone. It always
// reads the journal from the last event it pushed, whether it is catching
// up or live: a commit only wakes it, so there is neither a gap nor a
// duplicate between the history and the live events. Only acknowledged
// events (≤ Head) are read. Between pages it waits for room in c's queue,
// and no read transaction is open while it waits.
func (d *Daemon) follow(c ipc.Conn, after uint64) {
	d.followers.n.Add(1)
	defer d.followers.n.Add(-1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.Done():
		case <-d.stopped:
		}
		cancel()
	}()
	d.log.Debug("journal follow started", "conn", c.ID(), "after_seq", after)
	last := after
	poll := time.NewTimer(followPoll)
	defer poll.Stop()
	page := make([]ipc.JournalEvent, 0, followPage)
	for {
		moved := d.followers.wait() // before reading Head: a commit after this wakes us
		head, _ := d.store.Head()
		for last < head {
			page = page[:0]
			err := d.store.Iterate(last, false, func(e *journal.Envelope) error {
				if len(page) == followPage {
					return errPageFull
				}
				page = append(page, replay.JournalEventOf(e))
				return nil
			})
			if err != nil && !errors.Is(err, errPageFull) {
				d.log.Warn("journal follow: cannot read the journal; closing the follower's connection (it reconnects)", "conn", c.ID(), "after_seq", last, "err", err)
				c.Close()
				return
			}
			if len(page) == 0 {
				break // nothing past last below head (compacted away): wait for more
			}
			for i := range page {
				if err := c.WaitRoom(ctx); err != nil {
					return
				}
				if err := c.Push(ipc.JournalFollowEvent{Entry: page[i]}); err != nil {
					return
				}
			}
			last = page[len(page)-1].Seq
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(followPoll)
		select {
		case <-moved:
		case <-poll.C:
		case <-ctx.Done():
			d.log.Debug("journal follow ended", "conn", c.ID(), "last_seq", last)
			return
		}
	}
}

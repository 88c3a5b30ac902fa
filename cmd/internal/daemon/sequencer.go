package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// The command pipeline:
//
//	handler ──job──▶ sequencer: Decide against the live state, Apply to it,
//	                 journal.Append (non-blocking)
//	        ──reply─▶ replier: wait until the job's events (or, for a job
//	                 without events, everything decided before it) are
//	                 durable and their effects applied, then answer
//	        ──batch─▶ projector: fold decided events into the effects'
//	                 state, tell the effect runner, take snapshots
//
// One sequencer goroutine decides every command in arrival order against a
// state that includes every earlier decision, so no address or port is ever
// handed out twice. Replies are released in decision order, only after the
// journal has made the decision (and every earlier one) durable. Reads are
// answered from the live state at their turn and released the same way, so
// a read never shows a decision that could still be lost.
//
// The effects start when a decision is made, while the journal makes it
// durable, not after: an attach's kernel work (about 1.5 ms) and the
// journal's flushes (about 0.5 ms) overlap instead of adding up. Nothing is
// acknowledged before both are done. If the daemon dies between the two,
// the host holds an object the journal never recorded; the boot pass
// removes it, as it removes anything marked as ours that the state does not
// own.

// job is one unit of work for the sequencer.
type job struct {
	cmd   projections.Command
	read  func(st *projections.State) ipc.Response // a read: no command
	cause journal.Cause
	// before runs after Decide and before the journal append, on the
	// sequencer, with the state the decision was made against (not yet
	// changed by it; read it only); an error refuses the command (nothing
	// is journaled).
	before func(st *projections.State, d projections.Decision) error
	// render turns the decision's reply into the wire response.
	render func(r projections.Reply) ipc.Response
	// finish, when set, completes the response off the pipeline, after
	// the commit and the effects, e.g. with what the devices report; evs
	// are the job's events (none for a read or a repeat).
	finish func(r ipc.Response, evs []projections.Event) ipc.Response
	// after, when set, runs once the job's events are durable.
	after func(evs []projections.Event)
	// reset asks the sequencer to roll its state back to the journal when
	// it holds decisions whose commits failed (degraded.go); answered ok.
	reset bool
	// again marks a job decided a second time after the commit it waited
	// on failed; it is not decided a third time.
	again bool
	out   chan ipc.Response
}

type pendingReply struct {
	commit *journal.Commit // nil: nothing was ever submitted
	own    bool            // the commit holds this job's events
	op     string
	// job is decided again if commit fails (a read or a repeat answered
	// from a state that held decisions which then failed to commit).
	job    *job
	events []projections.Event
	keys   []string
	resp   ipc.Response
	finish func(ipc.Response, []projections.Event) ipc.Response
	after  func([]projections.Event)
	out    chan ipc.Response
}

type batch struct {
	events []projections.Event
	keys   []string        // what they change (projections.Keys)
	commit *journal.Commit // makes them durable
	last   uint64          // sequence number of the last one
	// reset, when set, replaces the effects' state: the sequencer rolled
	// back to event last (hash resetHash) after failed commits.
	reset     *projections.State
	resetHash [32]byte
}

// decidedState is the state the effects converge to: every decision the
// sequencer has handed to the journal, in order, durable or about to be.
type decidedState struct {
	mu      sync.RWMutex
	st      *projections.State
	advance chan struct{} // closed and replaced whenever st.Seq moves
	// hash is the hash of event st.Seq when pending is nil; otherwise
	// pending is the commit of the last batch applied, which yields it.
	hash    [32]byte
	pending *journal.Commit
}

// settled returns the state's sequence number and hash once the journal
// holds every event in it (they are durable): a snapshot or a verification
// must not get ahead of the journal. fn runs under the read lock.
func (c *decidedState) settled(fn func(st *projections.State, hash [32]byte) error) error {
	for {
		c.mu.RLock()
		pc := c.pending
		if pc == nil {
			defer c.mu.RUnlock()
			return fn(c.st, c.hash)
		}
		c.mu.RUnlock()
		envs, err := pc.Wait()
		if err != nil {
			return err
		}
		last := envs[len(envs)-1]
		c.mu.Lock()
		if c.pending == pc {
			if last.Seq != c.st.Seq {
				c.mu.Unlock()
				return fmt.Errorf("the journal committed up to %d but the state is at %d", last.Seq, c.st.Seq)
			}
			c.hash, c.pending = last.Hash, nil
		}
		c.mu.Unlock()
	}
}

// reached reports whether the state holds event seq.
func (c *decidedState) reached(seq uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.st.Seq >= seq
}

// waitSeq waits until the state holds event seq.
func (c *decidedState) waitSeq(ctx context.Context, seq uint64) error {
	for {
		c.mu.RLock()
		ok, ch := c.st.Seq >= seq, c.advance
		c.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Read implements effects.View. The state may hold decisions a moment
// before they are durable.
func (c *decidedState) Read(fn func(st *projections.State)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	fn(c.st)
}

type pipeline struct {
	d       *Daemon
	jobs    chan *job
	replies chan pendingReply
	batches chan batch
	live    *projections.State
	barrier *journal.Commit
	// taintErr: live holds decisions whose commits failed and it could
	// not be rolled back (untaint), last tried at taintTried.
	taintErr   error
	taintTried time.Time

	seqDone, replyDone, projDone chan struct{}
}

func newPipeline(d *Daemon, live *projections.State) *pipeline {
	p := &pipeline{
		d:         d,
		jobs:      make(chan *job, 4096),
		replies:   make(chan pendingReply, 8192),
		batches:   make(chan batch, 8192),
		live:      live,
		seqDone:   make(chan struct{}),
		replyDone: make(chan struct{}),
		projDone:  make(chan struct{}),
	}
	go p.sequence()
	go p.reply()
	go p.project()
	return p
}

// close stops taking jobs and waits until every reply is sent and every
// decided event is folded into the decided state.
func (p *pipeline) close() {
	close(p.jobs)
	<-p.seqDone
	<-p.replyDone
	<-p.projDone
}

func errResponse(op string, err error) ipc.Response {
	return ipc.Err{Message: op + ": " + err.Error()}
}

func (p *pipeline) sequence() {
	defer close(p.seqDone)
	defer close(p.batches)
	defer close(p.replies)
	for j := range p.jobs {
		hit("daemon/sequencer") // failpoint.go: test builds only
		r := p.decide(j)
		r.out, r.finish, r.after = j.out, j.finish, j.after
		p.replies <- r
	}
}

// decide runs one job against the live state.
func (p *pipeline) decide(j *job) pendingReply {
	op := j.cause.Op
	if j.reset {
		var resp ipc.Response = ipc.OK{}
		if err := p.untaint(); err != nil {
			resp = errResponse(op, err)
		}
		return pendingReply{op: op, resp: resp}
	}
	health := p.d.store.Health() // once per job: it takes the store's lock
	if !health.OK() || p.taintErr != nil {
		if err := p.untaint(); err != nil {
			return pendingReply{op: op, resp: errResponse(op, err)}
		}
	}
	if j.read != nil {
		return pendingReply{commit: p.barrier, op: op, job: j, resp: j.read(p.live)}
	}
	refuse := func(err error) pendingReply {
		return pendingReply{commit: p.barrier, op: op, job: j, resp: errResponse(op, err)}
	}
	if err := p.d.failure(); err != nil {
		return refuse(fmt.Errorf("the daemon is stopping: %w", err))
	}
	if err := readOnly(health); err != nil {
		return refuse(err)
	}
	d, err := projections.Decide(p.live, p.d.pcfg, j.cmd)
	if err != nil {
		return refuse(err)
	}
	render := j.render
	if render == nil {
		render = renderReply
	}
	resp := render(d.Reply)
	if len(d.Events) == 0 {
		return pendingReply{commit: p.barrier, op: op, job: j, resp: resp}
	}
	if j.before != nil {
		if err := j.before(p.live, d); err != nil {
			return refuse(err)
		}
	}
	recs := make([]journal.Record, len(d.Events))
	for i, ev := range d.Events {
		typ, ver, payload, err := projections.EncodeEvent(ev)
		if err != nil {
			p.d.fatal(err)
			return refuse(errors.New("internal error; the daemon is stopping"))
		}
		recs[i] = journal.Record{Type: typ, Version: ver, Cause: j.cause, Payload: payload}
	}
	// Decide promised these events apply. If one does not, it is a bug:
	// stop before the live state and the journal can diverge (nothing of
	// this command is journaled).
	for _, ev := range d.Events {
		if err := p.live.Apply(ev); err != nil {
			p.d.fatal(fmt.Errorf("decided %s but cannot apply it: %w", ev.EventType(), err))
			return refuse(errors.New("internal error; the daemon is stopping"))
		}
	}
	p.live.Seq += uint64(len(d.Events))
	c := p.d.store.Append(recs)
	p.barrier = c
	keys := eventKeys(d.Events)
	p.batches <- batch{events: d.Events, keys: keys, commit: c, last: p.live.Seq}
	return pendingReply{commit: c, own: true, op: op, events: d.Events, keys: keys, resp: resp}
}

// effectTimeout bounds how long an answer waits for the effects of its
// decision; past it the answer goes out and the effects keep converging.
const effectTimeout = 10 * time.Second

func (p *pipeline) reply() {
	defer close(p.replyDone)
	var waiting sync.WaitGroup
	defer waiting.Wait()
	for r := range p.replies {
		var lastSeq uint64
		if r.commit != nil {
			envs, err := r.commit.Wait()
			if err != nil {
				// The daemon degrades (degraded.go): this command is not
				// applied, the state rolls back, reads go on.
				p.d.jw.failed(err)
				if r.job == nil || r.job.again { // an own commit's job is nil
					r.out <- ipc.Err{Message: fmt.Sprintf("%s: %v: %v", r.op, errNotDurable, err)}
					continue
				}
				// A read or a repeat answered from a state that held the
				// failed decisions: decide it again (once) when rolled back.
				waiting.Add(1)
				again := *r.job // the first decision's goroutines may still read the old one
				again.again = true
				go func(j *job, out chan ipc.Response) {
					defer waiting.Done()
					out <- <-p.d.submit(j)
				}(&again, r.out)
				continue
			}
			if r.own {
				p.d.followers.notify() // journal_follow: the head moved (follow.go)
				if p.d.runner.Relevant(r.keys) {
					lastSeq = envs[len(envs)-1].Seq
				} else if seq := envs[len(envs)-1].Seq; !p.d.decided.reached(seq) {
					// Observers (DNS) have the events once the effects'
					// state holds them; the projector is rarely behind.
					ctx, cancel := context.WithTimeout(context.Background(), effectTimeout)
					if err := p.d.decided.waitSeq(ctx, seq); err != nil {
						p.d.log.Warn("answering before the effects' state caught up", "err", err)
					}
					cancel()
				}
				if r.after != nil {
					r.after(r.events)
				}
			}
		}
		if lastSeq == 0 && r.finish == nil {
			r.out <- r.resp
			continue
		}
		// The answer waits (off this goroutine) until the effects have
		// applied the decision, so that an acknowledged peer is on the
		// device; a read may need the devices to complete its answer.
		waiting.Add(1)
		go func(r pendingReply) {
			defer waiting.Done()
			if lastSeq != 0 {
				ctx, cancel := context.WithTimeout(context.Background(), effectTimeout)
				if err := p.d.waitEffects(ctx, lastSeq); err != nil {
					p.d.log.Warn("answering before the effects finished", "err", err)
				}
				cancel()
			}
			if r.finish != nil {
				r.resp = r.finish(r.resp, r.events)
			}
			r.out <- r.resp
		}(r)
	}
}

func (p *pipeline) project() {
	defer close(p.projDone)
	c := p.d.decided
	var sinceSnap uint64
	for b := range p.batches {
		if b.reset != nil {
			c.mu.Lock()
			c.st, c.pending, c.hash = b.reset, nil, b.resetHash
			if p.d.runner != nil {
				p.d.runner.Reset(c.st) // DNS records
			}
			close(c.advance)
			c.advance = make(chan struct{})
			c.mu.Unlock()
			if p.d.runner != nil {
				p.d.runner.Rewind(b.last) // a full pass of every reconciler undoes the rest
			}
			continue
		}
		c.mu.Lock()
		for _, ev := range b.events {
			if err := c.st.Apply(ev); err != nil {
				c.mu.Unlock()
				p.d.fatal(fmt.Errorf("decided event %s does not apply to the effects' state: %w", ev.EventType(), err))
				return
			}
		}
		if c.st.Seq+uint64(len(b.events)) != b.last {
			c.mu.Unlock()
			p.d.fatal(fmt.Errorf("the effects' state at %d cannot take events ending at %d", c.st.Seq, b.last))
			return
		}
		c.st.Seq, c.pending = b.last, b.commit
		if p.d.runner != nil {
			// In-memory effects (DNS records) take the events now, under
			// the lock: a reply waits for this state (waitSeq), so an
			// answered register_dns resolves.
			p.d.runner.Observe(b.events)
		}
		close(c.advance)
		c.advance = make(chan struct{})
		c.mu.Unlock()
		if p.d.runner != nil {
			p.d.runner.Notify(b.keys, b.last)
		}
		sinceSnap += uint64(len(b.events))
		if every := p.d.cfg.SnapshotEvery; every > 0 && sinceSnap >= every {
			sinceSnap = 0
			if err := p.d.snapshot(); err != nil {
				p.d.log.Warn("snapshot failed; the next boot replays more", "err", err)
			}
			p.d.retain()
		}
	}
}

func eventKeys(evs []projections.Event) []string {
	var keys []string
	for _, ev := range evs {
		keys = append(keys, projections.Keys(ev)...)
	}
	return keys
}

package ipc

import (
	"bufio"
	"container/list"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// serverConn is one client connection: a reader goroutine that splits
// frames, dispatches requests, encodes the answers that are there at once
// and writes them itself before it waits for anything; a collector
// goroutine that takes the answers that come later, in request order,
// encodes and queues them, and writes them itself when nothing else
// waits; and, for larger batches and for Broadcast, a flusher goroutine
// that writes the queue and lingers a second for more (outbox.go).
type serverConn struct {
	s    *Server
	nc   net.Conn
	id   uint64
	meta Meta
	// exeRead: meta.Peer.Exe was read (at the first request; reader only).
	exeRead bool
	root    bool
	since   time.Time

	// Under s.mu.
	counted bool          // holds a slot of MaxConns
	elem    *list.Element // in s.unframedRoot or s.unframedOther: holds a slot and completed no frame

	pending     chan *pendingResp // reader → collector, in request order (pointers: the buffer of MaxInFlight stays small)
	outstanding atomic.Int32      // entries pushed to pending and not yet through the collector
	gate        chan struct{}     // holds a token while an expensive response is unwritten
	paced       expensivePace     // of expensive requests (pace)
	kick        chan struct{}     // wakes a lingering flusher
	drained     chan struct{}     // signalled after each write of the queue
	dead        chan struct{}     // closed by kill (under omu): stop producing

	// Read deadline of a started frame. Reader goroutine only, but
	// stopping (under rmu) is set by Drain.
	rmu      sync.Mutex
	stopping bool
	inFrame  bool // the first byte of a frame has arrived
	armed    bool // the frame's read deadline is set

	// Outgoing queue (outbox.go), under omu.
	omu      sync.Mutex
	out      []outFrame
	staged   int           // bytes encoded by the reader, on their way to out
	queued   int           // bytes in out, length prefixes included
	writing  int           // bytes of the batch being written
	flushing bool          // someone writes the queue: the reader, or a flusher goroutine
	closing  bool          // the collector is done: flush, then tear down
	room     chan struct{} // closed after the next write: WaitRoom callers (follow_conn.go)
}

// pendingResp is a request's place in the response order: its encoded
// answer when the handler answered at once (the reader encodes it and
// counts it against MaxQueuedBytes), else the channel the answer will come
// on, or (an expensive request answered later) the channel its encoding
// will come on.
type pendingResp struct {
	id        uint64
	b         []byte
	ch        <-chan Response
	enc       <-chan []byte
	expensive bool
	start     func()    // a Streaming answer's stream, started once the answer is queued
	obs       *observed // set when the Server has an Observe hook
}

// testHookBodyWait, when set, is called by a reader about to wait for the
// body of a frame larger than its read buffer (tests measure the memory of
// connections that stop there).
var testHookBodyWait func()

func (s *Server) newConn(nc net.Conn, peer Creds, hasPeer, root bool) *serverConn {
	c := &serverConn{s: s, nc: nc, id: s.nextConn.Add(1), root: root, since: time.Now()}
	c.meta = Meta{ConnID: c.id, HasPeer: hasPeer, Peer: peer}
	c.pending = make(chan *pendingResp, s.lim.maxInFlight)
	c.gate = make(chan struct{}, 1)
	c.kick = make(chan struct{}, 1)
	c.drained = make(chan struct{}, 1)
	c.dead = make(chan struct{})
	return c
}

// stopReading makes the reader return at its next read (Drain); the
// collector and flusher finish what was read.
func (c *serverConn) stopReading() {
	c.rmu.Lock()
	c.stopping = true
	c.nc.SetReadDeadline(time.Now())
	c.rmu.Unlock()
}

// frameReader is the reader's view of the connection: the first read that
// has to wait for more of a started frame sets the frame's deadline.
type frameReader struct{ c *serverConn }

func (r frameReader) Read(p []byte) (int, error) {
	c := r.c
	if c.inFrame && !c.armed && c.s.lim.frameTimeout > 0 {
		c.rmu.Lock()
		if !c.stopping {
			c.nc.SetReadDeadline(time.Now().Add(c.s.lim.frameTimeout))
		}
		c.armed = true
		c.rmu.Unlock()
	}
	return c.nc.Read(p)
}

func (c *serverConn) beginFrame() {
	c.inFrame = true
	c.s.st.partial.Add(1)
}

// endFrame clears the frame's deadline: between frames a connection may
// idle as long as it likes.
func (c *serverConn) endFrame() {
	if !c.inFrame {
		return
	}
	c.inFrame = false
	c.s.st.partial.Add(-1)
	if c.armed {
		c.armed = false
		c.rmu.Lock()
		if !c.stopping {
			c.nc.SetReadDeadline(time.Time{})
		}
		c.rmu.Unlock()
	}
}

// nextFrame returns the next frame's body. A body that fits the read
// buffer is returned in place (valid until the next read) and used is the
// number of bytes to discard after it is decoded; a larger one is read into
// its own buffer, grown as it arrives (used is 0).
func (c *serverConn) nextFrame(br *bufio.Reader) (body []byte, used int, err error) {
	if _, err := br.Peek(1); err != nil {
		return nil, 0, err // idle: no deadline, and a close here is clean
	}
	c.beginFrame()
	hdr, err := br.Peek(4)
	if err != nil {
		return nil, 0, frameErr("frame length", err)
	}
	n, err := frameLen(hdr)
	if err != nil {
		return nil, 0, err
	}
	if 4+n <= br.Size() {
		b, err := br.Peek(4 + n)
		if err != nil {
			return nil, 0, frameErr("frame body", err)
		}
		c.endFrame()
		return b[4:], 4 + n, nil
	}
	br.Discard(4)
	b, err := readBody(br, nil, n, testHookBodyWait)
	if err != nil {
		return nil, 0, err
	}
	c.endFrame()
	return b, 0, nil
}

// frameBuffered reports whether a whole frame is in br's buffer (reading
// it will not wait).
func frameBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false // Peek would wait
	}
	hdr, _ := br.Peek(4)
	n, err := frameLen(hdr)
	return err == nil && 4+n <= br.Buffered()
}

func frameErr(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("ipc: %s: %w", what, err)
}

// read decodes requests and hands them to the handler in order.
func (c *serverConn) read() {
	defer c.s.wg.Done()
	defer close(c.pending)
	defer c.flushInline() // answers of what was read go out (Drain, a half-closed client)
	defer c.endFrame()
	br := bufio.NewReaderSize(frameReader{c}, readBufSize)
	framed := false
	for {
		if !frameBuffered(br) {
			c.flushInline() // before waiting for the client
		}
		body, used, err := c.nextFrame(br)
		if err != nil {
			c.readFailed(err)
			return
		}
		if !framed {
			framed = true
			c.s.markFramed(c)
		}
		f, err := DecodeFrame(body)
		br.Discard(used)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) && de.HasID {
				var obs *observed
				if c.s.Observe != nil {
					obs = &observed{meta: c.meta, start: time.Now()}
					obs.meta.RequestID = de.ID
				}
				if !c.answer(de.ID, Reply(Err{Message: de.Msg}), obs) {
					return
				}
				continue
			}
			c.s.log().Debug("closing connection: unreadable frame", "conn", c.id, "err", err)
			return
		}
		switch f.Kind {
		case "request":
			if !c.waitForRoom() || !c.dispatch(f.ID, f.Request) {
				return
			}
		case "response":
			if !c.answer(f.ID, Reply(Err{Message: "frame: a client sends request frames, not response frames"}), nil) {
				return
			}
		default:
			c.s.log().Debug("ignoring event frame from client", "conn", c.id)
		}
	}
}

// readFailed logs why the reader stops, if it is worth it: a close between
// frames (a liveness probe) and a Drain or kill are not.
func (c *serverConn) readFailed(err error) {
	c.rmu.Lock()
	stopping := c.stopping
	c.rmu.Unlock()
	switch {
	case c.isDead():
	case stopping:
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
	case c.armed && errors.Is(err, os.ErrDeadlineExceeded):
		c.s.st.frameTimeouts.Add(1)
		c.s.log().Debug("closing connection: a started frame did not complete in time", "conn", c.id,
			"frame_timeout", c.s.lim.frameTimeout.String())
	default:
		c.s.log().Debug("closing connection: unreadable frame", "conn", c.id, "err", err)
	}
}

// waitForRoom holds the next request back while the connection's queue
// is over half its bound, until writes bring it under: a client that reads
// slowly is served at its pace, and one that does not read stops being
// read (its last write then fails at the write deadline) instead of
// making the daemon answer into a full queue. false once the connection is
// dead.
func (c *serverConn) waitForRoom() bool {
	for {
		c.omu.Lock()
		held, dead := c.staged+c.queued+c.writing, c.isDead()
		c.omu.Unlock()
		switch {
		case dead:
			return false
		case held < c.s.lim.maxQueued/2:
			return true
		}
		c.flushInline() // unless a flusher goroutine is at it
		select {
		case <-c.drained:
		case <-c.dead:
			return false
		}
	}
}

// dispatch calls the handler and queues its answer. An expensive request
// first waits until this connection's previous expensive answer is
// written, then for a server-wide slot, which it holds until its answer is
// encoded (encoding a large answer is part of its cost). false once the
// connection is dead.
func (c *serverConn) dispatch(id uint64, req Request) bool {
	if c.meta.HasPeer && !c.exeRead {
		// Read at the connection's first request, not at accept: a
		// connection that never completes a request (a probe, a storm)
		// costs no lookup, and a peer that is sending is alive, so its
		// pid is still its own.
		c.meta.Peer.Exe, c.exeRead = peerExe(c.meta.Peer.PID), true
	}
	m := c.meta
	m.RequestID = id
	var obs *observed
	if c.s.Observe != nil {
		obs = &observed{meta: m, req: req, start: time.Now()}
	}
	if !isExpensive(req) {
		return c.answer(id, c.s.Handler(m, req), obs)
	}
	if !c.acquire(c.gate) || !c.pace() || !c.acquire(c.s.sem) {
		return false
	}
	began := time.Now()
	ch := c.s.Handler(m, req)
	select {
	case r := <-ch: // answered inline, like journal_list
		c.s.observe(obs, r)
		b := c.encodeResponse(id, r)
		<-c.s.sem
		c.spent(began)
		return c.queueEncoded(id, b, true, nil)
	default:
	}
	enc := make(chan []byte, 1)
	go func() { // at most MaxExpensive of these exist
		r := <-ch
		c.s.observe(obs, r)
		b := c.encodeResponse(id, r)
		<-c.s.sem
		c.spent(began)
		enc <- b
	}()
	c.push(&pendingResp{id: id, enc: enc, expensive: true})
	return true
}

// The pacing of a connection's expensive requests is a token bucket of
// expensive work: it holds Server.ExpensiveBurst when full, refills at
// ExpensiveShare of the wall clock, and each expensive request takes what
// it cost (from the handler's call to its encoded answer). A request
// arriving while the bucket is below empty waits until it is empty again,
// so that, sustained, the connection's expensive work takes at most the
// share of the time. Cheap requests are never paced.
type expensivePace struct {
	mu     sync.Mutex
	tokens time.Duration // may go below zero: the debt of the last request
	at     time.Time     // when tokens was last brought up to date; zero: full
}

// refill brings the bucket up to now. Callers hold p.mu.
func (p *expensivePace) refill(now time.Time, burst time.Duration) {
	if p.at.IsZero() {
		p.tokens = burst
	} else if now.After(p.at) {
		p.tokens = min(burst, p.tokens+time.Duration(float64(now.Sub(p.at))*ExpensiveShare))
	}
	p.at = now
}

// wait is how long a request arriving at now waits before it may run.
func (p *expensivePace) wait(now time.Time, burst time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refill(now, burst)
	if p.tokens >= 0 {
		return 0
	}
	return time.Duration(float64(-p.tokens) / ExpensiveShare)
}

// take charges the bucket at now with a request that began at began.
func (p *expensivePace) take(began, now time.Time, burst time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refill(now, burst)
	p.tokens -= now.Sub(began)
}

// spent charges the connection's bucket with its expensive request that
// began at began, now done (answered and encoded).
func (c *serverConn) spent(began time.Time) {
	c.paced.take(began, time.Now(), c.s.lim.expensiveBurst)
}

// pace holds the connection's next expensive request while its bucket is
// below empty; false once the connection is dead.
func (c *serverConn) pace() bool {
	d := c.paced.wait(time.Now(), c.s.lim.expensiveBurst)
	if d <= 0 {
		return true
	}
	c.flushInline() // the answers queued so far go out meanwhile
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.dead:
		return false
	}
}

// acquire takes a slot of sem, writing the answers queued so far first if
// it has to wait (the gate is given back once they are written); false
// once the connection is dead.
func (c *serverConn) acquire(sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	c.flushInline()
	select {
	case sem <- struct{}{}:
		return true
	case <-c.dead:
		return false
	}
}

// answer queues a request's answer for the collector, in order. An answer
// that is there already is encoded here and counted against the queue
// bound at once, so a client pipelining requests that are answered inline
// cannot pile up answers faster than they are accounted for. false once
// the connection is dead (the bound was passed).
func (c *serverConn) answer(id uint64, ch <-chan Response, obs *observed) bool {
	select {
	case r := <-ch:
		c.s.observe(obs, r)
		r, start := c.streamOf(r)
		return c.queueEncoded(id, c.encodeResponse(id, r), false, start)
	default:
		c.push(&pendingResp{id: id, ch: ch, obs: obs})
		return true
	}
}

// queueEncoded counts an encoded answer against the bound and queues it:
// straight into the outbox when no earlier answer is still with the
// collector (a client that waits for each answer: one goroutine hop less),
// else behind them. start, when set, starts a Streaming answer's stream
// once the answer is queued.
func (c *serverConn) queueEncoded(id uint64, b []byte, expensive bool, start func()) bool {
	if !c.stage(len(b)) {
		return false
	}
	if c.outstanding.Load() == 0 {
		c.enqueue(b, expensive, true, byReader)
		if start != nil {
			start()
		}
		return true
	}
	c.push(&pendingResp{id: id, b: b, expensive: expensive, start: start})
	return true
}

// push hands an entry to the collector, writing the answers queued so far
// first if it has to wait (MaxInFlight entries are with the collector).
func (c *serverConn) push(p *pendingResp) {
	c.outstanding.Add(1)
	select {
	case c.pending <- p:
		return
	default:
	}
	c.flushInline()
	c.pending <- p
}

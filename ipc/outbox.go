package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// outFrame is an encoded frame body waiting to be written.
type outFrame struct {
	b         []byte
	expensive bool // an expensive request's response: free the gate once written
}

// killTimeout bounds the write of the last words to a connection that is
// closed by the server (an eviction).
const killTimeout = 50 * time.Millisecond

// collect takes the answers that were not there when the reader queued
// their request (and the reader's own once an earlier one is outstanding),
// in request order, as they arrive; encodes them and queues them. It never
// waits on the client, so what a client does not read is queued, counted
// and bounded, not held in handlers' channels. It drains every entry, even
// once the connection is dead, so that every expensive slot is given back.
func (c *serverConn) collect() {
	defer c.s.wg.Done()
	for p := range c.pending {
		switch {
		case p.b != nil:
			c.enqueue(p.b, p.expensive, true, byCollector)
		case p.enc != nil:
			c.enqueue(<-p.enc, p.expensive, false, byCollector)
		default:
			r := <-p.ch
			c.s.observe(p.obs, r)
			r, p.start = c.streamOf(r)
			if !c.isDead() { // else dropped, and its memory with it
				c.enqueue(c.encodeResponse(p.id, r), p.expensive, false, byCollector)
			}
		}
		if p.start != nil {
			p.start()
		}
		c.outstanding.Add(-1) // after the enqueue: the reader may go straight to the outbox now
	}
	c.finish()
}

func (c *serverConn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

func (c *serverConn) encodeResponse(id uint64, r Response) []byte {
	b, err := EncodeResponse(id, r)
	if err != nil {
		c.s.log().Error("encode response", "conn", c.id, "err", err)
		b, _ = EncodeResponse(id, Err{Message: "internal error: " + err.Error()})
	}
	if len(b) > MaxFrame {
		c.s.log().Error("response too large for a frame", "conn", c.id, "result", r.Result(), "bytes", len(b))
		b, _ = EncodeResponse(id, Err{Message: fmt.Sprintf("%s: the response is %d bytes, more than a frame's %d", r.Result(), len(b), MaxFrame)})
	}
	return b
}

// stage counts a frame the reader encoded against the queue bound; false
// (and the connection closed) when it does not fit.
func (c *serverConn) stage(n int) bool {
	c.omu.Lock()
	if c.isDead() {
		c.omu.Unlock()
		return false
	}
	if held := c.staged + c.queued + c.writing; held+4+n > c.s.lim.maxQueued {
		c.omu.Unlock()
		c.overflow(held, n)
		return false
	}
	c.staged += 4 + n
	c.omu.Unlock()
	return true
}

// overflow closes a connection whose queue would pass the bound.
func (c *serverConn) overflow(held, n int) {
	c.s.st.queueOverflows.Add(1)
	args := []any{"conn", c.id, "queued_bytes", held, "frame_bytes", n, "max_queued_bytes", c.s.lim.maxQueued}
	if c.meta.HasPeer {
		args = append(args, "uid", c.meta.Peer.UID, "pid", c.meta.Peer.PID)
	}
	c.s.log().Warn("closing a connection that does not read its responses: its outgoing queue is full", args...)
	c.kill("")
}

// inlineMax is how much of its own answers the reader queues to write
// itself; past it a flusher goroutine writes them while the reader goes on
// (a client that pipelines requests with large answers and reads them is
// not mistaken for one that does not read).
const inlineMax = 64 << 10

// flusherLinger is how long a flusher goroutine waits for more to write
// before it exits: a busy connection keeps one (no goroutine to start, no
// stack to grow per answer), an idle one has none.
const flusherLinger = time.Second

// Who queues a frame, which decides who writes it.
type enqueuer int

const (
	// byReader: the reader's own answers are only queued, up to
	// inlineMax; it writes them itself (flushInline) before it would wait
	// for anything, so the answers to a batch of pipelined requests go out
	// in one write and a client that waits for each answer costs no
	// goroutine hop.
	byReader enqueuer = iota
	// byCollector: an answer that came later is written by the collector
	// at once when nothing else is queued or waiting behind it; else by a
	// flusher goroutine, so that the collector goes on taking (and
	// counting) the answers that come.
	byCollector
	// byBroadcast: an event never blocks its sender: a flusher goroutine
	// writes it.
	byBroadcast
)

// enqueue queues an encoded frame; staged says the reader already counted
// it. A frame that would take the queue past MaxQueuedBytes closes the
// connection instead: its client does not read.
func (c *serverConn) enqueue(b []byte, expensive, staged bool, by enqueuer) {
	c.omu.Lock()
	if c.isDead() || c.closing {
		c.omu.Unlock()
		return
	}
	if staged {
		c.staged -= 4 + len(b)
	}
	if held := c.staged + c.queued + c.writing; held+4+len(b) > c.s.lim.maxQueued {
		c.omu.Unlock()
		c.overflow(held, len(b))
		return
	}
	c.out = append(c.out, outFrame{b: b, expensive: expensive})
	c.queued += 4 + len(b)
	switch {
	case c.flushing, by == byReader && c.queued < inlineMax:
		c.omu.Unlock()
		c.kickFlusher()
		return
	case by == byCollector && c.queued < inlineMax && len(c.pending) == 0:
		c.flushing = true
		c.omu.Unlock()
		c.flush(false)
		return
	}
	c.flushing = true
	c.s.wg.Add(1) // not closing: the collector's count is held, so Close is not past Wait
	c.omu.Unlock()
	go func() {
		defer c.s.wg.Done()
		c.flush(true)
	}()
}

// flushInline writes what is queued on the calling goroutine (the
// reader's), unless a flusher goroutine is at it.
func (c *serverConn) flushInline() {
	c.omu.Lock()
	if c.flushing || c.isDead() || len(c.out) == 0 {
		c.omu.Unlock()
		return
	}
	c.flushing = true
	c.omu.Unlock()
	c.flush(false)
}

// kickFlusher wakes a lingering flusher.
func (c *serverConn) kickFlusher() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flush writes what is queued, all of it in one writev per round, until
// the queue is empty; a flusher goroutine (linger) then waits up to
// flusherLinger for more before it exits. The one that finds the queue
// empty after the collector has finished tears the connection down.
func (c *serverConn) flush(linger bool) {
	var hdrs []byte
	var idle *time.Timer
	for {
		c.omu.Lock()
		dead := c.isDead()
		if dead || len(c.out) == 0 {
			if linger && !dead && !c.closing {
				c.omu.Unlock()
				if idle == nil {
					idle = time.NewTimer(flusherLinger)
				} else {
					idle.Reset(flusherLinger)
				}
				select {
				case <-c.kick:
				case <-c.dead:
				case <-idle.C:
					linger = false // exit unless something came meanwhile
				}
				continue
			}
			c.flushing = false
			last := c.closing
			c.omu.Unlock()
			if idle != nil {
				idle.Stop()
			}
			if last {
				c.teardown()
			}
			return
		}
		batch := c.out
		c.out = nil
		c.writing, c.queued = c.queued, 0
		c.omu.Unlock()
		err := c.writeBatch(batch, &hdrs)
		c.omu.Lock()
		c.writing = 0
		c.wroteLocked()
		c.omu.Unlock()
		if err != nil {
			if !c.isDead() {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					c.s.st.writeTimeouts.Add(1)
					c.s.log().Debug("closing connection: a write blocked for the write timeout (the client does not read)", "conn", c.id, "write_timeout", c.s.lim.writeTimeout.String())
				} else {
					c.s.log().Debug("write failed; closing connection", "conn", c.id, "err", err)
				}
			}
			c.kill("")
			continue
		}
		for _, f := range batch {
			if f.expensive {
				select {
				case <-c.gate:
				default:
				}
			}
		}
		select {
		case c.drained <- struct{}{}:
		default:
		}
		linger = linger || idle != nil // written: a flusher goroutine lingers again
	}
}

func (c *serverConn) writeBatch(batch []outFrame, hdrs *[]byte) error {
	if need := 4 * len(batch); cap(*hdrs) < need {
		*hdrs = make([]byte, need)
	}
	h := *hdrs
	bufs := make(net.Buffers, 0, 2*len(batch))
	for i, f := range batch {
		binary.LittleEndian.PutUint32(h[4*i:], uint32(len(f.b)))
		bufs = append(bufs, h[4*i:4*i+4], f.b)
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.lim.writeTimeout))
	_, err := bufs.WriteTo(c.nc)
	return err
}

// finish is the collector's end: the flusher writes what is left, then the
// connection is torn down (by whichever of the two is last).
func (c *serverConn) finish() {
	c.omu.Lock()
	c.closing = true
	last := !c.flushing
	c.omu.Unlock()
	if last {
		c.teardown()
		return
	}
	c.kickFlusher() // a lingering flusher: the last word is its
}

// kill closes the connection now and drops what is queued. With a message,
// and when nothing is being written, the client is told why first.
func (c *serverConn) kill(msg string) {
	c.omu.Lock()
	if c.isDead() {
		c.omu.Unlock()
		return
	}
	idle := !c.flushing
	c.out, c.queued, c.staged = nil, 0, 0
	close(c.dead)
	c.omu.Unlock()
	if msg != "" && idle {
		if b, err := EncodeResponse(0, Err{Message: msg}); err == nil {
			c.nc.SetWriteDeadline(time.Now().Add(killTimeout))
			_ = WriteFrame(c.nc, b)
		}
	}
	c.nc.Close()
}

// teardown closes the connection and forgets it.
func (c *serverConn) teardown() {
	c.kill("")
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.releaseSlot(c)
	c.s.mu.Unlock()
}

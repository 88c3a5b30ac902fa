package ipc

import (
	"context"
	"errors"
	"fmt"
)

// Conn is one client connection as a streaming response (Streaming) sees
// it: events pushed to this connection only, with the connection's own
// flow control. Safe for concurrent use.
type Conn interface {
	// ID is the connection's id (Meta.ConnID).
	ID() uint64
	// Push queues ev on this connection. It never blocks. Like Broadcast,
	// a frame that would take the connection's queue past
	// Server.MaxQueuedBytes closes the connection; a pusher that calls
	// WaitRoom before each Push never meets that bound. ErrConnClosed once
	// the connection is gone (or no longer written to: a Drain).
	Push(ev Event) error
	// WaitRoom waits until the connection's outgoing queue is under half
	// of MaxQueuedBytes: a client that reads slowly is pushed to at its
	// pace; one that stops reading is closed by the write timeout, like any
	// other. ErrConnClosed once the connection is gone, ctx's error when
	// it ends first.
	WaitRoom(ctx context.Context) error
	// Done is closed when the connection is gone.
	Done() <-chan struct{}
	// Close closes the connection, dropping what is queued.
	Close()
}

// ErrConnClosed is returned by Conn's methods once its connection is gone.
var ErrConnClosed = errors.New("ipc: connection closed")

// Streaming is a response after which the handler pushes events on the
// request's connection: the server queues Response (the frame the client
// gets as the answer), and only then calls Start, on a goroutine of its
// own, with the connection. So every pushed event follows the answer, and
// the Handler's signature stays as it is for every other op.
type Streaming struct {
	Response
	Start func(Conn)
}

// streamOf splits a Streaming response into the response to encode and
// the function that starts its stream (nil for any other response).
func (c *serverConn) streamOf(r Response) (Response, func()) {
	s, ok := r.(Streaming)
	if !ok {
		return r, nil
	}
	if s.Start == nil {
		return s.Response, nil
	}
	return s.Response, func() {
		if !c.isDead() {
			go s.Start(c)
		}
	}
}

func (c *serverConn) ID() uint64 { return c.id }

func (c *serverConn) Done() <-chan struct{} { return c.dead }

func (c *serverConn) Close() { c.kill("") }

func (c *serverConn) Push(ev Event) error {
	b, err := EncodeEvent(ev)
	if err != nil {
		return fmt.Errorf("ipc: encode event %s: %w", ev.EventName(), err)
	}
	if len(b) > MaxFrame {
		return fmt.Errorf("ipc: event %s: %d bytes is more than a frame's %d", ev.EventName(), len(b), MaxFrame)
	}
	c.enqueue(b, false, false, byBroadcast)
	c.omu.Lock()
	gone := c.isDead() || c.closing
	c.omu.Unlock()
	if gone {
		return ErrConnClosed
	}
	return nil
}

func (c *serverConn) WaitRoom(ctx context.Context) error {
	for {
		c.omu.Lock()
		if c.isDead() || c.closing {
			c.omu.Unlock()
			return ErrConnClosed
		}
		if c.staged+c.queued+c.writing < c.s.lim.maxQueued/2 {
			c.omu.Unlock()
			return nil
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.omu.Unlock()
		select {
		case <-room:
		case <-c.dead:
			return ErrConnClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wroteLocked wakes the WaitRoom callers after a write (under omu).
func (c *serverConn) wroteLocked() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

package ipc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Creds are a connected peer's credentials (SO_PEERCRED on Linux).
type Creds struct {
	UID, GID, PID uint32
}

// Meta describes where a request came from.
type Meta struct {
	ConnID    uint64
	RequestID uint64
	// HasPeer is set when Peer was read from the socket.
	HasPeer bool
	Peer    Creds
}

// Handler receives each decoded request, in order per connection, on the
// connection's reader goroutine. It must not block for long: it returns a
// channel on which the response will be delivered (buffered, so the handler
// never blocks on a closed connection). Responses are written in request
// order per connection; connections are served concurrently.
type Handler func(meta Meta, req Request) <-chan Response

// Reply returns a channel that already holds r.
func Reply(r Response) <-chan Response {
	ch := make(chan Response, 1)
	ch <- r
	return ch
}

// Server serves protocol v1 on listeners.
type Server struct {
	Handler Handler
	Log     *slog.Logger
	// MaxInFlight bounds pipelined requests per connection (default 128).
	MaxInFlight int
	// EventBuffer bounds queued events per connection (default 256); a
	// client that does not read its events loses the oldest ones.
	EventBuffer int

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	closed    bool
	nextConn  atomic.Uint64
	wg        sync.WaitGroup
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("ipc: server closed")

// Serve accepts connections on l until Close. Temporary accept errors are
// logged and retried, never fatal.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*serverConn]struct{}{}
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log().Warn("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.serveConn(c)
	}
}

// Broadcast queues ev on every open connection.
func (s *Server) Broadcast(ev Event) {
	b, err := EncodeEvent(ev)
	if err != nil {
		s.log().Error("encode event", "event", ev.EventName(), "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.pushEvent(b)
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines. Responses not yet written are dropped.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Drain stops accepting and waits (up to ctx) until every connection has
// written the responses to the requests it already read, then closes.
func (s *Server) Drain(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.Close()
	}
}

type serverConn struct {
	s       *Server
	nc      net.Conn
	id      uint64
	meta    Meta
	pending chan pendingResp
	events  chan []byte
	stop    chan struct{}
	wdone   chan struct{} // closed when the writer exits
	once    sync.Once
}

type pendingResp struct {
	id uint64
	ch <-chan Response
}

func (s *Server) serveConn(nc net.Conn) {
	c := &serverConn{s: s, nc: nc, id: s.nextConn.Add(1)}
	c.meta.ConnID = c.id
	c.meta.Peer, c.meta.HasPeer = peerCreds(nc)
	inflight := s.MaxInFlight
	if inflight <= 0 {
		inflight = 128
	}
	evbuf := s.EventBuffer
	if evbuf <= 0 {
		evbuf = 256
	}
	c.pending = make(chan pendingResp, inflight)
	c.events = make(chan []byte, evbuf)
	c.stop = make(chan struct{})
	c.wdone = make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go c.read()
	go c.write()
}

func (c *serverConn) stopReading() {
	c.once.Do(func() {
		close(c.stop)
		// Unblock the reader; the writer finishes what is pending.
		c.nc.SetReadDeadline(time.Now())
	})
}

func (c *serverConn) pushEvent(b []byte) {
	for {
		select {
		case c.events <- b:
			return
		default:
		}
		select { // full: drop the oldest
		case <-c.events:
		default:
		}
	}
}

// read decodes requests and hands them to the handler in order.
func (c *serverConn) read() {
	defer c.s.wg.Done()
	defer close(c.pending)
	var buf []byte
	br := bufio.NewReaderSize(c.nc, 32<<10) // one read syscall for many small frames
	for {
		body, err := ReadFrame(br, buf)
		if err != nil {
			select {
			case <-c.stop:
			default:
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					c.s.log().Debug("closing connection: unreadable frame", "conn", c.id, "err", err)
				}
			}
			return
		}
		if cap(body) <= 64<<10 {
			buf = body // keep small buffers; let big ones go
		}
		f, err := DecodeFrame(body)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) && de.HasID {
				if !c.queue(pendingResp{id: de.ID, ch: Reply(Err{Message: de.Msg})}) {
					return
				}
				continue
			}
			c.s.log().Debug("closing connection: unreadable frame", "conn", c.id, "err", err)
			return
		}
		switch f.Kind {
		case "request":
			m := c.meta
			m.RequestID = f.ID
			if !c.queue(pendingResp{id: f.ID, ch: c.s.Handler(m, f.Request)}) {
				return
			}
		case "response":
			if !c.queue(pendingResp{id: f.ID, ch: Reply(Err{Message: "frame: a client sends request frames, not response frames"})}) {
				return
			}
		default:
			c.s.log().Debug("ignoring event frame from client", "conn", c.id)
		}
	}
}

// queue hands a pending response to the writer; false once it is gone.
func (c *serverConn) queue(p pendingResp) bool {
	select {
	case c.pending <- p:
		return true
	case <-c.wdone:
		return false
	}
}

// write sends responses in request order, and events in between.
func (c *serverConn) write() {
	defer c.s.wg.Done()
	defer close(c.wdone)
	defer func() {
		c.nc.Close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	send := func(b []byte) bool {
		c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := WriteFrame(c.nc, b); err != nil {
			c.s.log().Debug("write failed; closing connection", "conn", c.id, "err", err)
			return false
		}
		return true
	}
	for {
		select {
		case p, ok := <-c.pending:
			if !ok {
				return
			}
			var r Response
		wait:
			for {
				select {
				case r = <-p.ch:
					break wait
				case ev := <-c.events:
					if !send(ev) {
						return
					}
				}
			}
			b, err := EncodeResponse(p.id, r)
			if err != nil {
				c.s.log().Error("encode response", "conn", c.id, "err", err)
				b, _ = EncodeResponse(p.id, Err{Message: "internal error: " + err.Error()})
			}
			if len(b) > MaxFrame {
				c.s.log().Error("response too large for a frame", "conn", c.id, "result", r.Result(), "bytes", len(b))
				b, _ = EncodeResponse(p.id, Err{Message: fmt.Sprintf("%s: the response is %d bytes, more than a frame's %d", r.Result(), len(b), MaxFrame)})
			}
			if !send(b) {
				return
			}
		case ev := <-c.events:
			if !send(ev) {
				return
			}
		}
	}
}

package ipc

import (
	"container/list"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Creds are a connected peer's credentials (SO_PEERCRED on Linux).
type Creds struct {
	UID, GID, PID uint32
	// Exe is the peer's executable, read at the connection's first
	// request (/proc/PID/exe on Linux; "" when it could not be read).
	Exe string
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
// never blocks on a closed connection), and it must deliver one. Responses
// are written in request order per connection; connections are served
// concurrently.
type Handler func(meta Meta, req Request) <-chan Response

// Answered is one request and its answer, as Server.Observe sees them.
type Answered struct {
	Meta     Meta
	Request  Request // nil: the frame did not decode to a request (answered err)
	Response Response
	// Took is the time from the request's dispatch to its answer being
	// ready, the handler's and the pipeline's time (not the write).
	Took time.Duration
}

// Op is the request's op, or "" when it did not decode.
func (a Answered) Op() string {
	if a.Request == nil {
		return ""
	}
	return a.Request.Op()
}

// observed is what Observe needs of a request while its answer is pending.
type observed struct {
	meta  Meta
	req   Request
	start time.Time
}

func (s *Server) observe(o *observed, r Response) {
	if o == nil {
		return
	}
	if st, ok := r.(Streaming); ok {
		r = st.Response
	}
	s.Observe(Answered{Meta: o.meta, Request: o.req, Response: r, Took: time.Since(o.start)})
}

// Reply returns a channel that already holds r.
func Reply(r Response) <-chan Response {
	ch := make(chan Response, 1)
	ch <- r
	return ch
}

// Defaults of the Server's limits.
const (
	// DefaultMaxConns: the one real client (the orchestrator) holds one
	// connection, its supervisor probes with short-lived ones and
	// overlayctl adds a few; 1024 is a hundred times that. An idle
	// connection costs one descriptor, two goroutines and a 4 KiB read
	// buffer, about 15 KiB in all (TestIdleConnectionCost), so 1024 of them
	// cost about 15 MiB of a 256 MiB budget and a twentieth of a
	// 20,000-descriptor limit, leaving the rest to netlink, TUN and the
	// journal. Serve lowers it to half of RLIMIT_NOFILE when that is
	// smaller.
	DefaultMaxConns = 1024
	// DefaultReservedForRoot is how many of MaxConns only uid-0 peers may
	// take (see Server.ReservedForRoot).
	DefaultReservedForRoot = 16
	// DefaultFrameTimeout is how long a started frame may take to arrive.
	DefaultFrameTimeout = 10 * time.Second
	// DefaultWriteTimeout is how long one write to a client may block.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxQueuedBytes bounds a connection's encoded frames waiting
	// to be written: two frames of the largest size.
	DefaultMaxQueuedBytes = 2 * (MaxFrame + 4)
	// DefaultMaxExpensive is how many expensive requests (isExpensive) run
	// at once, server-wide: one per core of a small node.
	DefaultMaxExpensive = 2
	// DefaultMaxInFlight bounds pipelined requests per connection.
	DefaultMaxInFlight = 128
	// DefaultExpensiveBurst is how much expensive work (isExpensive: the
	// time from the handler's call to the encoded answer) a connection
	// may have done back to back before it is paced to ExpensiveShare.
	DefaultExpensiveBurst = time.Second
	// ExpensiveShare is the part of the wall clock a connection's
	// expensive requests may take once its burst is spent: a client that
	// pipelines journal_verify for a minute gets half of a core, however
	// fast it asks, and the orchestrator's commands keep the rest of a
	// small node.
	ExpensiveShare = 0.5
)

// readBufSize is a connection's read buffer: small frames that arrive
// together (a pipelining client) are split out of one read; a frame larger
// than the buffer is read into its own growing buffer.
const readBufSize = 4 << 10

// Server serves protocol v1 on listeners. The zero value with a Handler
// serves with the default limits; set the fields before the first Serve.
type Server struct {
	Handler Handler
	Log     *slog.Logger
	// Observe, when set, is called once per request whose answer is ready
	// (before it is written): for metrics and the decision log. It runs on
	// the connection's reader or collector goroutine and must not block.
	// Requests that failed to decode are observed too, with a nil Request.
	Observe func(Answered)
	// MaxInFlight bounds pipelined requests per connection whose answers
	// have not come yet (default 128): the reader waits when that many are
	// outstanding. An answer that comes later is counted against
	// MaxQueuedBytes only once it is there, so this also bounds how many
	// such answers a client that does not read can make the daemon hold.
	MaxInFlight int

	// MaxConns bounds open connections (default DefaultMaxConns, or half
	// of RLIMIT_NOFILE when that is smaller). At the limit a new
	// connection evicts the oldest open connection that has not yet
	// completed a frame (idle since it connected, or stuck in its first
	// frame); when there is none it is answered one err frame with id 0
	// naming the limit, and closed. Neither costs a goroutine.
	MaxConns int
	// ReservedForRoot is how many of MaxConns are kept for peers with uid
	// 0 (SO_PEERCRED; the orchestrator runs as root): other peers may hold
	// at most MaxConns-ReservedForRoot connections, so a non-root member of
	// the socket's group cannot lock the orchestrator out even with
	// connections that do complete frames. 0 means
	// DefaultReservedForRoot, negative means none. Peers without
	// credentials (not a unix socket) count as non-root.
	ReservedForRoot int
	// FrameTimeout is how long a frame may take to arrive once its first
	// byte has (default 10 s); a connection that is slower is closed. A
	// connection idle between frames has no deadline. Negative disables.
	FrameTimeout time.Duration
	// WriteTimeout bounds one write to a client (default 10 s): a client
	// that stops reading is closed when it passes.
	WriteTimeout time.Duration
	// MaxQueuedBytes bounds the encoded frames (responses and events)
	// waiting to be written to one connection, the frame being written
	// included (default DefaultMaxQueuedBytes). Past half of it the
	// connection's next request waits until writes bring the queue under
	// again: a slow reader is served at its pace, and a client that does
	// not read stops being read and is closed by WriteTimeout. A frame
	// that would take the queue past the bound (an event, an answer that
	// came later) closes the connection at once. Either way what was
	// queued is dropped.
	MaxQueuedBytes int
	// MaxExpensive bounds expensive requests (isExpensive) in flight
	// server-wide (default 2): a slot is taken before the handler is
	// called and given back once its response has arrived and been encoded
	// (encoding a large response is part of the cost). Per connection at
	// most one runs: the reader dispatches the next expensive request once
	// the previous one's response has been written. Cheap requests never
	// wait for them, except behind an expensive request of their own
	// connection.
	MaxExpensive int
	// ExpensiveBurst is how much expensive work a connection may do back
	// to back before its next expensive requests are held so that they
	// take at most ExpensiveShare of the time (default
	// DefaultExpensiveBurst; negative: pace from the first one). An
	// overlayctl paging through a journal runs at full speed for that
	// long, then at the share.
	ExpensiveBurst time.Duration

	setupOnce sync.Once
	lim       limits
	sem       chan struct{} // expensive requests in flight, server-wide
	done      chan struct{} // closed (under mu) by Close and Drain: stop accepting

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	open      int // connections that hold a slot of MaxConns
	openOther int // of them, from peers that are not root
	nextConn  atomic.Uint64
	wg        sync.WaitGroup
	// Connections that hold a slot and completed no frame, oldest first,
	// of peers that are root and of the others (under mu).
	unframedRoot, unframedOther list.List

	reserveMu sync.Mutex
	reserve   *os.File // a descriptor kept for accepting-and-refusing when out of them

	acceptBurst burst // accept errors
	limitBurst  burst // refusals and evictions at the connection limit
	st          counters
}

// limits are the effective values of the Server's fields.
type limits struct {
	maxConns, reservedRoot int
	frameTimeout           time.Duration
	writeTimeout           time.Duration
	maxQueued              int
	maxInFlight            int
	expensiveBurst         time.Duration
}

// isExpensive tells the requests that are costly to answer: the
// inspection ops that read the whole journal or state (journal_list,
// journal_verify, state_dump, journal_query, journal_stats).
func isExpensive(r Request) bool {
	switch r.(type) {
	case JournalList, JournalVerify, StateDump, *JournalList, *JournalVerify, *StateDump,
		JournalQuery, JournalStats, *JournalQuery, *JournalStats,
		JournalCompact, *JournalCompact: // CMP: a compaction reads and writes the whole journal
		return true
	case JournalBackup, *JournalBackup: // LIVE: a copy of the journal file
		return true
	}
	return false
}

func (s *Server) setup() {
	s.setupOnce.Do(func() {
		l := limits{
			maxConns:     s.MaxConns,
			reservedRoot: s.ReservedForRoot,
			frameTimeout: s.FrameTimeout,
			writeTimeout: s.WriteTimeout,
			maxQueued:    s.MaxQueuedBytes,
			maxInFlight:  s.MaxInFlight,

			expensiveBurst: s.ExpensiveBurst,
		}
		switch {
		case l.expensiveBurst == 0:
			l.expensiveBurst = DefaultExpensiveBurst
		case l.expensiveBurst < 0:
			l.expensiveBurst = 0
		}
		if l.maxConns <= 0 {
			l.maxConns = DefaultMaxConns
			if fds := descriptorLimit(); fds > 0 && fds/2 < l.maxConns {
				l.maxConns = max(fds/2, 1)
			}
		}
		switch {
		case l.reservedRoot == 0:
			l.reservedRoot = DefaultReservedForRoot
		case l.reservedRoot < 0:
			l.reservedRoot = 0
		}
		l.reservedRoot = min(l.reservedRoot, l.maxConns/2)
		if l.frameTimeout == 0 {
			l.frameTimeout = DefaultFrameTimeout
		}
		if l.writeTimeout <= 0 {
			l.writeTimeout = DefaultWriteTimeout
		}
		if l.maxQueued <= 0 {
			l.maxQueued = DefaultMaxQueuedBytes
		}
		if l.maxInFlight <= 0 {
			l.maxInFlight = DefaultMaxInFlight
		}
		s.lim = l
		n := s.MaxExpensive
		if n <= 0 {
			n = DefaultMaxExpensive
		}
		s.sem = make(chan struct{}, n)
		s.done = make(chan struct{})
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*serverConn]struct{}{}
	})
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("ipc: server closed")

// Serve accepts connections on l until Close. Accept errors never end it:
// they are retried with an exponential backoff (5 ms to 1 s) and logged once
// per burst; out of descriptors, the server's reserved descriptor lets it
// accept and refuse the waiting connections instead of leaving them queued.
func (s *Server) Serve(l net.Listener) error {
	s.setup()
	s.mu.Lock()
	if s.isClosed() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.takeReserve()
	return s.acceptLoop(l)
}

// Broadcast queues ev on every open connection.
func (s *Server) Broadcast(ev Event) {
	s.setup()
	b, err := EncodeEvent(ev)
	if err != nil {
		s.log().Error("encode event", "event", ev.EventName(), "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.enqueue(b, false, false, byBroadcast)
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines. Responses not yet written are dropped.
func (s *Server) Close() error {
	s.setup()
	s.stopAccepting()
	s.mu.Lock()
	for c := range s.conns {
		c.kill("")
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Drain stops accepting and waits (up to ctx) until every connection has
// written the responses to the requests it already read, then closes.
func (s *Server) Drain(ctx context.Context) {
	s.setup()
	s.stopAccepting()
	s.mu.Lock()
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

// stopAccepting closes the listeners and the reserved descriptor.
func (s *Server) stopAccepting() {
	s.mu.Lock()
	if !s.isClosed() {
		close(s.done)
	}
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.dropReserve()
}

// Stats are the server's counters.
type Stats struct {
	// Open is the number of connections being served.
	Open int
	// PartialFrames is how many of them are in the middle of a frame.
	PartialFrames int
	// ExpensiveRunning is how many expensive requests are in flight.
	ExpensiveRunning int
	// Refused counts connections answered "too many connections" and
	// closed; Evicted those closed to make room for a new one because they
	// had completed no frame.
	Refused, Evicted uint64
	// RefusedNoDescriptors counts connections accepted on the reserved
	// descriptor while out of descriptors, answered and closed.
	RefusedNoDescriptors uint64
	// FrameTimeouts counts connections closed because a started frame did
	// not complete within FrameTimeout.
	FrameTimeouts uint64
	// QueueOverflows counts connections closed because their outgoing
	// queue passed MaxQueuedBytes; WriteTimeouts those closed because a
	// write blocked for WriteTimeout.
	QueueOverflows, WriteTimeouts uint64
	// AcceptErrors counts failed accepts.
	AcceptErrors uint64
}

type counters struct {
	partial                                      atomic.Int64
	refused, evicted, refusedFD                  atomic.Uint64
	frameTimeouts, queueOverflows, writeTimeouts atomic.Uint64
	acceptErrors                                 atomic.Uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.setup()
	s.mu.Lock()
	open := s.open
	s.mu.Unlock()
	return Stats{
		Open:                 open,
		PartialFrames:        int(s.st.partial.Load()),
		ExpensiveRunning:     len(s.sem),
		Refused:              s.st.refused.Load(),
		Evicted:              s.st.evicted.Load(),
		RefusedNoDescriptors: s.st.refusedFD.Load(),
		FrameTimeouts:        s.st.frameTimeouts.Load(),
		QueueOverflows:       s.st.queueOverflows.Load(),
		WriteTimeouts:        s.st.writeTimeouts.Load(),
		AcceptErrors:         s.st.acceptErrors.Load(),
	}
}

package ipc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DialOptions tune Dial.
type DialOptions struct {
	// Attempts is how many times to try connecting (default 1).
	Attempts int
	// Backoff is the first wait between attempts (default 100 ms); it
	// doubles up to MaxBackoff (default 1 s).
	Backoff, MaxBackoff time.Duration
	// CallTimeout is the deadline of a call whose context has none
	// (default 30 s).
	CallTimeout time.Duration
	// Events receives server events; nil drops them. Sends never block: a
	// full channel loses the event.
	Events chan<- Event
}

// RemoteError is an err response.
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return e.Message }

// ErrClientClosed is returned by calls on a closed client.
var ErrClientClosed = errors.New("ipc: client closed")

// ErrRefused matches (errors.Is) a *RefusedError.
var ErrRefused = errors.New("ipc: daemon refused the connection")

// RefusedError is a connection the daemon refused or closed: it answered
// an err frame with id 0 (too many connections, out of descriptors,
// evicted) and closed the connection. It also matches ErrClientClosed.
type RefusedError struct{ Message string }

func (e *RefusedError) Error() string { return "ipc: daemon refused the connection: " + e.Message }

// Is matches ErrRefused and ErrClientClosed.
func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || target == ErrClientClosed
}

// refusalWait bounds how long a call whose write failed waits for the
// reason the daemon sent before closing (it is already on its way).
const refusalWait = time.Second

// Client is a connection to the daemon. It is safe for concurrent use:
// calls are multiplexed by id and may be in flight together.
type Client struct {
	nc      net.Conn
	opt     DialOptions
	wmu     sync.Mutex
	nextID  atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]chan callResult
	err     error // set once the connection is gone
	done    chan struct{}
	// follow receives journal_event frames (Follow), blocking the reader:
	// a follower that consumes slowly holds the daemon back, it does not
	// lose events. Set before the journal_follow request is sent.
	follow atomic.Pointer[chan JournalFollowEvent]
}

type callResult struct {
	resp Response
	err  error
}

// Dial connects to the daemon's socket, retrying with backoff. A daemon
// that refuses the connection (too many connections) answers it one err
// frame and closes it; that surfaces as a *RefusedError (ErrRefused) from
// the first Call and from Err, never as a hang.
func Dial(ctx context.Context, path string, opt DialOptions) (*Client, error) {
	if opt.Attempts <= 0 {
		opt.Attempts = 1
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 100 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = time.Second
	}
	var d net.Dialer
	wait := opt.Backoff
	var err error
	for i := 0; i < opt.Attempts; i++ {
		var nc net.Conn
		if nc, err = dialNet(ctx, &d, path); err == nil {
			return NewClient(nc, opt), nil
		}
		if i == opt.Attempts-1 {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("ipc: connect %s: %w (last error: %v)", path, ctx.Err(), err)
		}
		wait = min(2*wait, opt.MaxBackoff)
	}
	return nil, fmt.Errorf("ipc: connect %s after %d attempt(s): %w", path, opt.Attempts, err)
}

// NewClient wraps an established connection.
func NewClient(nc net.Conn, opt DialOptions) *Client {
	if opt.CallTimeout <= 0 {
		opt.CallTimeout = 30 * time.Second
	}
	c := &Client{nc: nc, opt: opt, pending: map[uint64]chan callResult{}, done: make(chan struct{})}
	go c.read()
	return c
}

func (c *Client) read() {
	var buf []byte
	var err error
	br := bufio.NewReaderSize(c.nc, 32<<10)
	for {
		var body []byte
		if body, err = ReadFrame(br, buf); err != nil {
			break
		}
		buf = body
		f, derr := DecodeFrame(body)
		if derr != nil {
			var de *DecodeError
			if errors.As(derr, &de) && de.HasID {
				c.deliver(de.ID, callResult{err: fmt.Errorf("ipc: undecodable response: %w", derr)})
				continue
			}
			err = fmt.Errorf("ipc: unreadable frame from server: %w", derr)
			break
		}
		switch f.Kind {
		case "response":
			e, isErr := f.Response.(Err)
			switch {
			case isErr && f.ID == 0:
				// Not an answer (ids start at 1): the daemon refuses this
				// connection and closes it.
				c.fail(&RefusedError{Message: e.Message})
				return
			case isErr:
				c.deliver(f.ID, callResult{err: &RemoteError{Message: e.Message}})
			default:
				c.deliver(f.ID, callResult{resp: f.Response})
			}
		case "event":
			if je, ok := f.Event.(JournalFollowEvent); ok {
				if sink := c.follow.Load(); sink != nil {
					select {
					case *sink <- je:
					case <-c.done:
					}
					continue
				}
			}
			if c.opt.Events != nil {
				select {
				case c.opt.Events <- f.Event:
				default:
				}
			}
		}
	}
	c.fail(fmt.Errorf("%w: %v", ErrClientClosed, err))
}

func (c *Client) deliver(id uint64, r callResult) {
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		ch <- r
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
	for id, ch := range c.pending {
		ch <- callResult{err: c.err}
		delete(c.pending, id)
	}
	c.mu.Unlock()
	c.nc.Close()
}

// Call sends req and waits for its response. An err response is returned
// as a *RemoteError.
func (c *Client) Call(ctx context.Context, req Request) (Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opt.CallTimeout)
		defer cancel()
	}
	id := c.nextID.Add(1)
	body, err := EncodeRequest(id, req)
	if err != nil {
		return nil, err
	}
	ch := make(chan callResult, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetWriteDeadline(dl)
	}
	err = WriteFrame(c.nc, body)
	c.wmu.Unlock()
	if err != nil {
		// A daemon that refuses a connection answers why and closes it:
		// the write fails, the reason is in the read direction.
		t := time.NewTimer(refusalWait)
		select {
		case <-c.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		var re *RefusedError
		if errors.As(c.Err(), &re) {
			return nil, re
		}
		c.fail(fmt.Errorf("%w: write: %v", ErrClientClosed, err))
		return nil, fmt.Errorf("ipc: %s: %w", req.Op(), err)
	}
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("ipc: %s (id %d): %w", req.Op(), id, ctx.Err())
	}
}

// Err is why the connection is gone (a *RefusedError when the daemon
// refused it), nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the connection is gone.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection; pending calls fail.
func (c *Client) Close() error {
	c.fail(ErrClientClosed)
	return nil
}

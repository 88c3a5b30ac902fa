package ipc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Accept backoff: the first wait after a failed accept and the longest.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Out of descriptors, at most refuseBatch waiting connections are accepted
// on the reserve and refused per failed accept; each accept waits at most
// refuseWait for a connection to be there.
const (
	refuseBatch = 256
	refuseWait  = 2 * time.Millisecond
)

// refuseTimeout bounds the write of a refusal (one small frame to a fresh
// connection, which never blocks unless the peer is gone).
const refuseTimeout = 100 * time.Millisecond

func (s *Server) acceptLoop(l net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			s.st.acceptErrors.Add(1)
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if log, n, since := s.acceptBurst.hit(time.Now()); log {
				if n == 1 {
					s.log().Warn("accept failed; backing off and retrying (logged once per burst)", "listener", l.Addr().String(), "err", err, "retry_in", backoff)
				} else {
					s.log().Warn("accept still failing", "listener", l.Addr().String(), "err", err, "errors", n, "since", since.Format(time.RFC3339))
				}
			}
			if outOfDescriptors(err) && s.refuseOnReserve(l, err) > 0 {
				backoff = minBackoff // the backlog drains: keep at it
			}
			if !s.sleep(backoff) {
				return ErrServerClosed
			}
			continue
		}
		if n, lasted, ok := s.acceptBurst.end(time.Now()); ok {
			s.log().Info("accepting connections again", "listener", l.Addr().String(), "failed_accepts", n, "for", lasted.Round(time.Millisecond).String())
		}
		backoff = 0
		s.admit(nc)
	}
}

// sleep waits d, or less when the server closes; false once it has.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// refuseOnReserve is the answer to EMFILE: it gives back the reserved
// descriptor, accepts the connections that wait (each answered an err frame
// and closed at once, so the descriptor is free again for the next one),
// then takes the reserve again. It returns how many it refused; none when
// the listener cannot take an accept deadline (it would block with the
// reserve given away) or the reserve is not held.
func (s *Server) refuseOnReserve(l net.Listener, cause error) int {
	dl, ok := l.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return 0
	}
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	if s.reserve == nil {
		s.takeReserveLocked() // lost earlier to someone else; maybe free now
		return 0
	}
	s.reserve.Close()
	s.reserve = nil
	msg := fmt.Sprintf("out of file descriptors (%v); try again later", errnoText(cause))
	n := 0
	for n < refuseBatch {
		if dl.SetDeadline(time.Now().Add(refuseWait)) != nil {
			break
		}
		nc, err := l.Accept()
		if err != nil {
			break
		}
		n++
		s.st.refusedFD.Add(1)
		refuse(nc, msg)
	}
	dl.SetDeadline(time.Time{})
	s.takeReserveLocked()
	return n
}

// takeReserve opens the reserved descriptor if it is not held.
func (s *Server) takeReserve() {
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	s.takeReserveLocked()
}

func (s *Server) takeReserveLocked() {
	if s.reserve != nil || s.isClosed() {
		return
	}
	if f, err := os.Open(os.DevNull); err == nil {
		s.reserve = f
	}
}

func (s *Server) dropReserve() {
	s.reserveMu.Lock()
	defer s.reserveMu.Unlock()
	if s.reserve != nil {
		s.reserve.Close()
		s.reserve = nil
	}
}

// refuse answers nc one err frame with id 0 and closes it.
func refuse(nc net.Conn, msg string) {
	if b, err := EncodeResponse(0, Err{Message: msg}); err == nil {
		nc.SetWriteDeadline(time.Now().Add(refuseTimeout))
		_ = WriteFrame(nc, b) // the peer may be gone already: nothing to do
	}
	nc.Close()
}

package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// listener is the UDP and TCP server on one address.
type listener struct {
	addr netip.AddrPort
	udp  *udpServer
	tcp  *mdns.Server
}

// listen opens UDP and TCP sockets on ap and serves them with h. The
// sockets may bind an address the host does not hold yet (the overlay
// device can come up after the server): see freebind.
func listen(ap netip.AddrPort, s *Server) (*listener, error) {
	lc := net.ListenConfig{Control: freebind}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc, err := lc.ListenPacket(ctx, "udp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("dns: listen udp %s: %w", ap, err)
	}
	tl, err := lc.Listen(ctx, "tcp", ap.String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns: listen tcp %s: %w", ap, err)
	}
	l := &listener{addr: ap}
	l.tcp = &mdns.Server{Listener: tl, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		IdleTimeout: func() time.Duration { return 10 * time.Second }}
	if err := serve(l.tcp); err != nil {
		pc.Close()
		tl.Close()
		return nil, err
	}
	l.udp = serveUDP(pc.(*net.UDPConn), s)
	return l, nil
}

// serve starts srv on its socket and waits until it runs (Shutdown of a
// server that has not started fails and leaves the socket open).
func serve(srv *mdns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
		return nil
	case err := <-done:
		if err == nil {
			err = errors.New("stopped at once")
		}
		return fmt.Errorf("dns: serve: %w", err)
	}
}

func (l *listener) close() {
	l.udp.close()
	l.tcp.Shutdown()
}

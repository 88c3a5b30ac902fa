package dns

import (
	"errors"
	"net"
	"runtime"
	"sync"

	mdns "github.com/miekg/dns"
)

// maxForwarding bounds the queries waiting on upstreams at once; past it a
// query that needs forwarding gets SERVFAIL at once instead of a goroutine.
const maxForwarding = 1024

// udpServer serves one UDP socket with a few long-lived workers: each reads
// a query, answers it in place and writes the answer, without the
// goroutine per packet of miekg/dns's own server loop. Queries that go
// upstream are handed to a goroutine of their own so that a slow upstream
// never holds back overlay answers.
type udpServer struct {
	pc  *net.UDPConn
	s   *Server
	wg  sync.WaitGroup
	fwd chan struct{} // forwarding slots
}

func serveUDP(pc *net.UDPConn, s *Server) *udpServer {
	u := &udpServer{pc: pc, s: s, fwd: make(chan struct{}, maxForwarding)}
	n := max(2, runtime.GOMAXPROCS(0)*2)
	for i := 0; i < n; i++ {
		u.wg.Add(1)
		go u.work()
	}
	return u
}

func (u *udpServer) close() {
	u.pc.Close()
	u.wg.Wait()
}

func (u *udpServer) work() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	out := make([]byte, 0, 4096)
	for {
		n, from, err := u.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		client := from.Addr().Unmap()
		var r mdns.Msg
		if err := r.Unpack(buf[:n]); err != nil {
			// A header we can read from a client we answer: FORMERR, as
			// miekg/dns's server does. Anything else is dropped.
			if n >= 12 && buf[2]&0x80 == 0 && u.s.cfg.Load().allowed(client) {
				hdr := []byte{buf[0], buf[1], 0x80 | buf[2]&0x78, 0x80 | mdns.RcodeFormatError, 0, 0, 0, 0, 0, 0, 0, 0}
				u.pc.WriteToUDPAddrPort(hdr, from)
			}
			continue
		}
		m, fwd := u.s.answerLocal(&r, client, false)
		if fwd {
			select {
			case u.fwd <- struct{}{}:
				go func(r *mdns.Msg) {
					defer func() { <-u.fwd }()
					m := u.s.answerForward(r, client, false)
					if b, err := m.Pack(); err == nil {
						u.pc.WriteToUDPAddrPort(b, from)
					}
				}(&r)
				continue
			default:
				m = new(mdns.Msg)
				m.SetRcode(&r, mdns.RcodeServerFailure)
			}
		}
		if m == nil {
			continue
		}
		b, err := m.PackBuffer(out)
		if err != nil {
			continue
		}
		u.pc.WriteToUDPAddrPort(b, from)
	}
}

package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// The HTTP server's limits: a scraper sends a small GET and reads a few
// hundred kilobytes at most; anything slower or bigger is not one.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 8 << 10
	// DefaultRetryEvery is how often a listener that could not bind tries
	// again.
	DefaultRetryEvery = 5 * time.Second
)

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Addr is host:port to listen on (port 0: any free port; Addr tells
	// which).
	Addr string
	// Metrics is served at /metrics.
	Metrics http.Handler
	// Ready answers /readyz: 200 "ready" when ready, else 503 with the
	// reasons, one per line.
	Ready func() (ready bool, reasons []string)
	Log   *slog.Logger
	// Problem, when set, is told when the listener cannot bind (the
	// error) and when it has bound (nil): the daemon lists it in status.
	Problem func(err error)
	// RetryEvery is the wait between binding attempts (default
	// DefaultRetryEvery).
	RetryEvery time.Duration
	// ReadHeaderTimeout, when set, replaces the default (tests).
	ReadHeaderTimeout time.Duration
}

// Server serves /metrics, /healthz and /readyz over HTTP. It never stops
// the daemon: a listener that cannot bind is retried until Close.
type Server struct {
	o    ServerOptions
	srv  *http.Server
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	l    net.Listener
	addr net.Addr
}

// StartServer starts binding o.Addr in the background and returns at once.
func StartServer(o ServerOptions) *Server {
	if o.RetryEvery <= 0 {
		o.RetryEvery = DefaultRetryEvery
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = ReadHeaderTimeout
	}
	s := &Server{o: o, stop: make(chan struct{}), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/metrics", o.Metrics)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("/readyz", s.readyz)
	s.srv = &http.Server{
		Handler:           onlyGet(mux),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	if !isLoopback(o.Addr) {
		o.Log.Warn("metrics: --metrics-listen is not a loopback address: anyone who can reach it can read the metrics, which name services, peers and their addresses (see docs/metrics.md)", "addr", o.Addr)
	}
	go s.run()
	return s
}

// isLoopback reports whether addr's host is a loopback address or
// "localhost".
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// run binds, serves, and binds again whenever the listener is lost, until
// Close.
func (s *Server) run() {
	defer close(s.done)
	var lastErr string
	for {
		l, err := net.Listen("tcp", s.o.Addr)
		if err != nil {
			if err.Error() != lastErr {
				s.o.Log.Warn("metrics: cannot listen; retrying (the daemon goes on without metrics meanwhile)", "addr", s.o.Addr, "retry_every", s.o.RetryEvery, "err", err)
				lastErr = err.Error()
			}
			if s.o.Problem != nil {
				s.o.Problem(err)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(s.o.RetryEvery):
				continue
			}
		}
		s.mu.Lock()
		select {
		case <-s.stop:
			s.mu.Unlock()
			l.Close()
			return
		default:
		}
		s.l, s.addr = l, l.Addr()
		s.mu.Unlock()
		lastErr = ""
		if s.o.Problem != nil {
			s.o.Problem(nil)
		}
		s.o.Log.Info("metrics: listening", "addr", l.Addr().String(), "paths", "/metrics /healthz /readyz")
		err = s.srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			return
		}
		s.o.Log.Warn("metrics: the listener failed; binding again", "addr", s.o.Addr, "err", err)
		select {
		case <-s.stop:
			return
		case <-time.After(s.o.RetryEvery):
		}
	}
}

// Addr is the address the server listens on (nil until it has bound).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops the server: it stops binding, closes the listener and waits
// (up to 2 s) for scrapes in flight. It may be called more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		<-s.done
		return nil
	default:
	}
	close(s.stop)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	return err
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	ready, reasons := s.o.Ready()
	if ready {
		text(w, http.StatusOK, "ready\n")
		return
	}
	if len(reasons) == 0 {
		reasons = []string{"not ready"}
	}
	text(w, http.StatusServiceUnavailable, strings.Join(reasons, "\n")+"\n")
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// onlyGet answers 405 to anything but GET and HEAD.
func onlyGet(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			text(w, http.StatusMethodNotAllowed, "only GET and HEAD\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/httpproxy"
	"braid/internal/netx"
	"braid/internal/notify"
	"braid/internal/pki"
	"braid/internal/relay"
	"braid/internal/socks5"
	"braid/internal/status"
	"braid/transport"
	"braid/transport/pktfec"
	"braid/transport/wire"
)

// Client is a running proxy: SOCKS5, and HTTP (CONNECT and plain
// requests, internal/httpproxy) on the same port. It carries its flows over one
// transport session at a time: a supervisor goroutine (supervise.go) joins
// the concentrator, and joins again whenever the session ends, until the
// client is closed or the concentrator refuses it for good.
type Client struct {
	cfg    Config
	log    *slog.Logger
	static []transport.PathDialer // the configured paths
	ln     net.Listener
	creds  *socks5.Credentials // SOCKS5's and HTTP's
	http   *httpproxy.Server

	statusLn  net.Listener
	statusSrv *http.Server
	auto      *autoPaths

	// ctx lives as long as the client: cancelling it (end) stops the
	// supervisor and any join in progress.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	cur      *transport.Client // the session up now, nil while none is
	last     *transport.Client // the session up last, possibly ended
	changed  notify.Broadcast  // fired when cur changes
	sessions int               // sessions opened
	lastErr  error             // why the last join failed or session ended
	err      error             // why the client ended, nil for Close
	wg       sync.WaitGroup

	closeOnce sync.Once
}

// Start validates cfg, opens the SOCKS listener and the status listener,
// and returns: it does not wait for the concentrator. A supervisor joins
// in the background, with backoff while the concentrator is unreachable,
// and opens a new session whenever one ends; SOCKS requests wait for a
// session meanwhile (see Config.ConnectTimeout). Only a refused token,
// protocol version or pin ends the client: Done closes and Err says why.
//
// Start fails on a bad cfg (a *ConfigError) and on a listener it cannot
// open (a *ListenError), except a status listener with
// cfg.StatusOptional, which is logged and left out; a Start that fails
// leaves nothing open or running. ctx bounds Start only; the client runs
// until Close.
func Start(ctx context.Context, cfg Config) (_ *Client, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Transport.Logger = cfg.Logger
	cfg.stun = &stunWatch{}
	cfg.servers = newServerList(cfg.Server, cfg.MoreServers)
	c := &Client{cfg: cfg, log: cfg.Logger, conns: map[net.Conn]struct{}{}}
	for _, p := range cfg.Paths {
		c.static = append(c.static, c.cfg.pathDialer(p))
	}
	// Without a configured user, any username is accepted as a label of
	// the application: the tier's classes may pick traffic by it.
	c.creds = &socks5.Credentials{AnyUser: true}
	if cfg.SOCKSUser != "" {
		c.creds = &socks5.Credentials{User: cfg.SOCKSUser, Pass: cfg.SOCKSPass}
	}
	c.http = &httpproxy.Server{Opener: httpOpener{c}, Creds: c.creds, HeaderTimeout: cfg.HandshakeTimeout}
	// What Start has opened, undone in reverse order when a later step
	// fails, so a failed Start leaves no listener and no watcher behind.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	if c.ln, err = net.Listen("tcp", cfg.SOCKS); err != nil {
		return nil, &ListenError{Field: "socks", Addr: cfg.SOCKS, Err: err}
	}
	undo = append(undo, func() { c.ln.Close() })
	if cfg.Status != "" {
		ln, lerr := net.Listen("tcp", cfg.Status)
		switch {
		case lerr == nil:
			c.statusLn = ln
			undo = append(undo, func() { ln.Close() })
		case !cfg.StatusOptional:
			return nil, &ListenError{Field: "status", Addr: cfg.Status, Err: lerr}
		default:
			c.log.Warn("status page off: its address is taken (give --status another one)", "addr", cfg.Status, "err", lerr)
		}
	}
	if cfg.AutoPaths {
		if c.auto, err = startAutoPaths(&c.cfg); err != nil {
			return nil, err
		}
		undo = append(undo, c.auto.stop)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if c.statusLn != nil {
		c.statusSrv = &http.Server{Handler: status.Handler(func() any { return c.Status() }),
			ReadHeaderTimeout: 5 * time.Second}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.statusSrv.Serve(c.statusLn)
		}()
	}
	c.log.Info("client ready", "socks", c.ln.Addr().String(), "paths", len(c.static), "auto", cfg.AutoPaths)
	c.wg.Add(2)
	go c.serve()
	go c.supervise()
	return c, nil
}

// ListenError is a listener Start could not open. Field names the Config
// field whose address it is: socks or status.
type ListenError struct {
	Field, Addr string
	Err         error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("%s: cannot listen on %s: %v", e.Field, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// pathDialers returns the paths a new session joins over: the configured
// ones and the automatic ones of the moment, with the generation of each
// automatic one (autoPaths.use).
func (c *Client) pathDialers() ([]transport.PathDialer, map[string]uint64) {
	pds := append([]transport.PathDialer(nil), c.static...)
	if c.auto == nil {
		return pds, nil
	}
	auto, has := c.auto.dialers()
	return append(pds, auto...), has
}

// pathDialer describes a configured path to the transport.
func (cfg *Config) pathDialer(p PathConfig) transport.PathDialer {
	srv := cfg.servers.current
	if p.Server != "" {
		srv = func() string { return p.Server }
	}
	return transport.PathDialer{
		Info: wire.PathInfo{Name: p.Name, Medium: Media[p.Medium],
			Operator: Operators[p.Operator], PriceGB: p.PriceGB, RateMbps: p.RateMbps},
		Conns: p.Conns,
		Dial: dialer(p.Bind, srv, cfg.Pin, !cfg.Transport.NoPacketCoding, func(tr *quic.Transport, qc *quic.Conn, raddr net.Addr) {
			stunServer := raddr
			if p.STUN != "" {
				a, err := net.ResolveUDPAddr(raddr.Network(), p.STUN)
				if err != nil {
					cfg.Logger.Warn("stun server", "path", p.Name, "err", err)
					return
				}
				stunServer = a
			}
			cfg.stun.watch(p.Name, tr, qc, stunServer, cfg.STUNInterval, cfg.Logger)
		}),
	}
}

// dialer opens one QUIC connection over a path: its own UDP socket bound
// as the path says, to the path's concentrator address.
// server is asked at each dial: the concentrator in use may change.
// With code, the socket is a pktfec.Conn, which adds parity beneath QUIC
// once the connection has joined with a version that has packet coding.
func dialer(bind netx.Bind, server func() string, pin [32]byte, code bool, onConn func(*quic.Transport, *quic.Conn, net.Addr)) func(context.Context) (*quic.Conn, error) {
	return func(ctx context.Context) (*quic.Conn, error) {
		server := server()
		network := "udp"
		if bind.IP.IsValid() {
			if bind.IP.Unmap().Is4() {
				network = "udp4"
			} else {
				network = "udp6"
			}
		}
		raddr, err := net.ResolveUDPAddr(network, server)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", server, err)
		}
		if !bind.IP.IsValid() {
			if raddr.IP.To4() != nil {
				network = "udp4"
			} else {
				network = "udp6"
			}
		}
		udp, err := netx.ListenUDP(network, bind)
		if err != nil {
			return nil, err
		}
		var pc net.PacketConn = udp
		if code {
			fc := pktfec.New(udp, pktfec.Config{})
			ctx = pktfec.NewContext(ctx, fc) // quic-go keeps the dial context's values
			pc = fc
		}
		tr := &quic.Transport{Conn: pc}
		qc, err := tr.Dial(ctx, raddr, pki.ClientTLS(pin, wire.ALPN), transport.QUICConfig())
		if err != nil {
			tr.Close()
			pc.Close()
			return nil, err
		}
		if onConn != nil {
			onConn(tr, qc, raddr)
		}
		go func() {
			<-qc.Context().Done()
			tr.Close()
			pc.Close()
		}()
		return qc, nil
	}
}

// SOCKSAddr returns the address the proxy listens on, for SOCKS5 and HTTP.
func (c *Client) SOCKSAddr() net.Addr { return c.ln.Addr() }

// StatusAddr returns the status server's address, or nil when there is
// none (none configured, or an optional one whose address was taken).
func (c *Client) StatusAddr() net.Addr {
	if c.statusLn == nil {
		return nil
	}
	return c.statusLn.Addr()
}

// Status returns what the client knows about its session, paths and
// flows. While no session is up, Session is "connecting" (or "stopped"
// once the client has ended), Paths is empty and SessionError says why the
// last join failed or the last session ended.
func (c *Client) Status() status.Client {
	c.mu.Lock()
	cur, lastErr, sessions := c.cur, c.lastErr, c.sessions
	c.mu.Unlock()
	doc := status.Client{Session: "connecting", Sessions: sessions, Paths: []status.Path{}}
	if lastErr != nil {
		doc.SessionError = lastErr.Error()
	}
	switch {
	case c.ctx.Err() != nil:
		doc.Session = "stopped"
		if err := c.Err(); err != nil {
			doc.SessionError = err.Error()
		}
	case cur != nil:
		doc.Session = "up"
		doc.ID = cur.Name()
		doc.Paths, doc.Plans, doc.Summary = status.Describe(cur.Session, c.cfg.stun.mapped, time.Now())
		doc.Flows = cur.NumFlows()
	}
	return doc
}

// Session returns the session in use. It changes: each session the
// supervisor opens replaces the last. While none is up it returns the one
// that ended last (its paths are closed), and before the first it waits
// for it; it returns nil only when the client ends before any session
// came up. Use WaitSession to wait for a live one with a deadline.
func (c *Client) Session() *transport.Session {
	for {
		c.mu.Lock()
		last, changed := c.last, c.changed.Wait()
		c.mu.Unlock()
		if last != nil {
			return last.Session
		}
		select {
		case <-changed:
		case <-c.ctx.Done():
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.last == nil {
				return nil
			}
			return c.last.Session
		}
	}
}

// WaitSession returns the session that is up, waiting for one while none
// is, until ctx is done or the client ends.
func (c *Client) WaitSession(ctx context.Context) (*transport.Session, error) {
	sess, err := c.waitSession(ctx)
	if err != nil {
		return nil, err
	}
	return sess.Session, nil
}

// Done is closed when the client has stopped: Close was called, or the
// concentrator refused it in a way retrying cannot mend (Err).
func (c *Client) Done() <-chan struct{} { return c.ctx.Done() }

// Err returns why the client stopped on its own: the join error (a
// *transport.JoinError for a refused token or protocol version, an error
// wrapping pki.ErrPinMismatch for a refused pin). It is nil while the
// client runs and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close stops the proxy, closes every proxied connection and the session,
// and waits for every goroutine.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.end(nil) // stops the supervisor, which closes the session
		if c.statusSrv != nil {
			c.statusSrv.Close()
		}
		c.mu.Lock()
		for conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
		if c.auto != nil {
			c.auto.stop()
		}
	})
	c.wg.Wait()
	return nil
}

func (c *Client) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("socks accept", "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		c.mu.Lock()
		if c.ctx.Err() != nil { // Close has run through conns already
			c.mu.Unlock()
			conn.Close()
			continue
		}
		c.conns[conn] = struct{}{}
		c.mu.Unlock()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.handle(conn)
			c.mu.Lock()
			delete(c.conns, conn)
			c.mu.Unlock()
		}()
	}
}

// handle serves one connection to the proxy port: SOCKS5 when its first
// byte is SOCKS5's version, HTTP otherwise (as mixed ports of other
// proxies tell them apart).
func (c *Client) handle(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	var first [1]byte
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		c.log.Debug("proxy connection", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	if first[0] != socks5.Version {
		conn.SetDeadline(time.Time{}) // the HTTP server keeps its own
		if err := c.http.ServeConn(c.ctx, conn, first[:]); err != nil {
			c.log.Debug("http proxy", "remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	rw := struct {
		io.Reader
		io.Writer
	}{io.MultiReader(bytes.NewReader(first[:]), conn), conn}
	req, err := socks5.HandshakeAssociate(rw, c.creds)
	if err != nil {
		c.log.Debug("socks handshake", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	if req.Cmd == socks5.CmdUDPAssociate {
		c.associate(conn, req)
		return
	}
	dest, err := socks5.AppendAddr(nil, req.Dest)
	if err != nil {
		socks5.WriteReply(conn, socks5.AddressNotSupported, socks5.Addr{})
		return
	}
	conn.SetDeadline(time.Now().Add(c.cfg.ConnectTimeout + time.Second))
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
	f, err := c.openFlow(ctx, dest, req.Dest.Port, req.User)
	cancel()
	if err != nil {
		code := replyFor(err)
		c.log.Debug("flow refused", "dest", req.Dest.String(), "code", code.String(), "err", err)
		socks5.WriteReply(conn, code, socks5.Addr{})
		return
	}
	if err := socks5.WriteReply(conn, socks5.Succeeded, socks5.Addr{}); err != nil {
		f.Reset()
		return
	}
	conn.SetDeadline(time.Time{})
	// When the session ends under the flow, the flow fails and Relay
	// resets conn: the application sees a reset, never a clean end.
	relay.Relay(conn, f)
}

// replyFor is the SOCKS5 reply for a flow that could not be opened: the
// concentrator's code when it refused, network unreachable with no
// session, TTL expired for a timeout.
func replyFor(err error) socks5.Reply {
	var re *transport.RefusedError
	switch {
	case errors.As(err, &re):
		return socks5.Reply(re.Code)
	case errors.Is(err, errNoSession):
		return socks5.NetworkUnreachable
	case errors.Is(err, transport.ErrUDPUnsupported):
		return socks5.CommandNotSupported
	case errors.Is(err, context.DeadlineExceeded):
		return socks5.TTLExpired
	}
	return socks5.GeneralFailure
}

// httpOpener opens the HTTP proxy's flows as SOCKS5 CONNECT does, with
// the same connect timeout, classes and reply codes.
type httpOpener struct{ c *Client }

var (
	_ httpproxy.Opener = httpOpener{}
	_ httpproxy.Flow   = (*transport.Flow)(nil)
)

func (o httpOpener) Open(ctx context.Context, dest socks5.Addr, user string) (httpproxy.Flow, error) {
	enc, err := socks5.AppendAddr(nil, dest)
	if err != nil {
		return nil, &socks5.ReplyError{Code: socks5.AddressNotSupported}
	}
	ctx, cancel := context.WithTimeout(ctx, o.c.cfg.ConnectTimeout)
	defer cancel()
	f, err := o.c.openFlow(ctx, enc, dest.Port, user)
	if err != nil {
		code := replyFor(err)
		o.c.log.Debug("flow refused", "dest", dest.String(), "code", code.String(), "err", err)
		return nil, &socks5.ReplyError{Code: code}
	}
	return f, nil
}

// openFlow opens a flow on the session that is up (onSession).
func (c *Client) openFlow(ctx context.Context, dest []byte, port uint16, user string) (*transport.Flow, error) {
	return onSession(c, ctx, func(sess *transport.Client) (*transport.Flow, error) {
		return sess.OpenFlowClass(ctx, dest, sess.Classify(port, user))
	})
}

// onSession runs open on the session that is up. While none is, it waits
// for one, up to the grace period (ctx, the connect timeout, may end it
// sooner); a session that ends or goes away while open runs is not the
// destination's answer, so open runs again on the next session.
func onSession[T any](c *Client, ctx context.Context, open func(*transport.Client) (T, error)) (T, error) {
	var zero T
	for {
		wctx, cancel := context.WithTimeout(ctx, c.cfg.Transport.Grace)
		sess, err := c.waitSession(wctx)
		cancel()
		if err != nil {
			return zero, err
		}
		v, err := open(sess)
		if err == nil {
			return v, nil
		}
		select {
		case <-sess.Done():
		case <-sess.GoingAway():
		default:
			return zero, err
		}
		if ctx.Err() != nil {
			return zero, err
		}
	}
}

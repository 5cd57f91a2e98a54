package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/relay"
	"braid/internal/socks5"
	"braid/internal/status"
	"braid/transport"
)

// Client is a running SOCKS5 proxy with its session.
type Client struct {
	cfg  Config
	log  *slog.Logger
	sess *transport.Client
	ln   net.Listener

	statusLn  net.Listener
	statusSrv *http.Server
	auto      *autoPaths

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

	closeOnce sync.Once
}

// Start validates cfg, joins the concentrator over the configured paths
// and starts serving SOCKS5. A refused token or pin fails Start.
func Start(ctx context.Context, cfg Config) (*Client, error) {
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Transport.Logger = cfg.Logger
	cfg.stun = &stunWatch{}
	var pds []transport.PathDialer
	for _, p := range cfg.Paths {
		pds = append(pds, cfg.pathDialer(p))
	}
	var watch *autoPaths
	if cfg.AutoPaths {
		var err error
		if watch, err = startAutoPaths(&cfg); err != nil {
			return nil, err
		}
		pds = append(pds, watch.initial...)
		if len(pds) == 0 {
			watch.stop()
			return nil, errors.New("no usable network interface for automatic paths")
		}
	}
	// Join first, then listen: a client that accepts SOCKS connections has
	// a session to carry them.
	sess, err := transport.Dial(ctx, cfg.Transport, cfg.Token, pds)
	if err != nil {
		if watch != nil {
			watch.stop()
		}
		return nil, fmt.Errorf("join concentrator: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.SOCKS)
	if err != nil {
		sess.Close()
		if watch != nil {
			watch.stop()
		}
		return nil, fmt.Errorf("socks listener: %w", err)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, sess: sess, ln: ln, conns: map[net.Conn]struct{}{}, auto: watch}
	if watch != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			watch.follow(sess)
		}()
	}
	if cfg.Status != "" {
		if c.statusLn, err = net.Listen("tcp", cfg.Status); err != nil {
			ln.Close()
			sess.Close()
			return nil, fmt.Errorf("status listener: %w", err)
		}
		c.statusSrv = &http.Server{Handler: status.Handler(func() any { return c.Status() }),
			ReadHeaderTimeout: 5 * time.Second}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.statusSrv.Serve(c.statusLn)
		}()
	}
	c.log.Info("client ready", "socks", ln.Addr().String(), "paths", len(cfg.Paths))
	c.wg.Add(2)
	go c.serve()
	go func() {
		defer c.wg.Done()
		<-sess.Done()
		ln.Close() // the session is over: stop taking SOCKS clients
	}()
	return c, nil
}

// pathDialer describes a configured path to the transport.
func (cfg *Config) pathDialer(p PathConfig) transport.PathDialer {
	srv := cfg.Server
	if p.Server != "" {
		srv = p.Server
	}
	return transport.PathDialer{
		Info: transport.PathInfo{Name: p.Name, Medium: Media[p.Medium],
			Operator: Operators[p.Operator], PriceGB: p.PriceGB, RateMbps: p.RateMbps},
		Conns: p.Conns,
		Dial: dialer(p.Bind, srv, cfg.Pin, func(tr *quic.Transport, qc *quic.Conn, raddr net.Addr) {
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
func dialer(bind netx.Bind, server string, pin [32]byte, onConn func(*quic.Transport, *quic.Conn, net.Addr)) func(context.Context) (*quic.Conn, error) {
	return func(ctx context.Context) (*quic.Conn, error) {
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
		tr := &quic.Transport{Conn: udp}
		qc, err := tr.Dial(ctx, raddr, pki.ClientTLS(pin, transport.ALPN), transport.QUICConfig())
		if err != nil {
			tr.Close()
			udp.Close()
			return nil, err
		}
		if onConn != nil {
			onConn(tr, qc, raddr)
		}
		go func() {
			<-qc.Context().Done()
			tr.Close()
			udp.Close()
		}()
		return qc, nil
	}
}

// SOCKSAddr returns the address the SOCKS5 proxy listens on.
func (c *Client) SOCKSAddr() net.Addr { return c.ln.Addr() }

// StatusAddr returns the status server's address, or nil.
func (c *Client) StatusAddr() net.Addr {
	if c.statusLn == nil {
		return nil
	}
	return c.statusLn.Addr()
}

// Status returns what the client knows about its paths and flows.
func (c *Client) Status() status.Client {
	return status.Client{Paths: status.SessionPaths(c.sess.Session, c.cfg.stun.mapped), Flows: c.sess.NumFlows(),
		Plans: status.SessionPlans(c.sess.Session)}
}

// Session returns the client's transport session.
func (c *Client) Session() *transport.Session { return c.sess.Session }

// Done is closed when the session has ended.
func (c *Client) Done() <-chan struct{} { return c.sess.Done() }

// Err returns why the session ended.
func (c *Client) Err() error { return c.sess.Err() }

// Close stops the proxy, closes every proxied connection and the session,
// and waits for every goroutine.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.ln.Close()
		if c.auto != nil {
			c.auto.stop()
		}
		if c.statusSrv != nil {
			c.statusSrv.Close()
		}
		c.mu.Lock()
		for conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
		c.sess.Close()
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

func (c *Client) handle(conn net.Conn) {
	defer conn.Close()
	// Without a configured user, any username is accepted as a label of
	// the application: the tier's classes may pick traffic by it.
	creds := &socks5.Credentials{AnyUser: true}
	if c.cfg.SOCKSUser != "" {
		creds = &socks5.Credentials{User: c.cfg.SOCKSUser, Pass: c.cfg.SOCKSPass}
	}
	conn.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	req, err := socks5.Handshake(conn, creds)
	if err != nil {
		c.log.Debug("socks handshake", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	dest, err := socks5.AppendAddr(nil, req.Dest)
	if err != nil {
		socks5.WriteReply(conn, socks5.AddressNotSupported, socks5.Addr{})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ConnectTimeout)
	class := c.sess.Classify(req.Dest.Port, req.User)
	f, err := c.sess.OpenFlowClass(ctx, dest, class)
	cancel()
	if err != nil {
		code := socks5.GeneralFailure
		var re *transport.RefusedError
		switch {
		case errors.As(err, &re):
			code = socks5.Reply(re.Code)
		case errors.Is(err, context.DeadlineExceeded):
			code = socks5.TTLExpired
		}
		c.log.Debug("flow refused", "dest", req.Dest.String(), "code", code.String(), "err", err)
		socks5.WriteReply(conn, code, socks5.Addr{})
		return
	}
	if err := socks5.WriteReply(conn, socks5.Succeeded, socks5.Addr{}); err != nil {
		f.Reset()
		return
	}
	conn.SetDeadline(time.Time{})
	relay.Relay(conn, f)
}

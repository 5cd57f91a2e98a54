package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/destpolicy"
	"braid/internal/fielderr"
	"braid/internal/pki"
	"braid/internal/relay"
	"braid/internal/socks5"
	"braid/internal/status"
	"braid/internal/stunx"
	"braid/internal/tier"
	"braid/transport"
	"braid/transport/pktfec"
	"braid/transport/wire"
)

// Server is a running concentrator.
type Server struct {
	cfg Config
	log *slog.Logger
	udp *net.UDPConn
	// coder wraps udp for quic-go; nil with Transport.NoPacketCoding.
	coder *pktfec.Conn
	tr    *quic.Transport
	ln    *quic.Listener

	ctx    context.Context
	cancel context.CancelFunc

	statusLn  net.Listener
	statusSrv *http.Server

	own  *destpolicy.Own // the host's addresses, refused as destinations
	dest *destpolicy.Policy
	// udpDrops counts the client datagrams and answers UDP relays dropped (udp.go).
	udpDrops udpStats
	// joins counts joins refused, unreadable and sessions opened (counters.go).
	joins joinCounts

	// Handshakes in progress (handshake.go): the count, Retries asked
	// for and connections refused since Start, and when the last log line
	// about them was written (Unix ns).
	handshakes        atomic.Int64
	retries           atomic.Int64
	refusedHandshakes atomic.Int64
	floodLogged       atomic.Int64

	// Destinations refused by the policy: how many since Start, and when
	// the last line about one was written (Unix ns; refusedLine).
	destRefused atomic.Int64
	destLogged  atomic.Int64

	mu       sync.Mutex
	sessions map[[16]byte]*transport.Session
	tokens   map[[16]byte]string    // each session's token, for SetPolicy
	opened   map[[16]byte]time.Time // when each session opened, for accounting
	perToken map[string]int         // live sessions by token
	policy   atomic.Pointer[tier.Policy]
	closed   bool
	draining bool       // Drain: no new sessions
	acct     *collector // nil without Config.Accounting (account.go)
	wg       sync.WaitGroup
}

// Start validates cfg and starts listening.
func Start(cfg Config) (*Server, error) {
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Transport.Logger = cfg.Logger
	laddr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fielderr.New("listen", err.Error())
	}
	udp, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	udp.SetReadBuffer(7 << 20)
	udp.SetWriteBuffer(7 << 20)
	s := &Server{cfg: cfg, log: cfg.Logger, udp: udp,
		sessions: map[[16]byte]*transport.Session{}, tokens: map[[16]byte]string{}, opened: map[[16]byte]time.Time{}, perToken: map[string]int{}}
	if cfg.Policy != nil {
		s.policy.Store(cfg.Policy)
	}
	// One budget for every session's held bytes (transport.Budget).
	s.cfg.Transport.Budget = transport.NewBudget(cfg.MemoryBudget)
	s.cfg.Transport.SLAWindows = transport.NewSLAWindows() // counters.go
	s.own = destpolicy.NewOwn(cfg.OwnAddrs...)
	if err := s.own.Start(); err != nil {
		udp.Close()
		return nil, fmt.Errorf("read this host's addresses: %w", err)
	}
	if a := s.Addr().AddrPort().Addr(); a.IsValid() {
		s.own.Add(a)
	}
	s.dest = &destpolicy.Policy{AllowPrivate: cfg.AllowPrivate, AllowOwn: cfg.AllowOwn, Own: s.own}
	// The packet coder (transport/pktfec) sits between quic-go and the
	// socket; it codes only to peers that joined with a version that has
	// packet coding, and passes everything else (STUN, plain QUIC) as it
	// is.
	var pc net.PacketConn = udp
	if !cfg.Transport.NoPacketCoding {
		s.coder = pktfec.New(udp, pktfec.Config{})
		pc = s.coder
	}
	s.tr = &quic.Transport{Conn: pc, ConnContext: s.connContext, VerifySourceAddress: s.verifySourceAddress}
	if s.tr.StatelessResetKey, s.tr.TokenGeneratorKey, err = transportKeys(cfg.Cert); err != nil {
		// quic-go then sends no stateless resets, and picks a random
		// token key.
		s.log.Warn("no keys derived from the private key: after a restart, clients wait for the idle timeout", "err", err)
	}
	tlsConf := s.watchHandshakes(pki.ServerTLS(cfg.Cert, wire.ALPN))
	s.ln, err = s.tr.Listen(tlsConf, transport.QUICConfig())
	if err != nil {
		s.own.Close()
		udp.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.Status != "" {
		if s.statusLn, err = net.Listen("tcp", cfg.Status); err != nil {
			s.ln.Close()
			s.own.Close()
			udp.Close()
			return nil, fmt.Errorf("status listener: %w", err)
		}
		s.statusSrv = &http.Server{Handler: status.Handler(func() any { return s.Status() }),
			ReadHeaderTimeout: 5 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.statusSrv.Serve(s.statusLn)
		}()
	}
	if cfg.Accounting != nil {
		s.acct = newCollector(s, cfg.Accounting, cfg.AccountingID, cfg.AccountingInterval)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.acct.run(s.ctx)
		}()
	}
	s.log.Info("concentrator listening", "addr", udp.LocalAddr().String())
	s.wg.Add(2)
	go s.serve()
	go func() {
		// STUN on the QUIC socket: each client path learns its public
		// address from the concentrator itself.
		defer s.wg.Done()
		stunx.Serve(s.ctx, s.tr, s.log)
	}()
	return s, nil
}

// Addr returns the UDP address the concentrator listens on.
func (s *Server) Addr() *net.UDPAddr { return s.udp.LocalAddr().(*net.UDPAddr) }

// StatusAddr returns the status server's address, or nil.
func (s *Server) StatusAddr() net.Addr {
	if s.statusLn == nil {
		return nil
	}
	return s.statusLn.Addr()
}

// Status returns every session's paths and flow count. Sessions are named
// by the first 8 bytes of their id.
func (s *Server) Status() status.Server {
	doc := status.Server{Sessions: []status.Session{}}
	now := time.Now()
	for _, ss := range s.Sessions() {
		doc.Sessions = append(doc.Sessions, status.Session{ID: ss.Name(), Flows: ss.NumFlows()})
		d := &doc.Sessions[len(doc.Sessions)-1]
		d.Paths, d.Plans, d.Summary = status.Describe(ss, nil, now)
	}
	sort.Slice(doc.Sessions, func(i, j int) bool { return doc.Sessions[i].ID < doc.Sessions[j].ID })
	u := s.UDPDrops()
	doc.UDPDropped = &status.UDPDropped{Refused: u.Refused, TooMany: u.TooMany, Unresolved: u.Unresolved,
		Limited: u.Limited, Stranger: u.Stranger, SendError: u.SendError}
	return doc
}

// Sessions returns the live sessions.
func (s *Server) Sessions() []*transport.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*transport.Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}

// Drain stops taking new sessions, tells every client that this
// concentrator is going away (GOAWAY: the client opens new flows in a new
// session, with another concentrator or this one restarted), lets live
// flows finish until none is left or ctx ends, and then closes.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	for _, ss := range s.Sessions() {
		ss.GoAway("draining")
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		flows := 0
		for _, ss := range s.Sessions() {
			flows += ss.NumFlows()
		}
		if flows == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.log.Warn("drain timeout: closing live flows", "flows", flows)
			return s.Close()
		case <-t.C:
		}
	}
	return s.Close()
}

// Close stops listening, ends every session and waits for every goroutine.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	sessions := make([]*transport.Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	s.cancel()
	s.ln.Close()
	if s.statusSrv != nil {
		s.statusSrv.Close()
	}
	for _, ss := range sessions {
		ss.Close()
	}
	s.wg.Wait()
	s.tr.Close()
	if s.coder != nil {
		s.coder.Close() // and udp
	}
	s.udp.Close()
	s.own.Close()
	return nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		qc, err := s.ln.Accept(s.ctx)
		if err != nil {
			return
		}
		s.accepted(qc.Context())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.join(qc)
		}()
	}
}

func (s *Server) tokenOK(tok string) bool {
	ok := 0
	for _, t := range s.cfg.Tokens {
		ok |= subtle.ConstantTimeCompare([]byte(t), []byte(tok))
	}
	if p := s.policy.Load(); p != nil {
		for t := range p.Tokens {
			ok |= subtle.ConstantTimeCompare([]byte(t), []byte(tok))
		}
	}
	return ok == 1
}

// sessionConfig is the transport config of a new session for token: its
// tier and the policy's default prices.
func (s *Server) sessionConfig(token string) transport.Config {
	cfg := s.cfg.Transport
	p := s.policy.Load()
	if p == nil {
		return cfg
	}
	if t, ok := p.TierFor(token); ok {
		cfg.Tier = t
	}
	if len(p.Prices) > 0 {
		cfg.Prices = map[uint8]float64{}
		for name, price := range p.Prices {
			cfg.Prices[wire.Media[name]] = price
		}
	}
	return cfg
}

// tokenLimit returns the cap on token's concurrent sessions and which
// setting gave it: its tier's max_sessions, else MaxSessionsPerToken.
func (s *Server) tokenLimit(token string) (int, string) {
	if p := s.policy.Load(); p != nil {
		if n := p.MaxSessionsFor(token); n > 0 {
			t, _ := p.TierFor(token)
			return n, "tier " + t.Name + " max_sessions"
		}
	}
	return s.cfg.MaxSessionsPerToken, "max-sessions-per-token"
}

// SetPolicy replaces the policy (a reloaded file): new sessions get their
// tier from it, and every session whose token now maps to another tier,
// or to a changed one, is re-planned and told. Tiers' max_sessions apply
// to sessions opened from then on; sessions over a lowered cap run on.
func (s *Server) SetPolicy(p *tier.Policy) {
	s.policy.Store(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sess := range s.sessions {
		t, ok := p.TierFor(s.tokens[id])
		if !ok {
			continue
		}
		if err := sess.SetTier(t); err != nil {
			s.log.Warn("tier not applied", "tier", t.Name, "err", err)
			continue
		}
		s.log.Info("session tier set", "session", sess.Name(), "tier", t.String())
	}
}

// join authenticates a new connection and adds it to its session.
func (s *Server) join(qc *quic.Conn) {
	remote := qc.RemoteAddr().String()
	j, err := transport.AcceptJoin(s.ctx, qc)
	if err != nil {
		s.log.Warn("refused connection", "remote", remote, "err", err)
		s.joins.unreadable.Add(1)
		qc.CloseWithError(0, "")
		return
	}
	if !s.tokenOK(j.Msg.Token) {
		s.log.Warn("refused client: bad token", "remote", remote, "path", j.Msg.Path.Name)
		s.joins.refuse(rAuth)
		j.Refuse(wire.JoinErrAuth, "token not accepted")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.joins.refuse(rShutdown)
		j.Refuse(wire.JoinErrShutdown, "concentrator shutting down")
		return
	}
	if j.Msg.SessionID == ([16]byte{}) {
		if s.draining {
			s.joins.refuse(rShutdown)
			j.Refuse(wire.JoinErrShutdown, "concentrator draining")
			return
		}
		if len(s.sessions) >= s.cfg.MaxSessions {
			s.log.Warn("refused client: too many sessions", "remote", remote, "max_sessions", s.cfg.MaxSessions)
			s.joins.refuse(rMaxSessions)
			j.Refuse(wire.JoinErrLimit, fmt.Sprintf("too many sessions on this concentrator: %d at once (max-sessions)", s.cfg.MaxSessions))
			return
		}
		if limit, by := s.tokenLimit(j.Msg.Token); s.perToken[j.Msg.Token] >= limit {
			// The token is a secret: the log names the cap, not it.
			s.log.Warn("refused client: too many sessions for its token", "remote", remote, "max", limit, "cap", by)
			s.joins.refuse(rTokenSessions)
			j.Refuse(wire.JoinErrLimit, fmt.Sprintf("too many sessions for this token: %d at once (%s)", limit, by))
			return
		}
		cfg := s.sessionConfig(j.Msg.Token)
		sess, err := transport.NewServerSession(cfg, j)
		if err != nil {
			s.log.Warn("session setup failed", "remote", remote, "err", err)
			return
		}
		s.sessions[sess.ID()] = sess
		s.tokens[sess.ID()] = j.Msg.Token
		s.opened[sess.ID()] = time.Now()
		s.perToken[j.Msg.Token]++
		s.joins.opened.Add(1)
		if cfg.Tier != nil {
			s.log.Info("session tier", "session", sess.Name(), "tier", cfg.Tier.String())
		}
		s.log.Info("session opened", "session", sess.Name(), "remote", remote, "path", j.Msg.Path.Name)
		s.wg.Add(1)
		go s.run(sess)
		return
	}
	sess := s.sessions[j.Msg.SessionID]
	if sess == nil || !sess.CheckSecret(j.Msg.Secret) {
		s.log.Warn("refused path: unknown session or wrong secret", "remote", remote, "path", j.Msg.Path.Name)
		s.joins.refuse(rUnknownSession)
		j.Refuse(wire.JoinErrSession, "unknown session")
		return
	}
	if err := sess.Attach(j); err != nil {
		s.log.Warn("path join failed", "remote", remote, "path", j.Msg.Path.Name, "err", err)
		return
	}
	s.log.Debug("path joined", "session", sess.Name(), "remote", remote, "path", j.Msg.Path.Name)
}

// run serves a session's flows (and its UDP associations, udp.go) until
// it ends, then forgets it.
func (s *Server) run(sess *transport.Session) {
	defer s.wg.Done()
	s.wg.Add(1)
	go s.assocs(sess)
	for {
		f, err := sess.AcceptFlow(s.ctx)
		if err != nil {
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.flow(f, sess.Name())
		}()
	}
	sess.Close()
	s.mu.Lock()
	tok, opened := s.tokens[sess.ID()], s.opened[sess.ID()]
	if s.perToken[tok]--; s.perToken[tok] <= 0 {
		delete(s.perToken, tok)
	}
	delete(s.sessions, sess.ID())
	delete(s.tokens, sess.ID())
	delete(s.opened, sess.ID())
	s.mu.Unlock()
	if s.acct != nil {
		// Its last counters: what it carried since the last reading.
		s.acct.ended(sessionInfo{sess, tok, opened})
	}
	s.log.Info("session closed", "session", sess.Name(), "err", sess.Err())
}

// flow dials a flow's destination and relays it; session names its
// session in log lines.
func (s *Server) flow(f *transport.Flow, session string) {
	dest, rest, err := socks5.ParseAddr(f.Dest())
	if err != nil || len(rest) != 0 {
		// The refusal carries FIN; the flow ends when the client's FIN
		// answers it.
		f.Refuse(byte(socks5.AddressNotSupported))
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DialTimeout)
	conn, code := s.dialAs(ctx, dest, s.log.With("session", session))
	cancel()
	if conn == nil {
		s.log.Debug("flow refused", "session", session, "dest", dest.String(), "code", code.String())
		f.Refuse(byte(code))
		return
	}
	if err := f.Accept(); err != nil {
		conn.Close()
		f.Reset()
		return
	}
	relay.Relay(conn, f)
}

// dial resolves dest at the concentrator (never at the client), applies
// the destination policy and dials the allowed addresses in turn.
func (s *Server) dial(ctx context.Context, dest socks5.Addr) (net.Conn, socks5.Reply) {
	return s.dialAs(ctx, dest, s.log)
}

// refusedLogEvery is the least time between two lines about refused
// destinations: a client can make refusals at will.
const refusedLogEvery = 10 * time.Second

// noteRefused logs a destination the policy refused, naming the flag
// that would allow it: the first one, then at most one every
// refusedLogEvery, with the count since the last line.
func (s *Server) noteRefused(log *slog.Logger, dest socks5.Addr, err error) {
	n := s.destRefused.Add(1)
	now := time.Now().UnixNano()
	last := s.destLogged.Load()
	if (last != 0 && now-last < int64(refusedLogEvery)) || !s.destLogged.CompareAndSwap(last, now) {
		log.Debug("destination refused", "dest", dest.String(), "err", err)
		return
	}
	log.Info("destination refused: "+allowHint(err), "dest", dest.String(), "err", err, "refused_total", n)
}

// allowHint says which flag would let the concentrator dial an address
// the policy refused with err.
func allowHint(err error) string {
	var re *destpolicy.RefusedError
	if !errors.As(err, &re) {
		return "refused by the destination policy"
	}
	switch {
	case re.IsOwn():
		return "the concentrator's own address (--allow-own allows it)"
	case re.IsLoopback():
		return "loopback, the concentrator's own (--allow-private and --allow-own allow it)"
	}
	return "special-purpose address (--allow-private allows it)"
}

// dialAs is dial, logging to log.
func (s *Server) dialAs(ctx context.Context, dest socks5.Addr, log *slog.Logger) (net.Conn, socks5.Reply) {
	var ips []netip.Addr
	if dest.IP.IsValid() {
		ips = []netip.Addr{dest.IP}
	} else {
		found, err := s.cfg.Resolve(ctx, dest.Name)
		if err != nil {
			return nil, socks5.ReplyForError(err)
		}
		for _, ip := range found {
			if a, ok := netip.AddrFromSlice(ip); ok {
				ips = append(ips, a.Unmap())
			}
		}
		if len(ips) == 0 {
			return nil, socks5.HostUnreachable
		}
	}
	policy := s.destPolicy() // built here for a Server made without Start, in tests
	allowed := ips[:0:0]
	var refused error
	for _, ip := range ips {
		if err := policy.Check(ip); err != nil {
			refused = err
			continue
		}
		allowed = append(allowed, ip)
	}
	if len(allowed) == 0 {
		s.noteRefused(log, dest, refused)
		return nil, socks5.NotAllowed
	}
	var last error
	for _, ip := range allowed {
		conn, err := s.cfg.Dial(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(int(dest.Port))))
		if err == nil {
			return conn, socks5.Succeeded
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, socks5.ReplyForError(last)
}

var _ relay.Flow = (*transport.Flow)(nil)

// Public reports whether a destination may be dialed without
// AllowPrivate (destpolicy.Public): not special-purpose, and not an IPv6
// form that embeds a special-purpose IPv4 address.
func Public(ip netip.Addr) bool { return destpolicy.Public(ip) == nil }

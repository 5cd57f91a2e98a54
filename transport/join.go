package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"braid/scheduler"
	"braid/transport/pktfec"
	"braid/transport/wire"
)

// Joining a session. Every QUIC connection starts with the client opening
// the control stream and sending Join: the user's token, the path it
// belongs to, and, for every connection after the first, the session's id
// and secret. The concentrator answers JoinOK (with the id and secret of a
// new session) or refuses with JoinErr and closes the connection with the
// same code.

// JoinError is a refused join.
type JoinError struct {
	Code   uint8
	Reason string
}

func (e *JoinError) Error() string {
	return fmt.Sprintf("concentrator refused the join (code %d): %s", e.Code, e.Reason)
}

// joinErrBase offsets join error codes in QUIC application close codes.
const joinErrBase = 0x100

const joinTimeout = 5 * time.Second

// minPeerWindow is the smallest window a peer may grant.
const minPeerWindow = 16 << 10

func readMsg(r io.Reader, m *wire.Msg) error {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	t, n, err := wire.ParseMsgHeader(hdr[:])
	if err != nil {
		return err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	return wire.ParseMsgBody(t, body, m)
}

// PathDialer describes one client path and how to open its connections.
type PathDialer struct {
	Info wire.PathInfo
	// Conns is the number of QUIC connections the path keeps (default 1).
	// 0: as many as the path's plans ask for (Plan.Conns), 1 until
	// there is a plan.
	Conns int
	// Dial opens one QUIC connection over this path to the concentrator.
	Dial func(ctx context.Context) (*quic.Conn, error)
}

// Client is the client end of a session: it keeps every path's
// connections dialed and joined for as long as the session lives.
type Client struct {
	*Session
	token   string
	version atomic.Uint32 // the protocol version joins ask for
}

// Dial starts a client session: it joins over the first path that answers
// and then keeps every path's connections up, redialing those that fail.
// A refused token or pin fails Dial at once.
func Dial(ctx context.Context, cfg Config, token string, paths []PathDialer) (*Client, error) {
	if len(paths) == 0 {
		return nil, errors.New("no paths")
	}
	if cfg.Policy == "" {
		for _, pd := range paths {
			if pd.Info.PriceGB > 0 {
				cfg.Policy = PricedPolicy
				break
			}
		}
	}
	// Every line the session logs names it, once it has its id.
	name := new(atomic.Pointer[string])
	if cfg.Logger != nil {
		cfg.Logger = slog.New(sessionLog{h: cfg.Logger.Handler(), name: name})
	}
	s, err := newSession(cfg, true)
	if err != nil {
		return nil, err
	}
	c := &Client{Session: s, token: token}
	c.version.Store(wire.Version)
	var first error
	joined := -1
	var qc *quic.Conn
	var ctrl *quic.Stream
	var ok wire.Msg
	for i, pd := range paths {
		qc, ctrl, err = c.join(ctx, pd, 0, &ok, true)
		if err == nil {
			joined = i
			break
		}
		var je *JoinError
		if errors.As(err, &je) || ctx.Err() != nil {
			s.Close()
			return nil, err
		}
		if first == nil {
			first = fmt.Errorf("path %s: %w", pd.Info.Name, err)
		}
	}
	if joined < 0 {
		s.Close()
		return nil, first
	}
	s.mu.Lock()
	s.id, s.secret = ok.SessionID, ok.Secret
	s.peerFlow = min(uint64(ok.FlowWindow), uint64(s.cfg.FlowWindow))
	s.mu.Unlock()
	n := sessionName(ok.SessionID)
	name.Store(&n)
	for i, pd := range paths {
		p, err := s.path(pd.Info)
		if err != nil {
			s.Close()
			return nil, err
		}
		var pre *pconn
		if i == joined {
			pre = s.attach(p, qc, ctrl, ok.Version)
		}
		c.startPool(p, pd, pre)
	}
	return c, nil
}

// AddPath adds a path to a running session and starts dialing its
// connections; a path of the same name must not exist.
func (c *Client) AddPath(pd PathDialer) error {
	s := c.Session
	s.mu.Lock()
	for _, p := range s.paths {
		if p.info.Name == pd.Info.Name {
			s.mu.Unlock()
			return fmt.Errorf("path %s exists", pd.Info.Name)
		}
	}
	s.mu.Unlock()
	p, err := s.path(pd.Info)
	if err != nil {
		return err
	}
	c.startPool(p, pd, nil)
	return nil
}

// startPool starts the keepers of a path's connection slots: pd.Conns of
// them, or, with pd.Conns 0, one, and later as many as the plan asks for
// (Path.setPool). pre, if not nil, is slot 0's connection, already joined.
func (c *Client) startPool(p *Path, pd PathDialer, pre *pconn) {
	s := c.Session
	if pd.Conns > 0 {
		p.poolSize.Store(int32(pd.Conns))
		for slot := range pd.Conns {
			var first *pconn
			if slot == 0 {
				first = pre
			}
			s.wg.Add(1)
			go c.keep(p, pd, slot, first, nil)
		}
		return
	}
	p.pmu.Lock()
	p.spawn = func(slot int, quit <-chan struct{}) {
		var first *pconn
		if slot == 0 {
			first, pre = pre, nil
		}
		s.wg.Add(1)
		go c.keep(p, pd, slot, first, quit)
	}
	p.pmu.Unlock()
	p.setPool(1)
}

// RemovePath closes a path: its shards in flight are sent again on the
// others, and its connections end.
func (c *Client) RemovePath(name string) error {
	s := c.Session
	s.mu.Lock()
	var p *Path
	for i, x := range s.paths {
		if x.info.Name == name {
			p = x
			s.paths = append(s.paths[:i:i], s.paths[i+1:]...)
			snap := append([]*Path(nil), s.paths...)
			s.pathSnap.Store(&snap)
			break
		}
	}
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no path %s", name)
	}
	p.close(false)
	s.resendLost()
	s.pathsChanged()
	return nil
}

// connVersion is the protocol version one connection speaks, at most
// offered: below codingVersion when its socket does not code packets (a
// peer told codingVersion sends coded packets, which quic-go alone could
// not read).
func connVersion(qc *quic.Conn, offered uint8) uint8 {
	v := min(offered, wire.Version)
	if pktfec.FromContext(qc.Context()) == nil {
		v = min(v, wire.CodingVersion-1)
	}
	return v
}

// join dials one connection of a path and joins it to the session. A
// concentrator that refuses the version (one older than the client) is
// asked again one version lower, down to MinVersion, and the client
// speaks that from then on.
func (c *Client) join(ctx context.Context, pd PathDialer, slot int, ok *wire.Msg, first bool) (*quic.Conn, *quic.Stream, error) {
	for {
		qc, ctrl, err := c.joinVersion(ctx, pd, slot, ok, first)
		var je *JoinError
		v := c.version.Load()
		if !errors.As(err, &je) || je.Code != wire.JoinErrVersion || v <= wire.MinVersion {
			return qc, ctrl, err
		}
		c.version.CompareAndSwap(v, v-1)
	}
}

func (c *Client) joinVersion(ctx context.Context, pd PathDialer, slot int, ok *wire.Msg, first bool) (*quic.Conn, *quic.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	qc, err := pd.Dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*quic.Conn, *quic.Stream, error) {
		var ae *quic.ApplicationError
		if errors.As(err, &ae) && ae.Remote && ae.ErrorCode >= joinErrBase {
			err = &JoinError{Code: uint8(ae.ErrorCode - joinErrBase), Reason: ae.ErrorMessage}
		}
		qc.CloseWithError(0, "")
		return nil, nil, err
	}
	ctrl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return fail(err)
	}
	s := c.Session
	version := connVersion(qc, uint8(c.version.Load()))
	m := wire.Msg{Type: wire.MsgJoin, Version: version, Token: c.token, Path: pd.Info, ConnIndex: uint8(slot), Device: c.cfg.Device,
		FlowWindow: uint32(s.cfg.InitialFlowWindow), SessionWindow: uint64(s.cfg.SessionWindow)}
	if !first {
		m.SessionID, m.Secret = s.id, s.secret
	}
	if _, err := ctrl.Write(wire.AppendMsg(nil, &m)); err != nil {
		return fail(err)
	}
	ctrl.SetReadDeadline(time.Now().Add(joinTimeout))
	if err := readMsg(ctrl, ok); err != nil {
		return fail(err)
	}
	ctrl.SetReadDeadline(time.Time{})
	switch ok.Type {
	case wire.MsgJoinOK:
	case wire.MsgJoinErr:
		return fail(&JoinError{Code: ok.Code, Reason: ok.Reason})
	default:
		return fail(wire.Malformed("%v in answer to join", ok.Type))
	}
	if ok.FlowWindow < minPeerWindow || ok.SessionWindow < uint64(ok.FlowWindow) {
		return fail(wire.Malformed("join-ok: windows %d/%d too small", ok.FlowWindow, ok.SessionWindow))
	}
	if ok.Version < wire.MinVersion || ok.Version > version {
		return fail(wire.Malformed("join-ok: version %d for a join with %d", ok.Version, version))
	}
	return qc, ctrl, nil
}

// keep holds one connection slot of a path: it runs the connection and
// redials when it ends, with backoff, until the session or the path ends
// or quit closes (the plan shrank the pool: the connection retires).
func (c *Client) keep(p *Path, pd PathDialer, slot int, pc *pconn, quit <-chan struct{}) {
	s := c.Session
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		if pc != nil {
			select {
			case <-pc.done:
			case <-s.done:
				return
			case <-p.done:
				return
			case <-quit:
				pc.retire()
				return
			}
			pc = nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.done:
			case <-p.done:
			case <-quit:
			case <-ctx.Done():
			}
			cancel()
		}()
		var ok wire.Msg
		qc, ctrl, err := c.join(ctx, pd, slot, &ok, false)
		cancel()
		if err == nil {
			if pc = s.attach(p, qc, ctrl, ok.Version); pc == nil {
				return // the session ended while this connection joined
			}
			backoff = 100 * time.Millisecond
			continue
		}
		var je *JoinError
		if errors.As(err, &je) && je.Code == wire.JoinErrSession {
			s.closeWith(fmt.Errorf("rejoin over path %s: %w", p.info.Name, err), false)
			return
		}
		s.log.Debug("redial path", "path", p.info.Name, "err", err)
		select {
		case <-s.done:
			return
		case <-p.done:
			return
		case <-quit:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// PricedPolicy is the policy a session takes when none is configured and
// its paths have prices (the client's, or the first one joined at the
// concentrator): the cheapest path with room carries each shard, and a
// dearer one only what the cheaper cannot (scheduler's cheapest). A user
// who states prices expects them to count; without prices the default
// is weighted.
const PricedPolicy = "cheapest"

// Join is a join request read from a new connection at the concentrator.
type Join struct {
	Msg  wire.Msg
	conn *quic.Conn
	ctrl *quic.Stream
}

// AcceptJoin reads the join request of a new connection.
func AcceptJoin(ctx context.Context, qc *quic.Conn) (*Join, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	ctrl, err := qc.AcceptStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("accept control stream: %w", err)
	}
	ctrl.SetReadDeadline(time.Now().Add(joinTimeout))
	j := &Join{conn: qc, ctrl: ctrl}
	if err := readMsg(ctrl, &j.Msg); err != nil {
		j.Refuse(wire.JoinErrMalformed, "malformed join")
		return nil, fmt.Errorf("read join: %w", err)
	}
	ctrl.SetReadDeadline(time.Time{})
	if j.Msg.Type != wire.MsgJoin {
		j.Refuse(wire.JoinErrMalformed, "expected join")
		return nil, wire.Malformed("%v instead of join", j.Msg.Type)
	}
	// A newer client is answered with our version (connVersion), which
	// it must then speak; an older one than MinVersion is refused.
	if j.Msg.Version < wire.MinVersion {
		j.Refuse(wire.JoinErrVersion, fmt.Sprintf("version %d not supported", j.Msg.Version))
		return nil, fmt.Errorf("join with version %d", j.Msg.Version)
	}
	if j.Msg.FlowWindow < minPeerWindow || j.Msg.SessionWindow < uint64(j.Msg.FlowWindow) {
		j.Refuse(wire.JoinErrMalformed, "windows too small")
		return nil, wire.Malformed("join: windows %d/%d too small", j.Msg.FlowWindow, j.Msg.SessionWindow)
	}
	return j, nil
}

// RemoteAddr returns the joining connection's remote address.
func (j *Join) RemoteAddr() string { return j.conn.RemoteAddr().String() }

// Refuse answers the join with an error and closes the connection.
func (j *Join) Refuse(code uint8, reason string) {
	j.ctrl.Write(wire.AppendMsg(nil, &wire.Msg{Type: wire.MsgJoinErr, Code: code, Reason: reason}))
	j.conn.CloseWithError(quic.ApplicationErrorCode(joinErrBase+int(code)), reason)
}

// NewServerSession creates a session for a first join and attaches its
// connection.
func NewServerSession(cfg Config, j *Join) (*Session, error) {
	cfg.Device = j.Msg.Device
	cfg.Terms.Profile = deviceProfile(j.Msg.Device)
	if cfg.Policy == "" && (j.Msg.Path.PriceGB > 0 || cfg.Prices[j.Msg.Path.Medium] > 0) {
		cfg.Policy = PricedPolicy
	}
	id, secret := newSecret()
	if cfg.Logger != nil {
		cfg.Logger = cfg.Logger.With("session", sessionName(id))
	}
	s, err := newSession(cfg, false)
	if err != nil {
		return nil, err
	}
	s.id, s.secret = id, secret
	s.peerFlow = min(uint64(j.Msg.FlowWindow), uint64(s.cfg.FlowWindow))
	if err := s.Attach(j); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Attach adds a joined connection to the session (the caller has checked
// the token and, for a session that exists, the secret) and answers it.
func (s *Session) Attach(j *Join) error {
	if j.Msg.Path.PriceGB == 0 {
		j.Msg.Path.PriceGB = s.cfg.Prices[j.Msg.Path.Medium]
	}
	p, err := s.path(j.Msg.Path)
	if err != nil {
		j.Refuse(wire.JoinErrLimit, err.Error())
		return err
	}
	p.mu.Lock()
	full := len(p.conns) >= maxConnsPerPath
	p.mu.Unlock()
	if full {
		j.Refuse(wire.JoinErrLimit, fmt.Sprintf("path %s has %d connections already", p.info.Name, maxConnsPerPath))
		return fmt.Errorf("path %s is full", p.info.Name)
	}
	ok := wire.Msg{Type: wire.MsgJoinOK, Version: connVersion(j.conn, j.Msg.Version), SessionID: s.id, Secret: s.secret,
		Path: j.Msg.Path, ConnIndex: j.Msg.ConnIndex,
		FlowWindow: uint32(s.cfg.InitialFlowWindow), SessionWindow: uint64(s.cfg.SessionWindow)}
	if _, err := j.ctrl.Write(wire.AppendMsg(nil, &ok)); err != nil {
		j.conn.CloseWithError(0, "")
		return fmt.Errorf("answer join: %w", err)
	}
	c := s.attach(p, j.conn, j.ctrl, ok.Version)
	if c == nil {
		return ErrSessionClosed
	}
	if t := s.tierMsg.Load(); t != nil {
		c.sendControl(&wire.Msg{Type: wire.MsgTier, Body: t.forVersion(c.version)})
	}
	select {
	case <-s.goAway:
		c.sendControl(&wire.Msg{Type: wire.MsgGoAway, Reason: "draining"})
	default:
	}
	return nil
}

// deviceProfile is a device's profile as the planner reads it.
func deviceProfile(d wire.Device) scheduler.Profile {
	return scheduler.Profile{MTU: int(d.MTU), CPU: scheduler.CPUClass(d.CPU), Metered: d.Metered}
}

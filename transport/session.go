package transport

// A Session is one client device with one concentrator. Both ends run the
// same code: a flow's bytes are cut into blocks (flow_send.go), each block is
// coded into shards, the dispatcher (dispatch.go) spreads the shards over
// the paths' QUIC connections (path.go), and the far side rebuilds each
// block from any k shards and delivers the flow's bytes in order.
//
//   Flow.Write -> txBlock (pooled buffer, k data + m parity shards)
//     -> dispatch: pick a path per shard (earliest expected arrival)
//     -> Path.queue -> stream writer goroutines of each pconn -> QUIC
//   QUIC -> stream reader goroutine -> Session.onShard -> Flow.onShard
//     -> rxBlock (decode when k shards are in) -> in-order segments
//     -> Flow.Read; ACK and CREDIT go back on a control stream.
//
// The session's rooms, each with its own state and lock:
//   - Session.mu: the paths (a copy is read without it), the session's
//     end (closeErr) and the grace period (downSince).
//   - flowTable (flows.go): the flows by id; lookups take no lock, so a
//     received shard, ack or credit never takes a session-wide lock.
//   - sendSpace (budget.go): block bytes sent and not yet acknowledged.
//   - the planner (plan.go) owns its state in its goroutine and hands
//     plans to the policy; scheduler.PlanLoop decides.
//   - Flow.writeMu (its senders) and Flow.mu (its send and receive
//     state); Path.pmu (the pool), Path.mu (its connections), Path.umu
//     (re-sends); pconn.wmu (control bytes) and pconn.coderMu (its
//     packet coder); pathmon's Monitor and Pacer locks; notify.Broadcast's.
//
// Lock order, outermost first; a lock is only ever taken while holding
// locks above it:
//
//   Flow.writeMu > Session.mu > flowTable.mu > Flow.mu > sendSpace.mu >
//   Path.pmu > Path.mu > Path.umu > pconn.coderMu (> pktfec's) >
//   pconn.wmu > Monitor.mu, Pacer.mu > Budget's and notify.Broadcast's
//
// Most are leaves in practice: Session.mu is held with Path.mu only (a
// full session evicting an idle path), flowTable.mu with the budget's
// (newFlow), Flow.mu with the budget's (its window). Path.mu may be held
// while reading quic-go's ConnectionStats, never while writing to a
// stream. No lock is held while a channel send may block
// (TestStressFlowsAndPaths runs 200 flows under the race detector while
// paths break, come and go).

import (
	"braid/internal/notify"
	"braid/internal/tier"
	"braid/transport/wire"
	"context"
	"reflect"

	"braid/scheduler"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Errors a flow or session reports.
var (
	ErrSessionClosed = errors.New("session closed")
	ErrFlowReset     = errors.New("flow reset")
	ErrNoPath        = errors.New("no live path within the grace period")
	ErrTooManyFlows  = errors.New("too many flows in session")
	// ErrGoingAway: the concentrator is draining and takes no new flows
	// in this session; a new session (perhaps to another concentrator)
	// takes them.
	ErrGoingAway = errors.New("concentrator going away")
)

// Session carries flows between a client and a concentrator over paths.
type Session struct {
	cfg    Config
	policy scheduler.Policy
	// The policy's optional interfaces, nil when it has none.
	planning scheduler.Planning
	prio     scheduler.Prioritizer
	comp     scheduler.Compressor

	// The bestvalue planner (plan.go).
	terms   atomic.Pointer[Terms]
	tierMsg atomic.Pointer[tierMsg] // the tier pushed to the client

	// Coded datagrams (dgram.go): each class's sending state, the
	// receiving state, the last group id and the counters.
	dgtx    [scheduler.MaxClasses]dgTx
	dgrx    dgRx
	dgGroup atomic.Uint32
	dstats  DatagramStats
	tier    atomic.Pointer[tier.Tier]           // the tier, for Classify
	replan  chan struct{}                       // SetTerms asks for a plan at once
	plans   atomic.Pointer[[]PlanInfo]          // per class, the default first
	offered [scheduler.MaxClasses]atomic.Uint64 // data bytes cut into blocks, per class
	waited  [scheduler.MaxClasses]atomic.Int64  // ns dispatch waited for a path with room, per class
	acct    sessionAccount                      // flow bytes delivered per class (account.go)

	log    *slog.Logger
	client bool
	id     [16]byte
	secret [32]byte
	epoch  time.Time

	flows  flowTable  // flows.go: lookups take no lock
	assocs assocTable // udp.go

	mu        sync.Mutex
	paths     []*Path
	pathSnap  atomic.Pointer[[]*Path] // copy of paths, read without mu on the hot path
	accept    chan *Flow
	closeErr  error
	downSince time.Time // zero while some connection is up

	// Sending: block buffer bytes sent and not yet acknowledged, bounded
	// by cfg.SessionWindow and cfg.Budget (budget.go).
	tx sendSpace
	// Receiving: rxGranted is the sum over live flows of what each may
	// still send or has not been read (rxLimit - rxConsumed); fair shares
	// of cfg.SessionWindow bound it (Flow.grantLocked).
	rxGranted atomic.Uint64
	// rxUnread is the flow bytes received (to each flow's highest
	// offset) and not yet taken by the readers; Flow.onShard bounds it.
	rxUnread atomic.Int64

	rxHeld atomic.Int64 // shard bytes held in reassembly

	space chan struct{} // a path queue drained: dispatch may go on
	// dispatchTurn is the token a flow holds while it dispatches a block.
	// Goroutines blocked on a channel are served first come, first served,
	// so flows waiting for room on the paths get it in turn: without it a
	// bulk flow, woken first whenever room appears, kept requests waiting
	// for seconds behind its blocks once pacing made braid's own queues
	// the bottleneck (failover under duplicate: rr p99 2-20 s).
	dispatchTurn chan struct{}
	changed      notify.Broadcast // a path went up or down
	goAway       chan struct{}    // closed once the concentrator drains (GOAWAY)
	goAwayOnce   sync.Once
	done         chan struct{}
	wg           sync.WaitGroup

	peerFlow   uint64 // flow credit the peer grants each new flow, clamped to cfg.FlowWindow
	nextConnID atomic.Uint32
	shardSeq   atomic.Uint64 // shards placed, for policies that rotate
	stats      SessionStats

	// blockTimes times blocks from first send to acknowledgement, per
	// class (blocktime.go).
	blockTimes blockTimes
}

// SessionStats counts what a session did; fields are updated atomically.
type SessionStats struct {
	BlocksSent, BlocksReceived     atomic.Uint64
	ShardsSent, ShardsReceived     atomic.Uint64
	ShardsDuplicate, ShardsDropped atomic.Uint64
	ShardsResent, BlocksDecoded    atomic.Uint64
	// ShardsOverdue counts the re-sends (also in ShardsResent) of blocks
	// whose acknowledgement came later than the RTO, rather than of
	// shards whose connection went away.
	ShardsOverdue atomic.Uint64
	// ShardsCut counts the re-sends (also in ShardsResent) of shards
	// whose connection had retired and closed before they were
	// acknowledged: a drain cut short (retireDrain). A connection that
	// goes suspect or down has its shards re-sent too; those are not cut.
	ShardsCut atomic.Uint64
	// BlocksCompressed and BytesSaved count blocks sent compressed and
	// the bytes compression saved (compress.go).
	BlocksCompressed, BytesSaved atomic.Uint64
	// AssocsRefused counts associations refused for the limit;
	// DatagramsMalformed and DatagramsUnknown the peer's datagrams
	// dropped as malformed or for an association that is not open.
	AssocsRefused, DatagramsMalformed, DatagramsUnknown atomic.Uint64
	// ProtocolErrors counts the connections closed because the peer
	// broke the protocol on them (an error wrapping wire.ErrMalformed:
	// a control message or a shard that could not be parsed or made no
	// sense); they close with the protocol-error code 1.
	ProtocolErrors atomic.Uint64
}

func newSession(cfg Config, client bool) (*Session, error) {
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Session{
		cfg:    cfg,
		log:    cfg.Logger,
		client: client,
		epoch:  time.Now(),
		accept: make(chan *Flow, cfg.MaxFlows),
		assocs: assocTable{m: map[uint32]*Association{}, accept: make(chan *Association, cfg.MaxAssociations)},
		space:  make(chan struct{}, 1),

		dispatchTurn: make(chan struct{}, 1),
		goAway:       make(chan struct{}),
		done:         make(chan struct{}),
		replan:       make(chan struct{}, 1),
	}
	s.dispatchTurn <- struct{}{}
	s.policy, _ = scheduler.New(cfg.Policy, cfg.K, cfg.M, MinShard) // Validate checked the name
	s.downSince = s.epoch
	if cfg.Terms.Profile == (scheduler.Profile{}) {
		cfg.Terms.Profile = deviceProfile(cfg.Device)
	}
	s.terms.Store(&cfg.Terms)
	if cfg.Tier != nil {
		m, err := encodeTier(cfg.Tier)
		if err != nil {
			return nil, fmt.Errorf("tier %s: %w", cfg.Tier.Name, err)
		}
		s.tierMsg.Store(m)
		s.tier.Store(cfg.Tier)
		t := TermsOf(cfg.Tier, cfg.Terms.Profile)
		s.terms.Store(&t)
	}
	s.wg.Add(1)
	go s.maintain()
	s.prio, _ = s.policy.(scheduler.Prioritizer)
	s.comp, _ = s.policy.(scheduler.Compressor)
	if pl, ok := s.policy.(scheduler.Planning); ok {
		s.planning = pl
		s.wg.Add(1)
		go s.plan(pl)
	} else if client {
		s.wg.Add(1)
		go s.sizePoolsByLoss()
	}
	return s, nil
}

func newSecret() (id [16]byte, secret [32]byte) {
	rand.Read(id[:])
	rand.Read(secret[:])
	return id, secret
}

// ID returns the session's identifier.
func (s *Session) ID() [16]byte { return s.id }

// CheckSecret reports, in constant time, whether secret is the session's.
func (s *Session) CheckSecret(secret [32]byte) bool {
	return subtle.ConstantTimeCompare(secret[:], s.secret[:]) == 1
}

// Stats returns the session's counters.
func (s *Session) Stats() *SessionStats { return &s.stats }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeErr
}

func (s *Session) now() time.Duration { return time.Since(s.epoch) }

// Close ends the session: the peer is told, every flow fails with
// ErrSessionClosed, and Close returns once every goroutine has stopped.
func (s *Session) Close() error {
	s.closeWith(ErrSessionClosed, true)
	s.wg.Wait()
	return nil
}

func (s *Session) closeWith(err error, tellPeer bool) {
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		return
	}
	s.closeErr = err
	paths := s.pathList()
	close(s.done)
	s.mu.Unlock()
	flows := s.flows.close()
	if err != ErrSessionClosed {
		s.log.Debug("session ended", "err", err) // its owner says why, once
	}
	for _, f := range flows {
		f.fail(err)
	}
	s.closeAssocs(err)
	for _, p := range paths {
		p.close(tellPeer)
	}
}

// GoAway tells the client that this concentrator is draining
// (concentrator side): its live flows go on, new ones go to a new session.
// It is sent on every path and again on every connection that joins.
func (s *Session) GoAway(reason string) {
	s.goAwayOnce.Do(func() { close(s.goAway) })
	s.sendEverywhere(&wire.Msg{Type: wire.MsgGoAway, Reason: reason})
}

// GoingAway is closed once the concentrator has said it is draining.
func (s *Session) GoingAway() <-chan struct{} { return s.goAway }

// Paths returns the session's paths.
func (s *Session) Paths() []*Path {
	return append([]*Path(nil), s.pathList()...)
}

// pathList returns the current paths without copying; do not modify it.
func (s *Session) pathList() []*Path {
	if p := s.pathSnap.Load(); p != nil {
		return *p
	}
	return nil
}

// path returns the path named name, creating it. When the session has
// maxPaths already, a path whose connections have all gone (an interface
// that vanished) makes room.
func (s *Session) path(info wire.PathInfo) (*Path, error) {
	var evicted *Path
	defer func() {
		if evicted != nil {
			evicted.close(false) // outside s.mu: closing takes it
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr != nil {
		return nil, s.closeErr
	}
	for _, p := range s.paths {
		if p.info.Name == info.Name {
			return p, nil
		}
	}
	if len(s.paths) >= maxPaths {
		for i, old := range s.paths {
			old.mu.Lock()
			idle := len(old.conns) == 0
			old.mu.Unlock()
			if idle {
				s.paths = append(s.paths[:i:i], s.paths[i+1:]...)
				evicted = old
				break
			}
		}
	}
	if len(s.paths) >= maxPaths {
		return nil, fmt.Errorf("session has %d paths already", maxPaths)
	}
	p := newPath(s, info)
	s.paths = append(s.paths, p)
	snap := append([]*Path(nil), s.paths...)
	s.pathSnap.Store(&snap)
	return p, nil
}

const maxPaths = 16

// maintain runs the session's timers: overdue blocks, the grace period.
func (s *Session) maintain() {
	defer s.wg.Done()
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		down := s.downSince
		s.mu.Unlock()
		flows := s.flows.all()
		if !down.IsZero() && time.Since(down) > s.cfg.Grace {
			s.closeWith(ErrNoPath, false)
			return
		}
		if down.IsZero() {
			rto := s.rto()
			for _, f := range flows {
				f.checkOverdue(rto)
				f.resendReset(time.Second)
			}
		}
	}
}

// rto is how long a block may stay unacknowledged before its shards are
// sent again: twice the slowest live path's smoothed RTT plus its queue,
// and a floor for timer and scheduling noise.
func (s *Session) rto() time.Duration {
	var worst time.Duration
	for _, p := range s.pathList() {
		if !p.Up() {
			continue
		}
		if d := 2*p.SRTT() + p.queueDelay(); d > worst {
			worst = d
		}
	}
	return worst + 200*time.Millisecond
}

// creditRTT is the round trip a flow's credit takes, for its window's
// auto-tuning: the slowest live path's smoothed RTT and queue (blocks are
// delivered in order, so the slowest path sets the pace).
func (s *Session) creditRTT() time.Duration {
	var worst time.Duration
	for _, p := range s.pathList() {
		if p.Up() {
			worst = max(worst, p.SRTT()+p.queueDelay())
		}
	}
	return worst
}

// anyUsable reports whether some path has a usable connection.
func (s *Session) anyUsable() bool {
	for _, p := range s.pathList() {
		if p.Up() {
			return true
		}
	}
	return false
}

// pathsChanged notes whether any path is up, for the grace period, and
// wakes dispatchers waiting for a path.
func (s *Session) pathsChanged() {
	anyUp := s.anyUsable()
	s.mu.Lock()
	if anyUp {
		s.downSince = time.Time{}
	} else if s.downSince.IsZero() {
		s.downSince = time.Now()
	}
	s.mu.Unlock()
	s.changed.Fire()
}

// changedCh returns a channel closed when a path next goes up or down.
func (s *Session) changedCh() <-chan struct{} { return s.changed.Wait() }

// resendLost re-dispatches the shards of every unacknowledged block that
// can no longer complete from shards on live connections.
func (s *Session) resendLost() {
	for _, f := range s.flows.all() {
		f.resendLost()
	}
}

// OpenFlow opens a flow to dest (SOCKS5 address encoding) and waits for the
// concentrator's reply. A refusal is returned as a *RefusedError.
func (s *Session) OpenFlow(ctx context.Context, dest []byte) (*Flow, error) {
	return s.OpenFlowClass(ctx, dest, 0)
}

// OpenFlowClass is OpenFlow for a flow of traffic class class (an index
// into the tier's classes, tier.Tier.Classify): the class is sent in the
// OPEN block, so both ends plan the flow by its class's SLA.
func (s *Session) OpenFlowClass(ctx context.Context, dest []byte, class int) (*Flow, error) {
	if !s.client {
		return nil, errors.New("only the client opens flows")
	}
	if len(dest) > wire.MaxOpenLen-1 {
		return nil, errors.New("destination too long")
	}
	if class < 0 || class >= scheduler.MaxClasses {
		return nil, fmt.Errorf("class %d out of range", class)
	}
	select {
	case <-s.goAway:
		return nil, ErrGoingAway
	default:
	}
	t := &s.flows
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, s.Err()
	}
	if t.count() >= s.cfg.MaxFlows {
		t.mu.Unlock()
		return nil, ErrTooManyFlows
	}
	t.last++
	f := newFlow(s, t.last)
	f.class.Store(uint32(class))
	f.reply = make(chan byte, 1)
	t.addLocked(f)
	t.mu.Unlock()

	open := append([]byte{byte(class)}, dest...)
	if err := f.sendBlock(ctx, open, wire.FlagOpen); err != nil {
		f.Reset()
		return nil, err
	}
	select {
	case code := <-f.reply:
		if code != 0 {
			f.Close() // the refusal carried FIN: finish our side too
			return nil, &RefusedError{Code: code}
		}
		// The concentrator has the flow now (a credit sent before its
		// OPEN arrived would be dropped, and the window wait for it).
		f.grantOpening()
		return f, nil
	case <-f.dead:
		select {
		case code := <-f.reply: // the reply came just before the end
			if code != 0 {
				return nil, &RefusedError{Code: code}
			}
		default:
		}
		return nil, f.deadErr()
	case <-ctx.Done():
		f.Reset()
		return nil, ctx.Err()
	}
}

// RefusedError is the concentrator's refusal of a flow; Code is a SOCKS5
// reply code.
type RefusedError struct{ Code byte }

func (e *RefusedError) Error() string { return fmt.Sprintf("flow refused with code %d", e.Code) }

// AcceptFlow returns the next flow the client opened (concentrator side).
// The caller answers it with Flow.Accept or Flow.Refuse.
func (s *Session) AcceptFlow(ctx context.Context) (*Flow, error) {
	select {
	case f := <-s.accept:
		return f, nil
	case <-s.done:
		return nil, s.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// onShard files one received shard. It owns buf. A non-nil error means the
// peer broke the protocol; the caller ends the connection.
func (s *Session) onShard(h *wire.ShardHeader, buf []byte) error {
	s.stats.ShardsReceived.Add(1)
	if f := s.flows.get(h.Flow); f != nil {
		return f.onShard(h, buf)
	}
	// No such flow: the peer opens one, or a late shard of one that has
	// ended (or never was).
	t := &s.flows
	t.mu.Lock()
	f := t.get(h.Flow) // filed meanwhile by another connection's reader
	if f == nil {
		if s.client || h.Flags&wire.FlagOpen == 0 || !t.opened.fresh(h.Flow) {
			// A shard of a flow that has ended (or never was): its
			// block was delivered before the flow ended, so repeat the
			// ack in case the last one was lost with a path.
			known := s.client || t.opened.seen(h.Flow)
			t.mu.Unlock()
			putShard(buf)
			s.stats.ShardsDuplicate.Add(1)
			if known {
				s.sendControl(&wire.Msg{Type: wire.MsgAck, Flow: h.Flow, Value: h.Block + 1})
			}
			return nil
		}
		t.opened.mark(h.Flow)
		if t.count() >= s.cfg.MaxFlows || t.closed {
			t.mu.Unlock()
			putShard(buf)
			s.sendReset(h.Flow, 0, resetCodeLimit)
			return nil
		}
		f = newFlow(s, h.Flow)
		t.addLocked(f)
	}
	t.mu.Unlock()
	return f.onShard(h, buf)
}

// removeFlow forgets a flow that has finished in both directions.
func (s *Session) removeFlow(f *Flow) { s.flows.remove(f) }

// Buffered returns the flow bytes this side has received and its readers
// have not yet taken; the session window bounds it (Flow.onShard).
func (s *Session) Buffered() int64 { return s.rxUnread.Load() }

// NumFlows returns the number of live flows.
func (s *Session) NumFlows() int { return s.flows.count() }

// onControl handles a session-level control message from the peer.
func (s *Session) onControl(m *wire.Msg) error {
	switch m.Type {
	case wire.MsgTier:
		if !s.client {
			return wire.Malformed("tier from a client")
		}
		t, err := tier.ParseBinary(m.Body)
		if err != nil {
			return err // wraps tier.ErrMalformed
		}
		s.tier.Store(t)
		cur := s.Terms()
		if next := TermsOf(t, cur.Profile); !reflect.DeepEqual(cur, next) {
			s.log.Info("tier from the concentrator", "tier", t.String())
			s.SetTerms(next)
		}
		return nil
	case wire.MsgAck, wire.MsgCredit, wire.MsgReset:
		f := s.flows.get(m.Flow)
		if f == nil && m.Type == wire.MsgReset && m.Code != resetCodeAnswer {
			// A reset of a flow this side never saw (its OPEN was lost or
			// is late) or has forgotten: remember the id, so a late OPEN
			// cannot start it, and answer so the peer can forget it too.
			if !s.client {
				s.flows.mu.Lock()
				if f = s.flows.get(m.Flow); f == nil {
					s.flows.opened.mark(m.Flow)
				}
				s.flows.mu.Unlock()
			}
			if f == nil {
				s.sendReset(m.Flow, 0, resetCodeAnswer)
				return nil
			}
		}
		if f == nil {
			return nil // a flow that has ended: nothing to do
		}
		switch m.Type {
		case wire.MsgAck:
			return f.onAck(m.Value)
		case wire.MsgCredit:
			f.onCredit(m.Value)
		case wire.MsgReset:
			f.onReset(m.Value, m.Code)
		}
	case wire.MsgUDPOpen:
		return s.onUDPOpen(m.Flow)
	case wire.MsgUDPClose:
		return s.onUDPClose(m.Flow, m.Code)
	case wire.MsgSessionCredit:
		// Version 1's session credit: flows' own grants bound the
		// session now (Flow.grantLocked), so there is nothing to do.
		return nil
	case wire.MsgClose:
		s.closeWith(fmt.Errorf("%w by peer: %s", ErrSessionClosed, m.Reason), false)
	case wire.MsgGoAway:
		if !s.client {
			return wire.Malformed("goaway from a client")
		}
		s.goAwayOnce.Do(func() {
			s.log.Info("concentrator going away: new flows wait for a new session", "reason", m.Reason)
			close(s.goAway)
		})
	default:
		return wire.Malformed("unexpected %v on an established connection", m.Type)
	}
	return nil
}

// rxAccount records that a flow's highest received offset grew by n
// bytes (the flow checked them against its own window).
func (s *Session) rxAccount(n uint64) { s.rxUnread.Add(int64(n)) }

// consumed records that n received bytes have left the session.
func (s *Session) consumed(n uint64) {
	s.rxUnread.Add(-int64(n))
}

// sendControl sends a message on the best live connection. Losing it with
// that connection is repaired: acks are repeated for late shards, credit
// and state are re-sent when a connection goes down (resync).
func (s *Session) sendControl(m *wire.Msg) {
	if c := s.bestConn(); c != nil {
		c.sendControl(m)
	}
}

// sendEverywhere sends a message on one live connection of every path, for
// messages whose loss would not be repaired otherwise.
func (s *Session) sendEverywhere(m *wire.Msg) {
	for _, p := range s.pathList() {
		if c := p.liveConn(); c != nil {
			c.sendControl(m)
		}
	}
}

func (s *Session) sendReset(flow uint32, final uint64, code uint8) {
	s.sendEverywhere(&wire.Msg{Type: wire.MsgReset, Flow: flow, Code: code, Value: final})
}

// RESET codes.
const (
	resetCodeApp    = 0 // the application reset the flow
	resetCodeLimit  = 2 // the concentrator refused the flow: too many
	resetCodeAnswer = 3 // an answer to the peer's RESET; never answered
)

// bestConn is the live connection with the lowest smoothed RTT.
func (s *Session) bestConn() *pconn {
	var best *pconn
	var bestRTT time.Duration
	for _, p := range s.pathList() {
		c := p.liveConn()
		if c == nil {
			continue
		}
		if r := p.SRTT(); best == nil || r < bestRTT {
			best, bestRTT = c, r
		}
	}
	return best
}

// resync re-sends every flow's ack and credit, after
// a connection that may have carried the last ones went down.
func (s *Session) resync() {
	flows := s.flows.all()
	c := s.bestConn()
	if c == nil {
		return
	}
	for _, f := range flows {
		f.mu.Lock()
		next, lim := f.rxNext, f.rxLimit
		f.mu.Unlock()
		c.sendControl(&wire.Msg{Type: wire.MsgAck, Flow: f.id, Value: next})
		c.sendControl(&wire.Msg{Type: wire.MsgCredit, Flow: f.id, Value: lim})
	}
}

package transport

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"braid/internal/bufpool"
	"braid/scheduler"
	"braid/transport/wire"
)

// An Association carries one application's UDP datagrams, to and from
// any number of destinations, over the session (protocol version 4,
// docs/PROTOCOL.md "UDP associations"). The client opens it (UDP-OPEN on
// every path's control stream, answered by UDP-OPEN once the concentrator
// took it, or UDP-CLOSE with a code); each datagram then rides one QUIC
// DATAGRAM frame on the path with the lowest RTT, with no retransmission:
// a datagram lost on the way is lost, as UDP's would be, and nothing holds
// another back. Either end closes it with UDP-CLOSE.
//
// Received datagrams wait in a queue of AssocQueue; past it they are
// dropped and counted, as a full socket buffer drops them.
type Association struct {
	s  *Session
	id uint32

	in       chan datagram
	answered chan uint8 // client: the concentrator's answer (0: taken)
	done     chan struct{}
	once     sync.Once
	err      error // why it ended, set before done closes
	last     atomic.Int64

	// peerClass is the traffic class of the peer's last datagram: what
	// the concentrator's answers are sent as.
	peerClass atomic.Uint32

	// Counters.
	Sent, Received, Dropped, TooLarge atomic.Uint64
}

type datagram struct{ addr, payload []byte }

// Association errors.
var (
	// ErrUDPUnsupported: the peer's protocol version has no associations.
	ErrUDPUnsupported = errors.New("transport: the concentrator does not carry UDP (protocol version 3 or older)")
	// ErrAssociationClosed: the association has ended.
	ErrAssociationClosed = errors.New("transport: association closed")
	// ErrDatagramTooLarge: the datagram does not fit one QUIC datagram on
	// any path.
	ErrDatagramTooLarge = errors.New("transport: datagram too large for the paths")
)

// UDP-CLOSE codes.
const (
	udpCloseApp     = 0 // closed by its application
	udpCloseLimit   = 1 // the concentrator holds its most associations
	udpCloseIdle    = 2 // idle for too long
	udpCloseSession = 3 // the session ends
)

// AssocRefusedError is the concentrator's refusal of an association.
type AssocRefusedError struct{ Code uint8 }

func (e *AssocRefusedError) Error() string {
	if e.Code == udpCloseLimit {
		return "transport: association refused: too many associations"
	}
	return "transport: association refused"
}

// assocTable holds a session's associations.
type assocTable struct {
	mu     sync.Mutex
	m      map[uint32]*Association
	next   uint32       // client: the last id opened
	opened replayWindow // concentrator: ids the client has opened
	accept chan *Association
}

func (t *assocTable) get(id uint32) *Association {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

func (s *Session) newAssoc(id uint32) *Association {
	a := &Association{s: s, id: id, in: make(chan datagram, s.cfg.AssocQueue),
		answered: make(chan uint8, 1), done: make(chan struct{})}
	a.last.Store(int64(s.now()))
	return a
}

// speaksUDP says whether some connection's peer carries associations.
func (s *Session) speaksUDP() bool {
	for _, p := range s.pathList() {
		p.mu.Lock()
		for _, c := range p.conns {
			if c.udp {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
	}
	return false
}

// OpenAssociation opens a UDP association (client) and waits for the
// concentrator to take it.
func (s *Session) OpenAssociation(ctx context.Context) (*Association, error) {
	if !s.client {
		return nil, errors.New("transport: only the client opens associations")
	}
	if !s.speaksUDP() {
		return nil, ErrUDPUnsupported
	}
	s.assocs.mu.Lock()
	if len(s.assocs.m) >= s.cfg.MaxAssociations {
		s.assocs.mu.Unlock()
		return nil, &AssocRefusedError{Code: udpCloseLimit}
	}
	s.assocs.next++
	a := s.newAssoc(s.assocs.next)
	s.assocs.m[a.id] = a
	s.assocs.mu.Unlock()
	s.sendEverywhere(&wire.Msg{Type: wire.MsgUDPOpen, Flow: a.id})
	select {
	case code := <-a.answered:
		if code != 0 {
			a.end(&AssocRefusedError{Code: code}, false)
			return nil, &AssocRefusedError{Code: code}
		}
		return a, nil
	case <-a.done:
		return nil, a.err
	case <-s.done:
		a.end(s.Err(), false)
		return nil, s.Err()
	case <-ctx.Done():
		a.end(ctx.Err(), true)
		return nil, ctx.Err()
	}
}

// AcceptAssociation returns the next association the client opened
// (concentrator).
func (s *Session) AcceptAssociation(ctx context.Context) (*Association, error) {
	select {
	case a := <-s.assocs.accept:
		return a, nil
	case <-s.done:
		return nil, s.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// onUDPOpen is the client's UDP-OPEN at the concentrator, or its answer at
// the client. Duplicates (it comes on every path) do nothing.
func (s *Session) onUDPOpen(id uint32) error {
	t := &s.assocs
	if s.client {
		if a := t.get(id); a != nil {
			select {
			case a.answered <- 0:
			default:
			}
		}
		return nil
	}
	t.mu.Lock()
	if !t.opened.fresh(id) {
		t.mu.Unlock()
		return nil // a duplicate, or one that has ended
	}
	t.opened.mark(id)
	if len(t.m) >= s.cfg.MaxAssociations {
		t.mu.Unlock()
		s.stats.AssocsRefused.Add(1)
		s.sendEverywhere(&wire.Msg{Type: wire.MsgUDPClose, Flow: id, Code: udpCloseLimit})
		return nil
	}
	a := s.newAssoc(id)
	t.m[id] = a
	t.mu.Unlock()
	select {
	case t.accept <- a:
	default:
		// Nobody accepts as fast as they come: refuse, as for flows.
		a.end(&AssocRefusedError{Code: udpCloseLimit}, true)
		return nil
	}
	s.sendEverywhere(&wire.Msg{Type: wire.MsgUDPOpen, Flow: id})
	return nil
}

// onUDPClose ends an association the peer closed (or, at the client,
// refused).
func (s *Session) onUDPClose(id uint32, code uint8) error {
	a := s.assocs.get(id)
	if a == nil {
		if !s.client {
			s.assocs.mu.Lock()
			s.assocs.opened.mark(id) // a late UDP-OPEN cannot start it
			s.assocs.mu.Unlock()
		}
		return nil
	}
	if s.client {
		select {
		case a.answered <- max(code, 1): // an unanswered open was refused
		default:
		}
	}
	a.end(ErrAssociationClosed, false)
	return nil
}

// onDatagram takes one QUIC datagram from the peer. b is the peer's
// alone (quic-go hands each datagram in a buffer of its own): the
// payload delivered and the units kept for repair are slices of it.
func (s *Session) onDatagram(b []byte) {
	if len(b) > 0 {
		switch b[0] {
		case wire.DatagramData:
			s.onCodedData(b)
			return
		case wire.DatagramParity:
			s.onParity(b)
			return
		}
	}
	id, addr, payload, err := wire.ParseDatagram(b)
	if err != nil {
		s.stats.DatagramsMalformed.Add(1)
		return
	}
	s.toAssoc(id, addr, payload, -1)
}

// toAssoc queues a datagram for its association; class is the traffic
// class it came in, -1 for an uncoded one.
func (s *Session) toAssoc(id uint32, addr, payload []byte, class int) {
	a := s.assocs.get(id)
	if a == nil {
		s.stats.DatagramsUnknown.Add(1)
		return
	}
	if class >= 0 && class < scheduler.MaxClasses {
		a.peerClass.Store(uint32(class))
	}
	a.last.Store(int64(s.now()))
	select {
	case a.in <- datagram{addr: addr, payload: payload}:
		a.Received.Add(1)
	default:
		a.Dropped.Add(1)
	}
}

// datagramReader hands the peer's datagrams on c to their associations.
func (c *pconn) datagramReader() {
	defer c.wg.Done()
	ctx := c.qc.Context()
	for {
		b, err := c.qc.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		c.heard()
		c.p.BytesReceived.Add(uint64(len(b)))
		c.wakeProber()
		c.s.onDatagram(b)
	}
}

// Send sends payload to addr (client: the destination; concentrator: the
// source of an answer), a SOCKS5-form address (ATYP ADDR PORT) as flows'
// destinations are, in the traffic class of the peer's last datagram
// (SendClass names one). It does not wait for the datagram to arrive and
// may drop it, as UDP may: with no path up it is dropped and counted.
func (a *Association) Send(addr, payload []byte) error {
	return a.SendClass(addr, payload, int(a.peerClass.Load()))
}

// SendClass is Send in traffic class class (an index into the tier's
// classes, Session.Classify): with a peer of protocol version 5 the
// datagram is coded with the class's others on the class's datagram plan
// (copies, parity or one path; scheduler.PlanDatagrams), else it rides
// the path with the lowest RTT alone.
func (a *Association) SendClass(addr, payload []byte, class int) error {
	select {
	case <-a.done:
		return a.err
	default:
	}
	if _, err := wire.DatagramAddrLen(addr); err != nil {
		return err
	}
	if class < 0 || class >= scheduler.MaxClasses {
		class = 0
	}
	a.last.Store(int64(a.s.now()))
	if a.s.codesDatagrams() {
		return a.s.sendCoded(a, class, addr, payload)
	}
	c := a.s.datagramConn(false)
	if c == nil {
		a.Dropped.Add(1)
		return nil
	}
	// quic-go copies what it is given: the frame's buffer goes back to
	// the pool at once.
	b := wire.AppendDatagram(bufpool.Get(5 + len(addr) + len(payload))[:0], a.id, addr, payload)
	err := c.sendDatagram(b) // b is the writer's now
	switch {
	case err == ErrDatagramTooLarge:
		a.TooLarge.Add(1)
		return err
	case err != nil:
		a.Dropped.Add(1) // its connection's queue is full
		return nil
	}
	a.Sent.Add(1)
	return nil
}

// datagramConn is the usable connection that carries datagrams on the
// path with the lowest smoothed RTT; with coded, one that reads coded
// datagrams.
func (s *Session) datagramConn(coded bool) *pconn {
	var best *pconn
	var bestRTT time.Duration
	for _, p := range s.pathList() {
		if !p.Up() {
			continue
		}
		r := p.SRTT()
		if best != nil && r >= bestRTT {
			continue
		}
		p.mu.Lock()
		for _, c := range p.conns {
			if c.udp && c.usable() && !c.retiring.Load() && (!coded || c.version >= wire.DatagramCodingVersion) {
				best, bestRTT = c, r
				break
			}
		}
		p.mu.Unlock()
	}
	return best
}

// Recv returns the next datagram: its address (the source at the client,
// the destination at the concentrator) and payload.
func (a *Association) Recv(ctx context.Context) (addr, payload []byte, err error) {
	select {
	case d := <-a.in:
		return d.addr, d.payload, nil
	default:
	}
	select {
	case d := <-a.in:
		return d.addr, d.payload, nil
	case <-a.done:
		return nil, nil, a.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// NumAssociations is how many UDP associations the session holds.
func (s *Session) NumAssociations() int {
	s.assocs.mu.Lock()
	defer s.assocs.mu.Unlock()
	return len(s.assocs.m)
}

// Classify is the session's Classify: the traffic class of a datagram
// to port sent by the SOCKS user user.
func (a *Association) Classify(port uint16, user string) int { return a.s.Classify(port, user) }

// Idle is how long the association has gone without a datagram either
// way.
func (a *Association) Idle() time.Duration { return a.s.now() - time.Duration(a.last.Load()) }

// Done is closed when the association ends.
func (a *Association) Done() <-chan struct{} { return a.done }

// Err says why the association ended (nil while it lasts).
func (a *Association) Err() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

// Close ends the association and tells the peer.
func (a *Association) Close() error {
	a.end(ErrAssociationClosed, true)
	return nil
}

// CloseIdle ends the association as idle and tells the peer.
func (a *Association) CloseIdle() { a.endCode(ErrAssociationClosed, true, udpCloseIdle) }

func (a *Association) end(err error, tell bool) { a.endCode(err, tell, udpCloseApp) }

func (a *Association) endCode(err error, tell bool, code uint8) {
	a.once.Do(func() {
		a.err = err
		t := &a.s.assocs
		t.mu.Lock()
		if t.m[a.id] == a {
			delete(t.m, a.id)
		}
		t.mu.Unlock()
		close(a.done)
		if tell {
			a.s.sendEverywhere(&wire.Msg{Type: wire.MsgUDPClose, Flow: a.id, Code: code})
		}
	})
}

// closeAssocs ends every association with the session, and stops the
// datagram groups' timers.
func (s *Session) closeAssocs(err error) {
	for i := range s.dgtx {
		tx := &s.dgtx[i]
		tx.mu.Lock()
		if tx.timer != nil {
			tx.timer.Stop()
		}
		tx.gen++
		tx.mu.Unlock()
	}
	s.assocs.mu.Lock()
	all := make([]*Association, 0, len(s.assocs.m))
	for _, a := range s.assocs.m {
		all = append(all, a)
	}
	s.assocs.mu.Unlock()
	for _, a := range all {
		a.end(err, false)
	}
}

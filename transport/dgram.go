package transport

import (
	"errors"

	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/bufpool"
	"braid/scheduler"
	"braid/transport/wire"
)

// Coded datagrams (protocol version 5; docs/PROTOCOL.md "Coded
// datagrams"). The pipeline, for one class's datagrams:
//
//	Association.Send -> dgTx.send: open a group on the class's datagram
//	  plan (scheduler.PlanDatagrams, at most dgPlanEvery old), send the
//	  datagram at once on its position's path, keep a copy of its unit
//	-> the group's k-th datagram, or its wait running out, closes it:
//	  m parity datagrams over its units go out on the parity positions'
//	  paths
//	-> the peer's dgRx.onData delivers each datagram as it arrives (no
//	  ordering, no waiting), and keeps its unit while its group may need
//	  it; dgRx.onParity rebuilds the group's missing datagrams from any k
//	  of its k+m and delivers those within their class's deadline.
//
// Nothing is re-sent. The receiver keeps at most dgRing groups and
// dgHeldMax bytes per session; a datagram of a group older than the ring
// is dropped as too late.

const (
	// dgPlanEvery is how old a class's datagram plan may be when a group
	// opens.
	dgPlanEvery = 100 * time.Millisecond
	// dgRing is how many groups the receiver tracks: the reordering
	// bound, in groups.
	dgRing = 256
	// dgHeldMax bounds the bytes of units and parity the receiver keeps
	// for repairs, per session.
	dgHeldMax = 512 << 10
	// dgHoldMax is the longest a receiver keeps a group for repair when
	// its class has no deadline.
	dgHoldMax = 500 * time.Millisecond
)

// DatagramStats are a session's coded-datagram counters.
type DatagramStats struct {
	// Sent counts data datagrams sent; Parity parity datagrams sent.
	Sent, Parity atomic.Uint64
	// Delivered counts datagrams handed to associations as they came;
	// Repaired those rebuilt from parity.
	Delivered, Repaired atomic.Uint64
	// Duplicate counts datagrams received twice (a copy, or one
	// arriving after it was rebuilt); Late those past their class's
	// deadline or older than the receiver's ring, dropped.
	Duplicate, Late atomic.Uint64
	// Unrepaired counts positions of groups that closed short: data the
	// parity that came could not rebuild (counted when the group is
	// dropped from the ring or swept).
	Unrepaired atomic.Uint64
	// NoRoom counts units not kept for repair because the receiver held
	// dgHeldMax bytes already.
	NoRoom atomic.Uint64
	// QueueFull counts datagrams dropped because their connection's
	// queue was full (dgQueue).
	QueueFull atomic.Uint64
}

// dgTx is one class's sending state.
type dgTx struct {
	mu       sync.Mutex
	plan     scheduler.DatagramPlan
	planAt   time.Duration
	havePlan bool
	paths    []*Path // the paths the plan was made over, indexed like it

	// The open group: n datagrams sent of k planned (n == 0: none open).
	group   uint32
	n, k, m int
	order   [wire.DatagramMaxShards]*Path
	units   [wire.DatagramMaxShards][]byte // pooled copies, for parity
	maxUnit int
	gen     uint64 // bumped as a group closes: a stale timer does nothing
	// timer closes the open group when its wait runs out; timerGen is
	// the group it was set for.
	timer    *time.Timer
	timerGen uint64

	// Load, for the planner: this second's counts and the last second's.
	winAt      time.Duration
	winN, winB float64
	load       scheduler.DatagramLoad
}

// codesDatagrams says whether the session's datagrams are coded: some
// connection's peer speaks version 5.
func (s *Session) codesDatagrams() bool {
	for _, p := range s.pathList() {
		if p.dgConn() != nil {
			return true
		}
	}
	return false
}

// dgConn is a usable connection of the path that reads coded datagrams.
func (p *Path) dgConn() *pconn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.udp && c.version >= wire.DatagramCodingVersion && c.usable() && !c.retiring.Load() {
			return c
		}
	}
	return nil
}

// sentClock is the sender's clock for the unit's sent field, in
// microseconds since the session began (wrapping).
func (s *Session) sentClock() uint32 { return uint32(s.now() / time.Microsecond) }

// sendCoded sends one datagram of association id, class class, coded
// with its class's other datagrams.
func (s *Session) sendCoded(a *Association, class int, addr, payload []byte) error {
	tx := &s.dgtx[class]
	tx.mu.Lock()
	defer tx.mu.Unlock()
	now := s.now()
	tx.measure(now, len(payload))
	if tx.n == 0 {
		s.openGroup(tx, class, now)
	}
	i := tx.n
	var c *pconn
	if p := tx.order[i]; p != nil {
		c = p.dgConn()
	}
	if c == nil {
		if c = s.datagramConn(true); c == nil {
			a.Dropped.Add(1)
			return nil
		}
	}
	b := wire.AppendCodedDatagram(bufpool.Get(wire.DatagramDataHeader + wire.DatagramUnitHeader + len(addr) + len(payload))[:0],
		tx.group, uint8(i), uint8(class), s.sentClock(), a.id, addr, payload)
	var unit []byte
	if tx.m > 0 {
		u := b[wire.DatagramDataHeader:]
		unit = append(bufpool.Get(len(u))[:0], u...)
	}
	err := c.sendDatagram(b) // b is the writer's now
	if err == ErrDatagramTooLarge {
		if unit != nil {
			bufpool.Put(unit)
		}
		a.TooLarge.Add(1)
		return err
	}
	if err != nil {
		a.Dropped.Add(1) // its connection's queue is full
	} else {
		a.Sent.Add(1)
		s.dstats.Sent.Add(1)
	}
	if unit != nil {
		tx.units[i] = unit
		tx.maxUnit = max(tx.maxUnit, len(unit))
	}
	tx.n++
	switch {
	case tx.n == tx.k:
		s.closeGroup(tx, class)
	case tx.n == 1:
		tx.timerGen = tx.gen
		if tx.timer == nil {
			tx.timer = time.AfterFunc(tx.plan.Wait, func() { s.expireGroup(tx, class) })
		} else {
			tx.timer.Reset(tx.plan.Wait)
		}
	}
	return nil
}

// measure counts one datagram of n bytes into the load the planner reads.
func (tx *dgTx) measure(now time.Duration, n int) {
	if d := now - tx.winAt; d >= time.Second {
		secs := d.Seconds()
		tx.load = scheduler.DatagramLoad{Rate: tx.winB / secs, PPS: tx.winN / secs}
		if d >= 2*time.Second {
			tx.load = scheduler.DatagramLoad{} // idle for a while: measure afresh
		}
		tx.winAt, tx.winN, tx.winB = now, 0, 0
	}
	tx.winN++
	tx.winB += float64(n)
}

// openGroup starts a group on the class's plan, re-planned when stale.
func (s *Session) openGroup(tx *dgTx, class int, now time.Duration) {
	if !tx.havePlan || now-tx.planAt >= dgPlanEvery {
		terms := s.terms.Load()
		pr := s.problem(terms)
		sla := terms.SLA
		if cs := terms.classes(); class < len(cs) {
			sla = cs[class].SLA
		}
		tx.plan = scheduler.PlanDatagrams(pr.Paths, sla, tx.load)
		tx.paths = s.pathList()
		tx.planAt, tx.havePlan = now, true
	}
	tx.group = s.dgGroup.Add(1)
	tx.k, tx.m = max(tx.plan.K, 1), tx.plan.M
	for i := range tx.order {
		tx.order[i] = nil
	}
	for i, j := range tx.plan.Order {
		if i < len(tx.order) && j < len(tx.paths) {
			tx.order[i] = tx.paths[j]
		}
	}
	if tx.order[0] == nil { // no plan (no path was up): the best path
		if c := s.datagramConn(true); c != nil {
			tx.order[0] = c.p
		}
		tx.k, tx.m = 1, 0
	}
	tx.maxUnit = 0
}

// expireGroup closes the group the timer was set for if it is still
// open: its wait ran out before its k datagrams came.
func (s *Session) expireGroup(tx *dgTx, class int) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.gen == tx.timerGen && tx.n > 0 {
		s.closeGroup(tx, class)
	}
}

// closeGroup sends the open group's parity over the datagrams it has.
func (s *Session) closeGroup(tx *dgTx, class int) {
	k, m := tx.n, tx.m
	defer func() {
		for i := range k {
			if tx.units[i] != nil {
				bufpool.Put(tx.units[i])
				tx.units[i] = nil
			}
		}
		tx.n = 0
		tx.gen++
		if tx.timer != nil {
			tx.timer.Stop()
		}
	}()
	if m == 0 || k == 0 {
		return
	}
	size := 2 + tx.maxUnit
	var shards [wire.DatagramMaxShards][]byte
	for i := range k + m {
		shards[i] = bufpool.Get(size)[:size]
		if i < k {
			wire.PadUnit(shards[i], tx.units[i])
		}
	}
	defer func() {
		for i := range k + m {
			bufpool.Put(shards[i])
		}
	}()
	if k == 1 {
		for j := 1; j <= m; j++ {
			copy(shards[j], shards[0])
		}
	} else {
		enc, err := coder(k, m)
		if err != nil || enc.Encode(shards[:k+m]) != nil {
			return // k, m within the wire's limits: cannot happen
		}
	}
	for j := range m {
		pos := tx.k + j // parity positions follow the planned k
		var c *pconn
		if pos < len(tx.order) && tx.order[pos] != nil {
			c = tx.order[pos].dgConn()
		}
		if c == nil {
			if c = s.datagramConn(true); c == nil {
				return
			}
		}
		b := wire.AppendParityHeader(bufpool.Get(wire.DatagramParityHeader + size)[:0], tx.group, uint8(k+j), uint8(k), uint8(m), uint8(class))
		b = append(b, shards[k+j]...)
		if c.sendDatagram(b) == nil {
			s.dstats.Parity.Add(1)
		}
	}
}

// dgQueue is how many datagrams wait for a connection's writer. quic-go
// queues 32 more and then blocks the sender until its congestion window
// lets one out, which on a dead path not yet found out is until the path
// is given up: so a writer per connection blocks instead of the sender,
// and past dgQueue datagrams are dropped and counted (QueueFull), as a
// full socket buffer drops them.
const dgQueue = 64

// errQueueFull is sendDatagram's error for a datagram dropped because
// the connection's queue is full.
var errQueueFull = errors.New("transport: datagram queue full")

// sendDatagram hands one QUIC datagram to c's writer, which owns b from
// then on (a bufpool buffer). A datagram larger than quic-go takes on c
// is refused at once with ErrDatagramTooLarge.
func (c *pconn) sendDatagram(b []byte) error {
	if int64(len(b)) > c.dgMax.Load() && int64(len(b)) > c.probeDatagramMax() {
		bufpool.Put(b)
		return ErrDatagramTooLarge
	}
	select {
	case c.dgq <- b:
		return nil
	default:
		bufpool.Put(b)
		c.s.dstats.QueueFull.Add(1)
		return errQueueFull
	}
}

// probeDatagramMax asks quic-go how large a datagram it takes now (it
// grows as the path's MTU is discovered): a datagram too large for any
// path is refused before it is queued, with the limit in the error.
func (c *pconn) probeDatagramMax() int64 {
	var tl *quic.DatagramTooLargeError
	if err := c.qc.SendDatagram(make([]byte, 1<<16)); errors.As(err, &tl) {
		c.dgMax.Store(tl.MaxDatagramPayloadSize)
		return tl.MaxDatagramPayloadSize
	}
	return c.dgMax.Load()
}

// datagramWriter sends c's queued datagrams, counting each in the path's
// bytes (so in its cost and rate) and waking a slowly probing path.
func (c *pconn) datagramWriter() {
	defer c.wg.Done()
	done := c.qc.Context().Done()
	defer func() {
		for {
			select {
			case b := <-c.dgq:
				bufpool.Put(b)
			default:
				return
			}
		}
	}()
	for {
		select {
		case <-done:
			return
		case b := <-c.dgq:
			err := c.qc.SendDatagram(b)
			if err == nil {
				c.p.BytesSent.Add(uint64(len(b)))
				c.wakeProber()
			}
			bufpool.Put(b)
		}
	}
}

// dgRx is a session's receiving state for coded datagrams.
type dgRx struct {
	mu     sync.Mutex
	groups [dgRing]rxGroup
	newest uint32
	any    bool
	held   int
	// The least transit time (local clock minus sent) seen in this
	// window and the last: the fastest path's, against which lateness is
	// measured. Windows of 10 s let it follow a path that went away.
	minCur, minPrev uint32
	minAt           time.Duration
	haveMin         bool
}

type rxGroup struct {
	id       uint32
	used     bool
	done     bool // rebuilt, or every datagram came: nothing to keep
	k, m     uint8
	class    uint8
	seen     uint16 // positions received (or rebuilt)
	shards   [wire.DatagramMaxShards][]byte
	shardLen int
	at       time.Duration
}

// slot returns the ring entry of group g, emptied if it held an older
// group; nil when g is older than the ring.
func (rx *dgRx) slot(s *Session, g uint32, now time.Duration) *rxGroup {
	if !rx.any {
		rx.newest, rx.any = g, true
	}
	if d := int32(g - rx.newest); d > 0 {
		rx.newest = g
	} else if -d >= dgRing {
		return nil
	}
	e := &rx.groups[g%dgRing]
	if !e.used || e.id != g {
		rx.free(s, e)
		*e = rxGroup{id: g, used: true, at: now}
	}
	return e
}

// arrive returns the ring entry of group g for a datagram at position
// pos, or nil (counted) when the group is older than the ring or the
// position came already. rx.mu is held.
func (rx *dgRx) arrive(s *Session, g uint32, pos uint8, now time.Duration) *rxGroup {
	e := rx.slot(s, g, now)
	switch {
	case e == nil:
		s.dstats.Late.Add(1)
	case e.seen&(1<<pos) != 0:
		s.dstats.Duplicate.Add(1)
		return nil
	}
	return e
}

// free drops what e keeps, counting the data it could not rebuild.
func (rx *dgRx) free(s *Session, e *rxGroup) {
	if !e.used {
		return
	}
	if !e.done && e.k > 0 {
		for i := range e.k {
			if e.seen&(1<<i) == 0 {
				s.dstats.Unrepaired.Add(1)
			}
		}
	}
	for i := range e.shards {
		rx.held -= len(e.shards[i])
		e.shards[i] = nil
	}
	e.done = true
}

// keep stores b as position i of e when there is room, sweeping groups
// past their hold time when there is not.
func (rx *dgRx) keep(s *Session, e *rxGroup, i int, b []byte, now time.Duration) {
	if rx.held+len(b) > dgHeldMax {
		for j := range rx.groups {
			if g := &rx.groups[j]; g.used && !g.done && now-g.at > s.holdFor(int(g.class)) {
				rx.free(s, g)
			}
		}
		if rx.held+len(b) > dgHeldMax {
			s.dstats.NoRoom.Add(1)
			return
		}
	}
	e.shards[i] = b
	rx.held += len(b)
}

// holdFor is how long a group of class is kept for repair.
func (s *Session) holdFor(class int) time.Duration {
	if d := s.deadline(class); d > 0 {
		return min(d, dgHoldMax)
	}
	return dgHoldMax
}

// deadline is class's datagram deadline, 0 for none.
func (s *Session) deadline(class int) time.Duration {
	t := s.terms.Load()
	if cs := t.classes(); class < len(cs) {
		return cs[class].SLA.Deadline
	}
	return 0
}

// late says whether a unit sent at sent is past class's deadline, by its
// transit time against the least seen; it also keeps that least.
func (rx *dgRx) late(s *Session, sent uint32, class int, now time.Duration) bool {
	transit := uint32(now/time.Microsecond) - sent
	if !rx.haveMin || now-rx.minAt >= 10*time.Second {
		if rx.haveMin {
			rx.minPrev = rx.minCur
		} else {
			rx.minPrev = transit
		}
		rx.minCur, rx.minAt, rx.haveMin = transit, now, true
	}
	if int32(transit-rx.minCur) < 0 {
		rx.minCur = transit
	}
	least := rx.minCur
	if int32(rx.minPrev-least) < 0 {
		least = rx.minPrev
	}
	d := s.deadline(class)
	if d <= 0 {
		return false
	}
	lateness := time.Duration(int32(transit-least)) * time.Microsecond
	if lateness <= d/2 {
		return false // the common case, without reading the paths
	}
	// One-way delay: lateness plus the fastest path's half round trip.
	return lateness+s.bestMinRTT()/2 > d
}

// bestMinRTT is the least minimum RTT of the paths up.
func (s *Session) bestMinRTT() time.Duration {
	var best time.Duration
	for _, p := range s.pathList() {
		if !p.Up() {
			continue
		}
		if r := p.Stats().MinRTT; r > 0 && (best == 0 || r < best) {
			best = r
		}
	}
	return best
}

// onCodedData takes a data datagram from the peer.
func (s *Session) onCodedData(b []byte) {
	g, i, class, unit, err := wire.ParseCodedDatagram(b)
	if err != nil {
		s.stats.DatagramsMalformed.Add(1)
		return
	}
	now := s.now()
	rx := &s.dgrx
	rx.mu.Lock()
	e := rx.arrive(s, g, i, now)
	if e == nil {
		rx.mu.Unlock()
		return
	}
	e.seen |= 1 << i
	e.class = class
	sent, _, _, _, _ := wire.ParseUnit(unit) // ParseCodedDatagram checked it
	late := rx.late(s, sent, int(class), now)
	var rebuilt [wire.DatagramMaxShards][]byte
	n := 0
	if !e.done {
		rx.keep(s, e, int(i), unit, now)
		n = s.repair(e, &rebuilt, now)
	}
	rx.mu.Unlock()
	if late {
		s.dstats.Late.Add(1)
	} else {
		s.deliverUnit(unit, int(class), false)
	}
	for _, u := range rebuilt[:n] {
		s.deliverUnit(u, int(class), true)
	}
}

// onParity takes a parity datagram from the peer.
func (s *Session) onParity(b []byte) {
	g, j, k, m, class, shard, err := wire.ParseParity(b)
	if err != nil || (k > 1 && len(shard) < 2+wire.DatagramUnitHeader) {
		s.stats.DatagramsMalformed.Add(1)
		return
	}
	now := s.now()
	rx := &s.dgrx
	rx.mu.Lock()
	e := rx.arrive(s, g, j, now)
	if e == nil {
		rx.mu.Unlock()
		return
	}
	if e.k == 0 {
		e.k, e.m, e.class, e.shardLen = k, m, class, len(shard)
	} else if e.k != k || e.m != m || e.shardLen != len(shard) {
		rx.mu.Unlock()
		s.stats.DatagramsMalformed.Add(1) // parity that disagrees with its group's
		return
	}
	e.seen |= 1 << j
	var rebuilt [wire.DatagramMaxShards][]byte
	n := 0
	if !e.done {
		rx.keep(s, e, int(j), shard, now)
		n = s.repair(e, &rebuilt, now)
	}
	rx.mu.Unlock()
	for _, u := range rebuilt[:n] {
		s.deliverUnit(u, int(class), true)
	}
}

// repair rebuilds e's missing data when it can, filling out with the
// units to deliver (those within their deadline) and returning how many.
// It marks e done when nothing is missing any more. rx.mu is held.
func (s *Session) repair(e *rxGroup, out *[wire.DatagramMaxShards][]byte, now time.Duration) int {
	if e.k == 0 {
		return 0 // no parity yet: the group's size is not known
	}
	k, m := int(e.k), int(e.m)
	missing, have := 0, 0
	for i := range k + m {
		if e.shards[i] != nil {
			have++
		} else if i < k && e.seen&(1<<i) == 0 {
			missing++
		}
	}
	if missing == 0 {
		s.dgrx.free(s, e) // every datagram came
		return 0
	}
	if have < k {
		return 0
	}
	var shards [wire.DatagramMaxShards][]byte
	for i := range k + m {
		switch {
		case e.shards[i] == nil:
		case i < k:
			if len(e.shards[i])+2 > e.shardLen {
				return 0 // a unit longer than the parity: not this group's
			}
			shards[i] = make([]byte, e.shardLen)
			wire.PadUnit(shards[i], e.shards[i])
		default:
			shards[i] = e.shards[i]
		}
	}
	if k == 1 {
		for i := 1; i < 1+m; i++ {
			if shards[i] != nil {
				shards[0] = shards[i]
				break
			}
		}
	} else {
		enc, err := coder(k, m)
		if err != nil || enc.ReconstructData(shards[:k+m]) != nil {
			return 0
		}
	}
	n := 0
	for i := range k {
		if e.seen&(1<<i) != 0 {
			continue
		}
		e.seen |= 1 << i
		unit, err := wire.UnpadUnit(shards[i])
		if err != nil {
			s.stats.DatagramsMalformed.Add(1)
			continue
		}
		sent, _, _, _, err := wire.ParseUnit(unit)
		if err != nil {
			s.stats.DatagramsMalformed.Add(1)
			continue
		}
		if s.dgrx.late(s, sent, int(e.class), now) {
			s.dstats.Late.Add(1)
			continue
		}
		out[n] = unit
		n++
	}
	s.dgrx.free(s, e)
	return n
}

// deliverUnit hands a unit's datagram to its association.
func (s *Session) deliverUnit(unit []byte, class int, repaired bool) {
	_, id, addr, payload, err := wire.ParseUnit(unit)
	if err != nil {
		s.stats.DatagramsMalformed.Add(1)
		return
	}
	if repaired {
		s.dstats.Repaired.Add(1)
	} else {
		s.dstats.Delivered.Add(1)
	}
	s.toAssoc(id, addr, payload, class)
}

// DatagramStats returns the session's coded-datagram counters.
func (s *Session) DatagramStats() *DatagramStats { return &s.dstats }

// DatagramPlans returns each class's datagram plan in force, by class
// index; a class that has sent no datagram has none.
func (s *Session) DatagramPlans() map[int]scheduler.DatagramPlan {
	out := map[int]scheduler.DatagramPlan{}
	for i := range s.dgtx {
		tx := &s.dgtx[i]
		tx.mu.Lock()
		if tx.havePlan {
			out[i] = tx.plan
		}
		tx.mu.Unlock()
	}
	return out
}

package pktfec

import (
	"encoding/binary"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// sender codes the packets one peer is sent. Its lock is held across the
// socket writes of one packet and its group's parity, so a group's parity
// never overtakes its last packet.
type sender struct {
	c    *Conn
	addr *net.UDPAddr
	to   netip.AddrPort
	werr atomic.Pointer[error] // a queued write that failed, for the next write to return

	mu     sync.Mutex
	seq    uint32 // next data packet's seq
	first  uint32 // seq of the open group's first packet
	n      int    // packets in the open group (0: none open)
	k, m   int    // the open group's code
	sl     int    // the open group's longest shard
	parity [MaxM][]byte
	gen    uint64 // groups closed
	armed  uint64 // the group the timer was set for
	timer  *time.Timer
	hdr    [dataHdr]byte // the data packet's header
	// credit is the parity packets Config.MaxOverhead still allows:
	// MaxOverhead more for each grouped data packet, one less for each
	// parity packet, at most (and at first) a full group's cap
	// (closeGroupLocked).
	credit float64

	ctl    control
	closed bool

	// counters (under mu)
	dataPackets, parityPackets, parityBytes, dataBytes uint64
}

func newSender(c *Conn, addr *net.UDPAddr) *sender {
	s := &sender{c: c, addr: addr, to: addr.AddrPort(), credit: float64(c.cfg.maxM())}
	s.ctl.init(c.cfg)
	return s
}

// groupDelay is how long a group stays open: two thirds of the RTT, within
// [2 ms, Config.GroupDelay]. Longer groups need less parity for the same
// loss (a group of 32 at 1% takes 3 parity packets, one of 8 takes 2).
// quic-go calls a packet lost 9/8 of an RTT after it was sent, so a packet
// rebuilt late in its group may be called lost first; but quic-go undoes
// the window cut when a packet it called lost is acknowledged after all,
// stops judging loss by packet counts, and raises its time threshold (to
// at most twice the RTT), after which a repair within the group's time
// costs it nothing.
func (s *sender) groupDelay() time.Duration {
	d := s.c.cfg.GroupDelay
	if rtt := s.ctl.rtt; rtt > 0 {
		d = min(d, max(rtt*2/3, 2*time.Millisecond))
	}
	return d
}

// write queues one QUIC packet b, coded (outQueue). It returns an error
// the socket gave one of the peer's earlier packets, as quic-go expects of
// a write (it ends the connection on most), or that the Conn is closed.
func (s *sender) write(b []byte) (int, error) {
	if e := s.werr.Swap(nil); e != nil {
		return 0, *e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.c.udp.WriteTo(b, s.addr)
	}
	seq := s.seq
	s.seq = (s.seq + 1) & seqMask
	k, m := s.ctl.code()
	grouped := m > 0 || s.n > 0
	t := byte(typeData)
	if grouped {
		t = typeGroupData
	}
	s.hdr[0] = t
	putSeq(s.hdr[1:], seq)
	if err := s.c.wq.put(s, s.to, s.hdr[:], b); err != nil {
		return 0, err
	}
	s.dataPackets++
	s.dataBytes += uint64(len(b))
	if !grouped {
		return len(b), nil
	}
	s.credit = min(s.credit+s.c.cfg.MaxOverhead, float64(s.c.cfg.maxM()))
	if s.n == 0 {
		s.first, s.k, s.m = seq, k, m
		for j := range s.m {
			if s.parity[j] == nil {
				s.parity[j] = make([]byte, parityHdr+maxShard)
			}
		}
		s.armed = s.gen
		if s.timer == nil {
			s.timer = time.AfterFunc(s.groupDelay(), s.expire)
		} else {
			s.timer.Reset(s.groupDelay())
		}
	}
	var lb [lenPrefix]byte
	binary.BigEndian.PutUint16(lb[:], uint16(len(b)))
	enc, err := coder(s.k, s.m)
	if err == nil {
		var p1, p2 [MaxM][]byte
		for j := range s.m {
			p1[j] = s.parity[j][parityHdr : parityHdr+lenPrefix]
			p2[j] = s.parity[j][parityHdr+lenPrefix : parityHdr+lenPrefix+len(b)]
		}
		if err = enc.EncodeIdx(lb[:], s.n, p1[:s.m]); err == nil {
			err = enc.EncodeIdx(b, s.n, p2[:s.m])
		}
	}
	if err != nil {
		// Cannot happen with the sizes checked by WriteTo; the group
		// goes without parity rather than with wrong parity.
		s.sl = maxShard // clear all of it
		s.dropGroupLocked()
		return len(b), nil
	}
	s.n++
	s.sl = max(s.sl, lenPrefix+len(b))
	if s.n == s.k {
		s.closeGroupLocked()
	}
	return len(b), nil
}

// expire closes the group the timer was set for, if it is still open. A
// timer that fires as a new group opens closes that one early: harmless.
func (s *sender) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.armed == s.gen && s.n > 0 && !s.closed {
		s.closeGroupLocked()
	}
}

// closeGroupLocked sends the open group's parity. A group cut short by its
// timer sends what its own size needs (at least one), within the credit
// the overhead cap has left: any subset of a code's parity rows decodes.
//
// Without the credit, sparse traffic (a voice call's 50 packets a second,
// each alone in its group) took a parity packet for nearly every data
// packet, four times the cap: 1.48 MB of parity for 0.96 MB of voice in
// the bench's voice-lossy run. With it, such traffic gets a parity packet
// every 1/MaxOverhead packets; its real protection is the datagram coding
// across paths above QUIC (docs/PROTOCOL.md, "Coded datagrams"), which
// plans from the loss before this repair. A bulk transfer's full groups
// stay within the cap by their size, so its tail group finds the credit
// they left.
func (s *sender) closeGroupLocked() {
	send := s.m
	if s.n < s.k && s.c.cfg.fixedM == 0 {
		send = max(1, min(s.m, baseParity(s.n, s.ctl.p, s.c.cfg.GroupFail)+s.ctl.extra,
			int(s.c.cfg.MaxOverhead*float64(s.n)+0.5)))
		send = min(send, int(s.credit))
	}
	s.credit = max(s.credit-float64(send), 0)
	for j := range send {
		p := s.parity[j]
		appendParityHeader(p[:0], parityHeader{first: s.first, n: s.n, k: s.k, m: s.m, j: j})
		if err := s.c.wq.put(s, s.to, nil, p[:parityHdr+s.sl]); err == nil {
			s.parityPackets++
			s.parityBytes += uint64(parityHdr + s.sl)
		}
	}
	s.dropGroupLocked()
}

func (s *sender) dropGroupLocked() {
	for j := range s.m {
		clear(s.parity[j][parityHdr : parityHdr+s.sl])
	}
	s.n, s.sl = 0, 0
	s.gen++
	if s.timer != nil {
		s.timer.Stop()
	}
}

func (s *sender) onReport(r report, now time.Time) {
	s.mu.Lock()
	s.ctl.onReport(r, now)
	s.mu.Unlock()
}

// failed keeps a write error of one of the peer's queued packets for its
// next write to return.
func (s *sender) failed(err error) { s.werr.CompareAndSwap(nil, &err) }

func (s *sender) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
}

// control sizes parity from the receiver's reports.
//
// The loss before repair, p, is the loss over the last few thousand
// packets (windows of at least 256 packets or 500 ms, weighted down by
// pastWeight each), restarted from a window that loses at least twice as
// much: a binomial count of a 1% loss over 256 packets is too noisy to
// size parity by, and sizing it by the noisy peaks costs the data room.
// The base parity is the least m for which a group of
// k data packets fails to decode with probability at most Config.GroupFail
// under independent loss p. While reports still show loss after repair
// (bursts the binomial does not foresee), extra parity is added one packet
// at a time; after two seconds with nothing left it is taken back one at a
// time. With no loss for two seconds there is no parity.
//
// Parity must not feed the congestion it cannot tell from random loss.
// quic-go's Reno, once random losses are repaired, grows its window until
// the bottleneck's queue overflows; those drops look like random loss, and
// parity sized for them (and added on top of a full link) makes more of
// them, up to the cap. So while the peer's smoothed RTT is at least twice
// its least (a standing queue of a round trip or more, the link full),
// groups go without parity: a window halved by a loss then still fills the
// link, and parity would only take the data's room. Reports taken while
// queued leave p and the extra parity as they were.
//
// Nor must parity take the data's room on a link braid fills: while the
// transport says the path has more to send than it carries (Conn.SetFull:
// its pacer held senders back), groups go without parity too, and quic-go
// sees the link's loss; the path's pool of connections carries it (a loss
// halves one window of several): coded bulk downloads moved less than
// uncoded ones, the parity taking a fifth of the link, while a path with
// room to spare keeps its parity, which cuts its requests' p99
// (docs/BENCH.md, "Figures behind the code's choices"). Reports taken while full still measure p (the
// pacer keeps the queue short: the drops are the link's), but leave the
// extra parity as it was: loss with no parity sent says nothing about
// what parity leaves.
type control struct {
	cfg Config
	k   int // data packets per group

	rtt    time.Duration // smoothed
	minRTT time.Duration
	// lostW and expW are the packets lost and expected, each window's
	// weighted pastWeight times the one after it: p is their ratio.
	lostW, expW float64
	p           float64 // loss before repair
	left        float64 // loss after repair, last window
	extra       int
	m           int
	full        bool // the path has more to send than it carries (SetFull)

	last        report
	haveLast    bool
	lastLoss    time.Time // when a report last showed loss before repair
	lastLeft    time.Time // ... loss after repair
	lastChange  time.Time
	lastWindow  time.Time
	windowStart report
}

// pastWeight is each window's weight in p against the one after it:
// about the last eight windows count.
const pastWeight = 0.875

func (c *control) init(cfg Config) { c.cfg, c.k = cfg, cfg.K }

// code returns the (k, m) for the next group.
func (c *control) code() (int, int) {
	if c.cfg.fixedM > 0 {
		return c.cfg.K, c.cfg.fixedM
	}
	if c.yields() {
		return c.k, 0
	}
	return c.k, c.m
}

// yields says groups go without parity now: a queue stands on the path,
// or the path is full.
func (c *control) yields() bool { return c.full || c.queued() }

// queued says a queue of a round trip or more stands on the path.
func (c *control) queued() bool {
	return c.minRTT > 0 && c.rtt >= 2*c.minRTT+2*time.Millisecond
}

func (c *control) onReport(r report, now time.Time) {
	if !c.haveLast {
		c.last, c.windowStart, c.haveLast = r, r, true
		return
	}
	exp := int64(int32(r.expected - c.windowStart.expected))
	if exp < 0 {
		// A report older than one already taken (reordered): ignore.
		return
	}
	if exp < 256 && now.Sub(c.lastWindow) < 500*time.Millisecond {
		return // too few packets yet to judge
	}
	c.lastWindow = now
	rec := int64(int32(r.received - c.windowStart.received))
	rep := int64(int32(r.repaired - c.windowStart.repaired))
	c.windowStart = r
	if exp <= 0 {
		return
	}
	lost := max(exp-rec, 0)
	left := max(lost-rep, 0)
	p := float64(lost) / float64(exp)
	c.left = float64(left) / float64(exp)
	queued, yields := c.queued(), c.yields()
	switch {
	case queued:
		// Congestion's drops and the link's look alike: leave p be.
	case lost >= 8 && p > 2*c.p:
		// A step up: start over from this window.
		c.lostW, c.expW = float64(lost), float64(exp)
	default:
		c.lostW = c.lostW*pastWeight + float64(lost)
		c.expW = c.expW*pastWeight + float64(exp)
	}
	if c.expW > 0 {
		c.p = c.lostW / c.expW
	}
	if lost > 0 {
		c.lastLoss = now
	}
	// Loss left after repair counts when it is more than the base parity
	// is sized to leave: a group lost now and then is expected.
	if !yields && float64(left) > max(2, float64(exp)*c.p*c.cfg.GroupFail*4) {
		c.lastLeft = now
		if now.Sub(c.lastChange) >= 100*time.Millisecond && c.extra < MaxM {
			c.extra++
			c.lastChange = now
		}
	} else if c.extra > 0 && now.Sub(c.lastLeft) > 2*time.Second && now.Sub(c.lastChange) > 2*time.Second {
		c.extra--
		c.lastChange = now
	}
	c.k, c.m = c.cfg.K, 0
	if now.Sub(c.lastLoss) <= 2*time.Second {
		c.k, c.m = c.sized()
	}
}

// sized returns the group size and parity for the loss measured: the
// largest k (K, halved down to 8) whose parity fits under the cap, else
// the largest k that may carry the most parity per packet, with all of
// it. Long groups cost less parity; shorter ones may carry more of it,
// for losses a long one cannot rebuild.
func (c *control) sized() (int, int) {
	bestK := c.cfg.K
	for k := c.cfg.K; k >= 8; k /= 2 {
		m := baseParity(k, c.p, c.cfg.GroupFail) + c.extra
		if m <= c.cfg.maxMFor(k) {
			return k, m
		}
		if c.cfg.maxMFor(k)*bestK > c.cfg.maxMFor(bestK)*k {
			bestK = k
		}
	}
	return bestK, c.cfg.maxMFor(bestK)
}

// baseParity is the least m for which k data packets and m parity packets,
// each lost independently with probability p, lose more than m with
// probability at most fail; MaxM+1 when no m up to MaxM does.
func baseParity(k int, p, fail float64) int {
	if p <= 0 {
		return 0
	}
	p = min(p, 0.5)
	for m := 1; m <= MaxM; m++ {
		n := k + m
		// P[X <= m] for X ~ Binomial(n, p)
		var cdf float64
		term := math.Pow(1-p, float64(n)) // P[X = 0]
		for x := 0; x <= m; x++ {
			cdf += term
			term *= float64(n-x) / float64(x+1) * p / (1 - p)
		}
		if 1-cdf <= fail {
			return m
		}
	}
	return MaxM + 1 // more than any group may carry
}

package pktfec

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// pipe is two Conns with a relay between them that drops, duplicates,
// holds back or injects packets as a test says. a sends to ra, the relay
// forwards from rb to b, and back the same way.
type pipe struct {
	t      *testing.T
	a, b   *Conn
	ra, rb *net.UDPConn
	mu     sync.Mutex
	// ab decides each datagram from a to b, by its index in that
	// direction: false drops it.
	ab    func(i int, pkt []byte) bool
	dup   map[int]bool // indexes a->b delivered twice
	hold  map[int]bool // indexes a->b held until the next one has gone
	n     int
	held  []byte
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	bAddr *net.UDPAddr
	aAddr *net.UDPAddr
}

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPipe(t *testing.T, cfg Config) *pipe {
	p := &pipe{t: t, ra: listen(t), rb: listen(t), dup: map[int]bool{}, hold: map[int]bool{}, done: make(chan struct{})}
	ua, ub := listen(t), listen(t)
	p.aAddr, p.bAddr = ua.LocalAddr().(*net.UDPAddr), ub.LocalAddr().(*net.UDPAddr)
	p.a, p.b = New(ua, cfg), New(ub, cfg)
	if !p.a.Enable(p.ra.LocalAddr()) || !p.b.Enable(p.rb.LocalAddr()) {
		t.Fatal("enable failed")
	}
	p.wg.Add(2)
	go p.forward(p.ra, p.rb, p.bAddr, true)
	go p.forward(p.rb, p.ra, p.aAddr, false)
	t.Cleanup(p.close)
	return p
}

func (p *pipe) close() { p.once.Do(p.closeNow) }

func (p *pipe) closeNow() {
	close(p.done)
	p.ra.Close()
	p.rb.Close()
	p.wg.Wait()
	p.a.Close()
	p.b.Close()
}

func (p *pipe) forward(from, to *net.UDPConn, dst *net.UDPAddr, ab bool) {
	defer p.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, _, err := from.ReadFromUDP(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		if !ab {
			to.WriteToUDP(pkt, dst)
			continue
		}
		p.mu.Lock()
		i := p.n
		p.n++
		pass := p.ab == nil || p.ab(i, pkt)
		dup, hold := p.dup[i], p.hold[i]
		held := p.held
		p.mu.Unlock()
		if !pass {
			continue
		}
		if hold {
			p.mu.Lock()
			p.held = pkt
			p.mu.Unlock()
			continue
		}
		to.WriteToUDP(pkt, dst)
		if dup {
			to.WriteToUDP(pkt, dst)
		}
		if held != nil {
			to.WriteToUDP(held, dst)
			p.mu.Lock()
			p.held = nil
			p.mu.Unlock()
		}
	}
}

// rules sets what the relay does to a->b datagrams; nil maps keep theirs.
func (p *pipe) rules(ab func(int, []byte) bool, dup, hold map[int]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ab = ab
	if dup != nil {
		p.dup = dup
	}
	if hold != nil {
		p.hold = hold
	}
}

// inject sends raw bytes to b as if from a's side of the relay.
func (p *pipe) inject(pkt []byte) {
	p.rb.WriteToUDP(pkt, p.bAddr)
}

// quicPacket is a stand-in for a QUIC short-header packet: the fixed bit
// set, its index, then bytes of a length that varies with it.
func quicPacket(i int) []byte {
	b := make([]byte, 5, 1200)
	b[0] = 0x40
	binary.BigEndian.PutUint32(b[1:], uint32(i))
	for j := range 100 + (i*37)%900 {
		b = append(b, byte(i+j))
	}
	return b
}

// collect reads what b hands up until want packets came or quiet for wait.
func (p *pipe) collect(want int, wait time.Duration) map[int]int {
	got := map[int]int{}
	buf := make([]byte, 1452)
	total := 0
	for total < want {
		p.b.SetReadDeadline(time.Now().Add(wait))
		n, _, err := p.b.ReadFrom(buf)
		if err != nil {
			break
		}
		pkt := buf[:n]
		if n < 5 {
			p.t.Fatalf("short packet %x", pkt)
		}
		i := int(binary.BigEndian.Uint32(pkt[1:]))
		if !bytes.Equal(pkt, quicPacket(i)) {
			p.t.Fatalf("packet %d corrupted", i)
		}
		got[i]++
		total++
	}
	return got
}

func TestRepairPatterns(t *testing.T) {
	// k=8, m=2: each group is 8 data packets then 2 parity, so a->b
	// datagram i is data packet i - 2*(i/10) when i%10 < 8.
	dataIdx := func(i int) int {
		if i%10 >= 8 {
			return -1
		}
		return i - 2*(i/10)
	}
	cases := []struct {
		name     string
		drop     map[int]bool // a->b datagram indexes dropped
		dup, hld map[int]bool
		packets  int
		lost     []int // data packets that cannot come back
	}{
		{name: "clean", packets: 16},
		{name: "single", drop: map[int]bool{3: true}, packets: 16},
		{name: "two in a group", drop: map[int]bool{2: true, 7: true}, packets: 16},
		{name: "first and last", drop: map[int]bool{0: true, 17: true}, packets: 16},
		{name: "burst of two", drop: map[int]bool{11: true, 12: true}, packets: 16},
		{name: "three: beyond parity", drop: map[int]bool{1: true, 2: true, 3: true}, packets: 16, lost: []int{1, 2, 3}},
		{name: "data and parity", drop: map[int]bool{4: true, 8: true}, packets: 16},
		{name: "parity only", drop: map[int]bool{8: true, 9: true}, packets: 16},
		{name: "one each group", drop: map[int]bool{5: true, 15: true}, packets: 16},
		{name: "duplicates", dup: map[int]bool{2: true, 8: true}, packets: 16},
		{name: "reordered", hld: map[int]bool{3: true, 12: true}, packets: 16},
		{name: "reordered and lost", hld: map[int]bool{2: true}, drop: map[int]bool{5: true}, packets: 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPipe(t, Config{K: 8, fixedM: 2, GroupDelay: time.Second})
			p.rules(func(i int, _ []byte) bool { return !tc.drop[i] }, tc.dup, tc.hld)
			for i := range tc.packets {
				if _, err := p.a.WriteTo(quicPacket(i), p.ra.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			got := p.collect(tc.packets-len(tc.lost), time.Second)
			lost := map[int]bool{}
			for _, i := range tc.lost {
				lost[i] = true
			}
			for i := range tc.packets {
				switch {
				case lost[i] && got[i] != 0:
					t.Errorf("packet %d came back though %d of its group were lost", i, len(tc.lost))
				case !lost[i] && got[i] != 1:
					t.Errorf("packet %d handed up %d times", i, got[i])
				}
			}
			repaired := 0
			for i := range tc.drop {
				if d := dataIdx(i); d >= 0 && !lost[d] {
					repaired++
				}
			}
			if st, _ := p.b.PeerStats(p.rb.LocalAddr()); int(st.Repaired) != repaired {
				t.Errorf("repaired %d, want %d", st.Repaired, repaired)
			}
		})
	}
}

// A group cut short by its timer still gets parity, and what it lost is
// rebuilt.
func TestGroupTimer(t *testing.T) {
	p := newPipe(t, Config{K: 32, fixedM: 2, GroupDelay: 5 * time.Millisecond})
	p.rules(func(i int, _ []byte) bool { return i != 1 }, nil, nil)
	for i := range 3 {
		p.a.WriteTo(quicPacket(i), p.ra.LocalAddr())
	}
	got := p.collect(3, time.Second)
	for i := range 3 {
		if got[i] != 1 {
			t.Errorf("packet %d handed up %d times", i, got[i])
		}
	}
}

// Forged, truncated and inconsistent parity is dropped and counted; it
// never hands up a packet that was not sent.
func TestForgedParity(t *testing.T) {
	p := newPipe(t, Config{K: 8, fixedM: 2, GroupDelay: time.Second})
	p.rules(func(i int, _ []byte) bool { return i != 2 && i%10 < 8 }, nil, nil) // no parity gets through
	for i := range 8 {
		p.a.WriteTo(quicPacket(i), p.ra.LocalAddr())
	}
	got := p.collect(7, time.Second)
	if len(got) != 7 {
		t.Fatalf("got %d packets, want 7", len(got))
	}
	forged := [][]byte{
		{typeParity},                                // truncated
		{typeParity, 0, 0, 0, 8, 8, 2, 0},           // no payload
		{typeParity, 0, 0, 0, 9, 8, 2, 0, 0, 0, 1},  // n > k
		{typeParity, 0, 0, 0, 8, 65, 2, 0, 0, 0, 1}, // k too large
		{typeParity, 0, 0, 0, 8, 8, 2, 2, 0, 0, 1},  // j >= m
		{typeParity, 0, 0, 0, 8, 8, 0, 0, 0, 0, 1},  // m 0
		{typeReport, 1, 2},                          // short report
		append([]byte{typeData, 0, 0, 9}, 0x00, 1),  // data not QUIC
	}
	for _, f := range forged {
		p.inject(f)
	}
	// Parity with the right header and wrong bytes: the rebuilt packet
	// is garbage quic-go would drop; here it must not crash and must not
	// be one of ours.
	junk := append([]byte{typeParity, 0, 0, 0, 8, 8, 2, 0}, bytes.Repeat([]byte{0x5a}, 1200)...)
	p.inject(junk)
	// A second parity for the same group announcing another size.
	p.inject(append([]byte{typeParity, 0, 0, 0, 8, 8, 2, 1}, bytes.Repeat([]byte{1}, 300)...))
	buf := make([]byte, 1452)
	p.b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		n, _, err := p.b.ReadFrom(buf)
		if err != nil {
			break
		}
		if n >= 5 && bytes.Equal(buf[:n], quicPacket(int(binary.BigEndian.Uint32(buf[1:])))) {
			t.Fatalf("forged parity produced packet %d", binary.BigEndian.Uint32(buf[1:]))
		}
	}
	if m := p.b.Stats().Malformed; m < uint64(len(forged)) {
		t.Errorf("malformed counted %d, want at least %d", m, len(forged))
	}
}

// A peer not enabled gets plain packets and its coding packets are
// dropped; data packets from it are still handed up (stripped).
func TestNotEnabled(t *testing.T) {
	ua, ub := listen(t), listen(t)
	a, b := New(ua, Config{}), New(ub, Config{})
	defer a.Close()
	defer b.Close()
	a.WriteTo(quicPacket(1), ub.LocalAddr())
	buf := make([]byte, 2048)
	b.SetReadDeadline(time.Now().Add(time.Second))
	n, _, err := b.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], quicPacket(1)) {
		t.Fatalf("plain packet: %v %x", err, buf[:n])
	}
	ua.WriteTo([]byte{typeParity, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0x40}, ub.LocalAddr())
	ua.WriteTo(append([]byte{typeData, 0, 0, 7}, quicPacket(2)...), ub.LocalAddr())
	n, _, err = b.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], quicPacket(2)) {
		t.Fatalf("stripped packet: %v %x", err, buf[:n])
	}
	if b.Stats().Unknown != 1 {
		t.Errorf("unknown %d, want 1", b.Stats().Unknown)
	}
}

// newControl returns a controller with the default config and a func
// that feeds it one report 100 ms after the last, adding exp packets
// expected, recv received and rep repaired to the counts.
func newControl() (*control, func(exp, recv, rep uint32)) {
	cfg := Config{}
	cfg.fill()
	c := &control{}
	c.init(cfg)
	now := time.Unix(0, 0)
	var r report
	return c, func(exp, recv, rep uint32) {
		now = now.Add(100 * time.Millisecond)
		r.expected += exp
		r.received += recv
		r.repaired += rep
		c.onReport(r, now)
	}
}

// The parity controller: none without loss, more with more loss, more
// again while loss is left after repair, capped, and none again once the
// loss has gone.
func TestControl(t *testing.T) {
	c, report := newControl()
	step := func(exp, recv, rep uint32) int {
		report(exp, recv, rep)
		return c.m
	}
	step(0, 0, 0)
	for range 20 {
		if m := step(1000, 1000, 0); m != 0 {
			t.Fatalf("clean: m %d", m)
		}
	}
	m1 := step(1000, 990, 10)
	if m1 < 1 {
		t.Fatalf("1%% loss: m %d", m1)
	}
	m5 := 0
	for range 5 {
		m5 = step(1000, 950, 50)
	}
	if m5 <= m1 {
		t.Fatalf("5%% loss: m %d, not above 1%%'s %d", m5, m1)
	}
	for range 40 {
		step(1000, 700, 0) // 30%, little repaired
	}
	if c.m > c.cfg.maxM() {
		t.Fatalf("m %d over the cap %d", c.m, c.cfg.maxM())
	}
	for range 40 {
		step(1000, 1000, 0)
	}
	if c.m != 0 {
		t.Fatalf("loss gone: m %d", c.m)
	}
}

func TestBaseParity(t *testing.T) {
	for _, tc := range []struct {
		k    int
		p    float64
		want int
	}{{32, 0, 0}, {32, 0.001, 1}, {32, 0.01, 3}, {8, 0.01, 2}, {32, 0.5, MaxM + 1}} {
		if got := baseParity(tc.k, tc.p, 0.002); got != tc.want {
			t.Errorf("baseParity(%d, %v) = %d, want %d", tc.k, tc.p, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{typeParity, 0, 0, 0, 8, 8, 2, 0, 0, 5, 0x40, 1, 2, 3, 4})
	f.Add([]byte{typeReport, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{typeData, 0, 0, 1, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, payload, err := parseParity(b); err == nil {
			if h.n > h.k || h.j >= h.m || len(payload)+parityHdr != len(b) {
				t.Fatalf("accepted %+v", h)
			}
		}
		parseReport(b)
		// The receiver takes any of it without panicking.
		var r receiver
		var out rebuilt
		r.mayKeep = true
		r.onData(append([]byte{typeGroupData, 0, 0, 0}, 0x40, 1, 2), &out)
		r.onParity(b, &out)
		if len(b) > dataHdr && (b[0] == typeData || b[0] == typeGroupData) && isQUIC(b[dataHdr:]) {
			r.onData(append([]byte(nil), b...), &out)
		}
		r.drop()
	})
}

// While the RTT shows a standing queue the controller sends no parity and
// learns nothing from the drops (a full queue's, not the link's); once the
// queue drains, the parity sized before returns.
func TestControlQueued(t *testing.T) {
	c, step := newControl()
	c.rtt, c.minRTT = 22*time.Millisecond, 20*time.Millisecond
	step(0, 0, 0)
	for range 20 {
		step(1000, 990, 10) // 1%, all repaired
	}
	_, m1 := c.code()
	p1 := c.p
	if m1 < 1 || p1 < 0.005 || p1 > 0.02 {
		t.Fatalf("1%% loss: m %d p %.4f", m1, p1)
	}
	c.rtt = 60 * time.Millisecond // a queue of two round trips
	if !c.queued() {
		t.Fatal("rtt 3×min not queued")
	}
	if _, m := c.code(); m != 0 {
		t.Fatalf("queued: m %d, want 0", m)
	}
	for range 10 {
		step(1000, 900, 0) // a full queue's drops, not repaired
	}
	if c.p != p1 || c.extra != 0 {
		t.Fatalf("queued drops moved the controller: p %.4f (was %.4f), extra %d", c.p, p1, c.extra)
	}
	c.rtt = 25 * time.Millisecond
	if _, m := c.code(); m != m1 {
		t.Fatalf("queue drained: m %d, want %d", m, m1)
	}
}

// While the transport says the path is full the controller sends no
// parity but still measures the loss (the pacer keeps the queue short:
// the drops are the link's); the loss no parity repaired does not add
// extra parity. Once the path has room, parity sized to the loss
// measured meanwhile returns. Conn.SetFull reaches the controller and
// PeerStats shows it.
func TestControlFull(t *testing.T) {
	c, step := newControl()
	c.rtt, c.minRTT = 22*time.Millisecond, 20*time.Millisecond
	step(0, 0, 0)
	for range 20 {
		step(1000, 995, 5) // 0.5%, all repaired
	}
	_, m1 := c.code()
	if m1 < 1 {
		t.Fatalf("0.5%% loss: m %d", m1)
	}
	c.full = true
	if _, m := c.code(); m != 0 {
		t.Fatalf("full: m %d, want 0", m)
	}
	for range 20 {
		step(1000, 970, 0) // 3%, none repaired: no parity was sent
	}
	if c.p < 0.02 || c.extra != 0 {
		t.Fatalf("full: p %.4f (want the 3%% measured), extra %d (want 0)", c.p, c.extra)
	}
	c.full = false
	if _, m := c.code(); m <= m1 {
		t.Fatalf("room again: m %d, want more than the %d sized for 0.5%%", m, m1)
	}

	p := newPipe(t, Config{})
	addr := p.ra.LocalAddr()
	p.a.SetFull(addr, true)
	if st, ok := p.a.PeerStats(addr); !ok || !st.Full {
		t.Fatalf("after SetFull(true): %+v %v", st, ok)
	}
	p.a.SetFull(addr, false)
	if st, _ := p.a.PeerStats(addr); st.Full {
		t.Fatal("after SetFull(false): still full")
	}
	p.a.SetFull(&net.TCPAddr{}, true) // not a UDP peer: ignored
}

// A group its timer closes early sends parity for its own size, never
// more than the overhead cap allows it (at least one), and any of its
// packets lost is rebuilt from that parity.
func TestShortGroupCap(t *testing.T) {
	for _, tc := range []struct{ n, want int }{{1, 1}, {3, 1}, {8, 2}, {12, 3}} {
		// The timer is long enough that a loaded machine still writes
		// the whole group before it fires (a 5 ms timer split groups).
		p := newPipe(t, Config{GroupDelay: 100 * time.Millisecond})
		s := p.a.peer(keyOf(p.ra.LocalAddr().(*net.UDPAddr))).s
		s.mu.Lock()
		// A heavy loss measured: a full group would take the cap (8).
		s.ctl.p, s.ctl.m, s.ctl.extra = 0.3, p.a.cfg.maxM(), 4
		s.mu.Unlock()
		// The receiver learns the sequence from a first packet (its own
		// group); the next group loses its last packet.
		p.a.WriteTo(quicPacket(0), p.ra.LocalAddr())
		p.collect(1, time.Second)
		time.Sleep(20 * time.Millisecond)
		before, _ := p.a.PeerStats(p.ra.LocalAddr())
		last := uint32(tc.n)
		p.rules(func(_ int, b []byte) bool {
			data := len(b) >= dataHdr+5 && (b[0] == typeData || b[0] == typeGroupData)
			return !data || binary.BigEndian.Uint32(b[dataHdr+1:]) != last
		}, nil, nil)
		for i := 1; i <= tc.n; i++ {
			p.a.WriteTo(quicPacket(i), p.ra.LocalAddr())
		}
		got := p.collect(tc.n, time.Second)
		st, _ := p.a.PeerStats(p.ra.LocalAddr())
		if sent := int(st.ParitySent - before.ParitySent); sent != tc.want {
			t.Errorf("group of %d: %d parity, want %d", tc.n, sent, tc.want)
		}
		if got[tc.n] != 1 {
			t.Errorf("group of %d: lost packet handed up %d times", tc.n, got[tc.n])
		}
		p.close()
	}
}

// QUIC packets of at most plainMax bytes (acknowledgements) go out
// uncoded and draw no parity, under any loss; they still arrive.
func TestSmallPacketsPlain(t *testing.T) {
	p := newPipe(t, Config{GroupDelay: 100 * time.Millisecond})
	defer p.close()
	s := p.a.peer(keyOf(p.ra.LocalAddr().(*net.UDPAddr))).s
	s.mu.Lock()
	s.ctl.p, s.ctl.m = 0.05, p.a.cfg.maxM()
	s.mu.Unlock()
	const n = 50
	for i := range n {
		b := quicPacket(i)[:plainMax-i%8]
		if _, err := p.a.WriteTo(b, p.ra.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	got := map[int]bool{}
	buf := make([]byte, 1452)
	for len(got) < n {
		p.b.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, _, err := p.b.ReadFrom(buf)
		if err != nil {
			break
		}
		i := int(binary.BigEndian.Uint32(buf[1:]))
		if !bytes.Equal(buf[:m], quicPacket(i)[:plainMax-i%8]) {
			t.Fatalf("packet %d corrupted", i)
		}
		got[i] = true
	}
	st, _ := p.a.PeerStats(p.ra.LocalAddr())
	if st.DataSent != 0 || st.ParitySent != 0 || p.a.Stats().Plain != n {
		t.Errorf("%d coded, %d parity, %d plain; want 0, 0, %d", st.DataSent, st.ParitySent, p.a.Stats().Plain, n)
	}
	if len(got) != n {
		t.Errorf("%d of %d small packets arrived", len(got), n)
	}
}

// Sparse packets, each alone in its group, stay within the overhead cap
// over time: a parity packet for every 1/MaxOverhead of them once the
// first full group's worth of credit is spent, not one each.
func TestSparseParityCredit(t *testing.T) {
	p := newPipe(t, Config{GroupDelay: 2 * time.Millisecond})
	defer p.close()
	s := p.a.peer(keyOf(p.ra.LocalAddr().(*net.UDPAddr))).s
	s.mu.Lock()
	s.ctl.p, s.ctl.m, s.ctl.extra = 0.05, p.a.cfg.maxM(), 0
	s.mu.Unlock()
	const n = 200
	for i := range n {
		p.a.WriteTo(quicPacket(i), p.ra.LocalAddr())
		time.Sleep(4 * time.Millisecond) // the group's timer closes it
	}
	p.collect(n, 2*time.Second)
	st, _ := p.a.PeerStats(p.ra.LocalAddr())
	if st.DataSent != n {
		t.Fatalf("%d data packets sent, want %d", st.DataSent, n)
	}
	limit := uint64(p.a.cfg.maxM()) + uint64(p.a.cfg.MaxOverhead*n) + 1
	t.Logf("%d parity packets for %d sparse packets", st.ParitySent, n)
	if st.ParitySent > limit || st.ParitySent < limit/2 {
		t.Errorf("%d parity packets for %d sparse packets, want within [%d, %d] (the credit)", st.ParitySent, n, limit/2, limit)
	}
}

// Groups are as long as the loss allows: 64 packets while their parity
// fits the cap, 32 (with up to a quarter of parity) past it.
func TestSized(t *testing.T) {
	cfg := Config{K: 64}
	cfg.fill()
	for _, tc := range []struct {
		p        float64
		extra    int
		wantK, m int
	}{{0, 0, 64, 0}, {0.001, 0, 64, 1}, {0.01, 0, 64, 4}, {0.01, 3, 64, 7}, {0.05, 0, 32, 7}, {0.3, 0, 32, 8}, {0.01, 6, 32, 8}} {
		c := control{cfg: cfg, p: tc.p, extra: tc.extra}
		if k, m := c.sized(); k != tc.wantK || m != tc.m {
			t.Errorf("loss %v extra %d: k %d m %d, want %d, %d", tc.p, tc.extra, k, m, tc.wantK, tc.m)
		}
	}
}

package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/socks5"
)

// The UDP workload: a constant-rate stream of datagrams (a voice call is
// 50 a second of 160 bytes) through the system's UDP path to the bench's
// UDP destination, which echoes each one. Each datagram carries its
// number and when it was sent on the run's clock, so both ends, being
// one process, measure one-way latency exactly, each way:
//
//	seq:32 | sent:64 (ns on the run's clock) | dir:8 ('U' up, 'D' down) | workload:8 | padding
//
// Per direction the result has the delivered fraction, one-way latency
// p50 and p99, jitter (the mean difference of consecutive datagrams'
// latencies, RFC 3550's D without its smoothing) and the longest gap
// between arrivals, over the datagrams sent after the warmup.
const udpHeader = 4 + 8 + 1 + 1

// udpPeer is one application's UDP association through the system.
type udpPeer interface {
	// Send sends one datagram to the destination the peer was opened
	// for.
	Send(p []byte) error
	// Recv reads one answer into buf.
	Recv(buf []byte) (int, error)
	Close() error
}

// udpDialFunc opens a UDP association to dest through the system; class
// as for dialFunc.
type udpDialFunc func(ctx context.Context, dest netip.AddrPort, class string) (udpPeer, error)

// udpDir is one direction's arrivals, by sequence number.
type udpDir struct {
	mu      sync.Mutex
	lat     []time.Duration // -1: not (yet) arrived
	arrived []time.Duration // when, on the run's clock
}

func newUDPDir(n int) *udpDir {
	d := &udpDir{lat: make([]time.Duration, n), arrived: make([]time.Duration, n)}
	for i := range d.lat {
		d.lat[i] = -1
	}
	return d
}

// arrive records datagram seq, sent at sent, arriving at now; a
// duplicate or one past the end is ignored.
func (d *udpDir) arrive(seq uint32, sent, now time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if int(seq) < len(d.lat) && d.lat[seq] < 0 {
		d.lat[seq], d.arrived[seq] = now-sent, now
	}
}

// udpRec is one UDP workload's record.
type udpRec struct {
	w        *Workload
	sentAt   []time.Duration // by seq, -1 not sent
	n        atomic.Int64    // datagrams sent
	up, down *udpDir
	bytes    atomic.Int64 // datagram bytes sent each way (the echo counted at the destination)
}

func newUDPRec(w *Workload, sc *Scenario) *udpRec {
	stop := w.Stop
	if stop == 0 || stop > sc.Duration {
		stop = sc.Duration
	}
	n := int(math.Ceil((stop-w.Start).Seconds()*w.RatePerS)) + 1
	r := &udpRec{w: w, sentAt: make([]time.Duration, n), up: newUDPDir(n), down: newUDPDir(n)}
	for i := range r.sentAt {
		r.sentAt[i] = -1
	}
	return r
}

// udpDest is the bench's UDP destination: it records each datagram's
// upward arrival and echoes it, stamped anew, downward.
type udpDest struct {
	pc  *net.UDPConn
	clk clock
	wg  sync.WaitGroup

	mu   sync.Mutex
	recs []*udpRec // by the workload byte of the datagrams
}

func startUDPDest(clk clock) (*udpDest, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	d := &udpDest{pc: pc, clk: clk}
	d.wg.Add(1)
	go d.serve()
	return d, nil
}

func (d *udpDest) addr() netip.AddrPort { return d.pc.LocalAddr().(*net.UDPAddr).AddrPort() }

func (d *udpDest) add(r *udpRec) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recs = append(d.recs, r)
	return len(d.recs) - 1
}

func (d *udpDest) close() {
	d.pc.Close()
	d.wg.Wait()
}

func (d *udpDest) serve() {
	defer d.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := d.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < udpHeader || buf[12] != 'U' {
			continue
		}
		d.mu.Lock()
		var r *udpRec
		if i := int(buf[13]); i < len(d.recs) {
			r = d.recs[i]
		}
		d.mu.Unlock()
		if r == nil {
			continue
		}
		now := d.clk.now()
		seq := binary.BigEndian.Uint32(buf)
		r.up.arrive(seq, time.Duration(binary.BigEndian.Uint64(buf[4:])), now)
		binary.BigEndian.PutUint64(buf[4:], uint64(d.clk.now()))
		buf[12] = 'D'
		if _, err := d.pc.WriteToUDPAddrPort(buf[:n], from); err == nil {
			r.bytes.Add(int64(n))
		}
	}
}

// runUDP sends w's datagrams through peer until stop and records the
// echoes.
func runUDP(ctx context.Context, clk clock, peer udpPeer, r *udpRec, idx int, start, stop time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := peer.Recv(buf)
			if err != nil {
				return
			}
			if n < udpHeader || buf[12] != 'D' {
				continue
			}
			r.down.arrive(binary.BigEndian.Uint32(buf), time.Duration(binary.BigEndian.Uint64(buf[4:])), clk.now())
		}
	}()
	p := make([]byte, r.w.DatagramBytes)
	interval := time.Duration(float64(time.Second) / r.w.RatePerS)
	for seq := 0; seq < len(r.sentAt); seq++ {
		at := start + time.Duration(seq)*interval
		if at >= stop {
			break
		}
		if !sleepUntil(ctx, clk.t0.Add(at)) {
			break
		}
		now := clk.now()
		binary.BigEndian.PutUint32(p, uint32(seq))
		binary.BigEndian.PutUint64(p[4:], uint64(now))
		p[12], p[13] = 'U', byte(idx)
		r.sentAt[seq] = now
		r.n.Add(1)
		if peer.Send(p) == nil {
			r.bytes.Add(int64(len(p)))
		}
	}
	// The last answers: up to a second.
	sleepUntil(ctx, time.Now().Add(time.Second))
	peer.Close()
	<-done
}

// UDPResult is a UDP workload's figures in results.json.
type UDPResult struct {
	Up   UDPDirResult `json:"up"`
	Down UDPDirResult `json:"down"`
	// BytesPerStreamByte is what the paths carried (both ways, on the
	// wire: QUIC and packet coding's headers and parity, probes) per byte
	// of datagrams sent; only when the scenario carries nothing else.
	BytesPerStreamByte *float64 `json:"bytes_per_stream_byte,omitempty"`
	// CodedPerDatagram is braid's datagrams sent (data and parity, both
	// ends) per application datagram: the datagram plan's overhead.
	CodedPerDatagram *float64 `json:"coded_per_datagram,omitempty"`
}

// UDPDirResult is one direction of a UDP workload.
type UDPDirResult struct {
	Sent              int      `json:"sent"`
	Received          int      `json:"received"`
	DeliveredFraction *float64 `json:"delivered_fraction"`
	LatencyP50Ms      *float64 `json:"latency_p50_ms"`
	LatencyP99Ms      *float64 `json:"latency_p99_ms"`
	JitterMs          *float64 `json:"jitter_ms"`
	LongestGapMs      *float64 `json:"longest_gap_ms"`
}

// udpMetrics computes r's figures over datagrams sent in [warm, end).
func udpMetrics(r *udpRec, warm, end time.Duration) *UDPResult {
	res := &UDPResult{}
	// The down direction's datagrams are the echoes of those that came
	// up: its sent count is what the destination received.
	res.Up = dirMetrics(r, r.up, warm, end, nil)
	res.Down = dirMetrics(r, r.down, warm, end, r.up)
	return res
}

func dirMetrics(r *udpRec, d *udpDir, warm, end time.Duration, from *udpDir) UDPDirResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	if from != nil {
		from.mu.Lock()
		defer from.mu.Unlock()
	}
	var out UDPDirResult
	var lats []time.Duration
	var arrivals []time.Duration
	jsum, jn := 0.0, 0
	prev := time.Duration(-1)
	for seq, at := range r.sentAt {
		if at < warm || at >= end {
			continue
		}
		if from != nil && from.lat[seq] < 0 {
			continue // never reached the destination: no echo to expect
		}
		out.Sent++
		if d.lat[seq] < 0 {
			continue
		}
		out.Received++
		lats = append(lats, d.lat[seq])
		arrivals = append(arrivals, d.arrived[seq])
		if prev >= 0 {
			jsum += math.Abs(ms(d.lat[seq] - prev))
			jn++
		}
		prev = d.lat[seq]
	}
	if out.Sent > 0 {
		out.DeliveredFraction = num(float64(out.Received) / float64(out.Sent))
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		out.LatencyP50Ms = num(ms(quantile(lats, 0.5)))
		out.LatencyP99Ms = num(ms(quantile(lats, 0.99)))
	}
	if jn > 0 {
		out.JitterMs = num(jsum / float64(jn))
	}
	if len(arrivals) > 1 {
		slices.Sort(arrivals)
		var gap time.Duration
		for i := 1; i < len(arrivals); i++ {
			gap = max(gap, arrivals[i]-arrivals[i-1])
		}
		out.LongestGapMs = num(ms(gap))
	}
	return out
}

// udpLimit is the limit system's UDP figures: every datagram, each way
// over the path with the least delay, at the stream's own pace.
func udpLimit(sc *Scenario, w *Workload) *UDPResult {
	up, down := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for _, p := range sc.Paths {
		up, down = min(up, p.Up.Delay), min(down, p.Down.Delay)
	}
	gap := ms(time.Duration(float64(time.Second) / w.RatePerS))
	stop := w.Stop
	if stop == 0 || stop > sc.Duration {
		stop = sc.Duration
	}
	n := int(math.Max(0, (stop-max(w.Start, sc.Warmup)).Seconds()*w.RatePerS))
	dir := func(d time.Duration) UDPDirResult {
		return UDPDirResult{Sent: n, Received: n, DeliveredFraction: num(1), LatencyP50Ms: num(ms(d)), LatencyP99Ms: num(ms(d)), JitterMs: num(0), LongestGapMs: num(gap)}
	}
	return &UDPResult{Up: dir(up), Down: dir(down)}
}

// socksUDP is a SOCKS5 UDP association: the TCP connection that holds
// it and the socket to the proxy's relay.
type socksUDP struct {
	tcp  net.Conn
	uc   *net.UDPConn
	hdr  []byte
	buf  []byte
	once sync.Once
}

func dialSOCKSUDP(ctx context.Context, socksAddr string, dest netip.AddrPort, class string) (udpPeer, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", socksAddr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var creds *socks5.Credentials
	if class != "" {
		creds = &socks5.Credentials{User: class, Pass: "-"}
	}
	relay, err := socks5.Associate(c, creds, socks5.Addr{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("socks udp associate: %w", err)
	}
	c.SetDeadline(time.Time{})
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(relay.IP, relay.Port)))
	if err != nil {
		c.Close()
		return nil, err
	}
	hdr, err := socks5.AppendUDPHeader(nil, socks5.UDPHeader{Addr: socks5.Addr{IP: dest.Addr(), Port: dest.Port()}})
	if err != nil {
		c.Close()
		uc.Close()
		return nil, err
	}
	return &socksUDP{tcp: c, uc: uc, hdr: hdr, buf: make([]byte, 0, 64<<10)}, nil
}

func (s *socksUDP) Send(p []byte) error {
	s.buf = append(append(s.buf[:0], s.hdr...), p...)
	_, err := s.uc.Write(s.buf)
	return err
}

func (s *socksUDP) Recv(buf []byte) (int, error) {
	for {
		n, err := s.uc.Read(buf)
		if err != nil {
			return 0, err
		}
		_, payload, err := socks5.ParseUDPHeader(buf[:n])
		if err != nil {
			continue
		}
		return copy(buf, payload), nil
	}
}

func (s *socksUDP) Close() error {
	s.once.Do(func() {
		s.tcp.Close()
		s.uc.Close()
	})
	return nil
}

// quic-direct's datagrams: each QUIC datagram from its client is
// dest:6 (IPv4 and port) | payload; the server relays the payload from
// one UDP socket per connection and sends answers back whole.
type directUDP struct {
	qc     *quic.Conn
	dest   [6]byte
	buf    []byte
	ctx    context.Context
	cancel context.CancelFunc
}

func newDirectUDP(qc *quic.Conn, dest netip.AddrPort) (udpPeer, error) {
	if !dest.Addr().Is4() {
		return nil, errors.New("quic-direct udp: IPv4 destinations only")
	}
	d := &directUDP{qc: qc}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	a := dest.Addr().As4()
	copy(d.dest[:], a[:])
	binary.BigEndian.PutUint16(d.dest[4:], dest.Port())
	return d, nil
}

func (d *directUDP) Send(p []byte) error {
	d.buf = append(append(d.buf[:0], d.dest[:]...), p...)
	return d.qc.SendDatagram(d.buf)
}

func (d *directUDP) Recv(buf []byte) (int, error) {
	b, err := d.qc.ReceiveDatagram(d.ctx)
	if err != nil {
		return 0, err
	}
	return copy(buf, b), nil
}

// Close ends only this side's use (a Recv returns): the connection is
// the system's.
func (d *directUDP) Close() error {
	d.cancel()
	return nil
}

// relayDatagrams is quic-direct's server side of datagrams on qc.
func relayDatagrams(qc *quic.Conn) {
	var uc *net.UDPConn
	defer func() {
		if uc != nil {
			uc.Close()
		}
	}()
	for {
		b, err := qc.ReceiveDatagram(context.Background())
		if err != nil {
			return
		}
		if len(b) < 6 {
			continue
		}
		if uc == nil {
			dest := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:]))
			if uc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dest)); err != nil {
				return
			}
			go func(uc *net.UDPConn) {
				buf := make([]byte, 64<<10)
				for {
					n, err := uc.Read(buf)
					if err != nil {
						return
					}
					qc.SendDatagram(buf[:n])
				}
			}(uc)
		}
		uc.Write(b[6:])
	}
}

var (
	_ udpPeer = (*socksUDP)(nil)
	_ udpPeer = (*directUDP)(nil)
)

package bench

// The traffic side of a run: an in-process destination server, and the
// bulk and request/response workloads that reach it through the system
// under test. Both ends live in this process, so a flow's record is shared
// by its sender and its receiver: that is how the receiver knows what was
// sent (bytes_lost) and when (block latency).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// conn is a connection through the system under test to the destination.
type conn interface {
	io.ReadWriteCloser
	CloseWrite() error
	SetDeadline(time.Time) error
}

// dialFunc opens a connection to dest through the system under test.
// dialFunc dials dest through the system under test; class is the
// workload's SLA class (braid's SOCKS username), "" for the default.
type dialFunc func(ctx context.Context, dest netip.AddrPort, class string) (conn, error)

// binWidth is the resolution of the delivery timeline.
const binWidth = 100 * time.Millisecond

// clock is the run's time base: t=0 is when the workloads start.
type clock struct{ t0 time.Time }

func (c clock) now() time.Duration { return time.Since(c.t0) }

// recorder collects what receivers see, for the whole run.
type recorder struct {
	clk  clock
	warm time.Duration  // gaps before this are no stalls
	bins []atomic.Int64 // good bytes delivered per binWidth

	mu      sync.Mutex
	rrLat   []sample // rr completion times
	blkLat  []sample // paced bulk chunk delivery latencies
	flows   []*flowRec
	nextID  uint32
	flowErr []string
}

// sample is one latency, stamped with when it completed. An unanswered
// request has lat -1 and at its due time until metrics sees the end.
type sample struct {
	at, lat time.Duration
}

func newRecorder(total, warm time.Duration) *recorder {
	return &recorder{warm: warm, bins: make([]atomic.Int64, int(total/binWidth)+2)}
}

func (r *recorder) deliver(at time.Duration, n int) {
	i := int(at / binWidth)
	if i < 0 {
		i = 0
	}
	if i >= len(r.bins) {
		i = len(r.bins) - 1
	}
	r.bins[i].Add(int64(n))
}

func (r *recorder) failf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.flowErr) < 20 {
		r.flowErr = append(r.flowErr, fmt.Sprintf(format, a...))
	}
}

// Flow kinds on the wire.
const (
	kindUpload   = 'U'
	kindDownload = 'D'
	kindRR       = 'R'
)

// flowRec is one connection of a workload, shared by both ends.
type flowRec struct {
	id   uint32
	kind byte
	size int64   // bulk bytes to send, 0: until stop
	rate float64 // bulk pacing in bits/s, 0: none
	text bool    // bulk bytes from the compressible pattern
	stop chan struct{}
	// stopAt is when stop was closed (ns since t0), for stall accounting.
	stopAt   atomic.Int64
	stopOnce sync.Once
	start    time.Duration // when the flow began, for stall accounting
	// up and down are the two pattern streams (client to destination and
	// back): bytes written by the sender and bytes right at the receiver.
	sentUp, sentDown atomic.Int64
	goodUp, goodDown atomic.Int64
	// maxGap is the longest time, after warm-up, the bulk receiver went
	// without a byte while the flow ran; set by the receiver when done.
	maxGap   time.Duration
	maxGapAt time.Duration // when that gap ended

	// Paced bulk: the sender notes when each chunk went out, the receiver
	// turns that into a latency when the chunk's last byte arrives.
	pmu    sync.Mutex
	chunks []chunkMark
}

type chunkMark struct {
	end uint64 // stream offset just past the chunk
	at  time.Duration
}

// stream is the flow's pattern stream for key.
func (f *flowRec) stream(key uint64) patStream {
	if f.text {
		return newTextStream(key)
	}
	return newPatStream(key)
}

func (r *recorder) newFlow(kind byte) *flowRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	f := &flowRec{id: r.nextID, kind: kind, stop: make(chan struct{})}
	r.flows = append(r.flows, f)
	return f
}

func (r *recorder) flow(id uint32) *flowRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == 0 || int(id) > len(r.flows) {
		return nil
	}
	return r.flows[id-1]
}

// Pattern keys: each flow and direction reads a different part of the
// pattern.
func upKey(id uint32) uint64   { return uint64(id) * 7919 }
func downKey(id uint32) uint64 { return uint64(id)*7919 + 524287 }

// destServer is the destination every workload reaches: it plays the far
// end of each flow as the flow's record says.
type destServer struct {
	ln  net.Listener
	rec *recorder
	wg  sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startDest(rec *recorder) (*destServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &destServer{ln: ln, rec: rec, conns: map[net.Conn]struct{}{}}
	d.wg.Add(1)
	go d.serve()
	return d, nil
}

func (d *destServer) addr() netip.AddrPort { return d.ln.Addr().(*net.TCPAddr).AddrPort() }

func (d *destServer) close() {
	d.ln.Close()
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

func (d *destServer) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		d.conns[c] = struct{}{}
		d.mu.Unlock()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.handle(c.(*net.TCPConn))
			c.Close()
			d.mu.Lock()
			delete(d.conns, c)
			d.mu.Unlock()
		}()
	}
}

// The header a workload sends first: kind, flow id.
const hdrLen = 8

func (d *destServer) handle(c *net.TCPConn) {
	var hdr [hdrLen]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	f := d.rec.flow(binary.BigEndian.Uint32(hdr[4:]))
	if f == nil || hdr[0] != f.kind {
		d.rec.failf("destination: bad header % x", hdr)
		return
	}
	switch f.kind {
	case kindUpload:
		d.rec.receiveBulk(c, f, false)
	case kindDownload:
		d.rec.sendBulk(c, f, false)
	case kindRR:
		d.rec.serveRR(c, f)
	}
}

// sendBulk writes pattern bytes until the flow's size is sent or it is
// told to stop, paced at f.rate when set, then half-closes.
func (r *recorder) sendBulk(c conn, f *flowRec, up bool) {
	key, sent := downKey(f.id), &f.sentDown
	if up {
		key, sent = upKey(f.id), &f.sentUp
	}
	ps := f.stream(key)
	chunk := 64 << 10
	var tick time.Duration
	if f.rate > 0 {
		// About 100 chunks a second, at least one packet's worth.
		chunk = int(math.Max(1200, math.Min(64<<10, f.rate/8/100)))
		tick = time.Duration(float64(chunk) * 8 / f.rate * 1e9)
	}
	buf := make([]byte, chunk)
	next := time.Now()
	for {
		select {
		case <-f.stop:
			c.CloseWrite()
			return
		default:
		}
		n := chunk
		if f.size > 0 {
			left := f.size - sent.Load()
			if left <= 0 {
				c.CloseWrite()
				return
			}
			n = int(min(int64(n), left))
		}
		if tick > 0 {
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-f.stop:
					t.Stop()
					c.CloseWrite()
					return
				case <-t.C:
				}
			}
			next = next.Add(tick)
			if late := time.Since(next); late > time.Second {
				next = time.Now() // do not burst to catch up after a stall
			}
			f.pmu.Lock()
			f.chunks = append(f.chunks, chunkMark{end: ps.off + uint64(n), at: r.clk.now()})
			f.pmu.Unlock()
		}
		ps.fill(buf[:n])
		m, err := c.Write(buf[:n])
		sent.Add(int64(m))
		if err != nil {
			r.failf("flow %d: send: %v", f.id, err)
			return
		}
	}
}

// receiveBulk reads and checks pattern bytes until EOF.
func (r *recorder) receiveBulk(c conn, f *flowRec, down bool) {
	key, good := upKey(f.id), &f.goodUp
	if down {
		key, good = downKey(f.id), &f.goodDown
	}
	ps := f.stream(key)
	buf := make([]byte, 64<<10)
	last := f.start
	var maxGap, maxGapAt time.Duration
	gap := func(now time.Duration) {
		if stopped(f) {
			now = min(now, time.Duration(f.stopAt.Load()))
		}
		if from := max(last, r.warm); now-from > maxGap {
			maxGap, maxGapAt = now-from, now
		}
	}
	for {
		n, err := c.Read(buf)
		if n > 0 {
			now := r.clk.now()
			g := ps.check(buf[:n])
			good.Add(int64(g))
			r.deliver(now, g)
			gap(now)
			last = now
			if f.rate > 0 {
				r.chunksArrived(f, ps.off, now)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.failf("flow %d: receive: %v", f.id, err)
			}
			break
		}
	}
	if stopped(f) {
		gap(time.Duration(f.stopAt.Load())) // silence up to the end counts
	}
	f.maxGap, f.maxGapAt = maxGap, maxGapAt
}

// stopFlow tells a flow's sender to finish.
func (r *recorder) stopFlow(f *flowRec) {
	f.stopOnce.Do(func() {
		f.stopAt.Store(int64(r.clk.now()))
		close(f.stop)
	})
}

func stopped(f *flowRec) bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// chunksArrived records the latency of every paced chunk now complete.
func (r *recorder) chunksArrived(f *flowRec, off uint64, now time.Duration) {
	f.pmu.Lock()
	i := 0
	var lats []sample
	for ; i < len(f.chunks) && f.chunks[i].end <= off; i++ {
		lats = append(lats, sample{at: now, lat: now - f.chunks[i].at})
	}
	f.chunks = f.chunks[i:]
	f.pmu.Unlock()
	if len(lats) > 0 {
		r.mu.Lock()
		r.blkLat = append(r.blkLat, lats...)
		r.mu.Unlock()
	}
}

// serveRR answers requests: 8-byte header (request and response length),
// request bytes, then the response, until EOF.
func (r *recorder) serveRR(c conn, f *flowRec) {
	up, down := newPatStream(upKey(f.id)), newPatStream(downKey(f.id))
	buf := make([]byte, 64<<10)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			if !errors.Is(err, io.EOF) {
				r.failf("rr %d: destination: %v", f.id, err)
			}
			c.CloseWrite()
			return
		}
		req, resp := int(binary.BigEndian.Uint32(hdr[:4])), int(binary.BigEndian.Uint32(hdr[4:]))
		for req > 0 {
			n, err := c.Read(buf[:min(req, len(buf))])
			if n > 0 {
				g := up.check(buf[:n])
				f.goodUp.Add(int64(g))
				r.deliver(r.clk.now(), g)
				req -= n
			}
			if err != nil && (req > 0 || !errors.Is(err, io.EOF)) {
				r.failf("rr %d: destination: %v", f.id, err)
				return
			}
		}
		for resp > 0 {
			n := min(resp, len(buf))
			down.fill(buf[:n])
			m, err := c.Write(buf[:n])
			f.sentDown.Add(int64(m))
			if err != nil {
				r.failf("rr %d: destination: response: %v", f.id, err)
				return
			}
			resp -= n
		}
	}
}

// runRR issues requests at w.RatePerS (Poisson arrivals, open loop: a
// late request is timed from when it was due) and times each response.
func (r *recorder) runRR(ctx context.Context, c conn, f *flowRec, w *Workload, rng *rand.Rand) {
	type pending struct {
		due  time.Duration
		size int
	}
	q := make(chan pending, 1<<16)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		down := newPatStream(downKey(f.id))
		buf := make([]byte, 64<<10)
		for p := range q {
			left := p.size
			for left > 0 {
				n, err := c.Read(buf[:min(left, len(buf))])
				if n > 0 {
					now := r.clk.now()
					g := down.check(buf[:n])
					f.goodDown.Add(int64(g))
					r.deliver(now, g)
					left -= n
				}
				// A reader may return the last bytes with io.EOF.
				if err != nil && (left > 0 || !errors.Is(err, io.EOF)) {
					r.failf("rr %d: response: %v", f.id, err)
					// This request and every one still queued went
					// unanswered; metrics counts them as taking until the
					// end.
					unanswered := []sample{{at: p.due, lat: -1}}
					for p := range q { // until the writer finishes
						unanswered = append(unanswered, sample{at: p.due, lat: -1})
					}
					r.mu.Lock()
					r.rrLat = append(r.rrLat, unanswered...)
					r.mu.Unlock()
					return
				}
			}
			now := r.clk.now()
			r.mu.Lock()
			r.rrLat = append(r.rrLat, sample{at: now, lat: now - p.due})
			r.mu.Unlock()
		}
		// Everything answered: wait for the destination's EOF.
		io.Copy(io.Discard, c)
	}()
	up := newPatStream(upKey(f.id))
	cum := make([]float64, len(w.ResponseBytes))
	sum := 0.0
	for i := range w.ResponseBytes {
		wt := 1.0
		if w.Weights != nil {
			wt = w.Weights[i]
		}
		sum += wt
		cum[i] = sum
	}
	req := make([]byte, 8+w.RequestBytes)
	due := r.clk.now()
	timer := time.NewTimer(0)
	defer timer.Stop()
loop:
	for {
		due += time.Duration(rng.ExpFloat64() / w.RatePerS * 1e9)
		timer.Reset(max(0, due-r.clk.now()))
		select {
		case <-f.stop:
			break loop
		case <-ctx.Done():
			break loop
		case <-timer.C:
		}
		x := rng.Float64() * sum
		size := w.ResponseBytes[len(cum)-1]
		for i, c := range cum {
			if x < c {
				size = w.ResponseBytes[i]
				break
			}
		}
		binary.BigEndian.PutUint32(req[:4], uint32(w.RequestBytes))
		binary.BigEndian.PutUint32(req[4:8], uint32(size))
		up.fill(req[8:])
		select {
		case q <- pending{due: due, size: size}:
		default:
			r.failf("rr %d: more than %d requests outstanding", f.id, cap(q))
			break loop
		}
		m, err := c.Write(req)
		f.sentUp.Add(int64(max(0, m-8)))
		if err != nil {
			r.failf("rr %d: request: %v", f.id, err)
			break
		}
	}
	close(q)
	c.CloseWrite()
	<-readerDone
}

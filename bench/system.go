package bench

// The systems under test, each set up fresh over fresh emulated paths:
// braid under a policy (its SOCKS proxy, client, paths, concentrator), and
// quic-direct, one plain quic-go connection over one path with a stream
// per TCP connection, which is what a single-path QUIC proxy gets.

import (
	"braid/internal/tier"
	"braid/scheduler"
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"braid/bench/emu"
	"braid/client"
	"braid/internal/netx"
	"braid/internal/pki"
	"braid/internal/socks5"
	"braid/server"
	"braid/transport"
)

// env is one system set up over its paths, ready to carry workloads.
type env struct {
	dial dialFunc
	// dialUDP opens a UDP association; nil for a system without UDP.
	dialUDP udpDialFunc
	// udpCoding, for braid, counts the coded datagrams both ends sent
	// (data and parity) and describes their plans.
	udpCoding func() (data, parity uint64, plans string)
	paths     []envPath
	// usageMark, for braid with accounting, reads the concentrator's
	// usage now and returns the time its records end at
	// (server.CollectUsage); nil otherwise.
	usageMark func() time.Time
	// ready waits until every path carries traffic.
	ready func(ctx context.Context) error
	close func()
}

// newEnv returns an env whose close runs, last first, the funcs appended
// to *closers.
func newEnv() (*env, *[]func()) {
	closers := new([]func())
	return &env{close: func() {
		for i := len(*closers) - 1; i >= 0; i-- {
			(*closers)[i]()
		}
	}}, closers
}

// envPath is one path of a running system.
type envPath struct {
	index int // in Scenario.Paths
	// link is the path's emulator (nil for a loopback path): an
	// *emu.Relay, or a kernel system's TUN path.
	link pathLink
	// bytes returns the bytes the path carried so far up (client to
	// concentrator) and down: what its emulator delivered, or for a
	// loopback path what the client's session counted.
	bytes func() (up, down uint64)
}

// pathLink is what a run does to a path's emulator: start its timeline
// (traces, outages, schedules) and throw its kill switch.
type pathLink interface {
	SetStart(time.Time)
	SetBroken(bool)
}

// kernelCC is the congestion control the kernel systems (mptcp, tcp)
// set in their namespaces: what MPTCP's best figures over lossy paths
// need (with cubic it moves a tenth as much there).
const kernelCC = "bbr"

// skipError is why a system cannot run on this machine (not root, not
// Linux): the system is reported as skipped, not as failed.
type skipError string

func (e skipError) Error() string { return string(e) }

// identity is the concentrator's certificate, made once per run.
type identity struct {
	cert tls.Certificate
	pin  [32]byte
}

func newIdentity() (identity, error) {
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		return identity{}, err
	}
	pin, err := pki.ParsePin(pinStr)
	return identity{cert, pin}, err
}

// relaySeed gives path i the same emulator randomness under every system.
func relaySeed(seed int64, i int) int64 { return seed*7919 + int64(i) + 1 }

// systemPaths returns the indices of the paths sys runs over.
func systemPaths(sc *Scenario, sys System) []int {
	var idx []int
	for i, p := range sc.Paths {
		if len(sys.Paths) == 0 || slices.Contains(sys.Paths, p.Name) {
			idx = append(idx, i)
		}
	}
	if (sys.Kind == "quic-direct" || sys.Kind == "tcp") && len(sys.Paths) == 0 {
		return []int{bestPath(sc)}
	}
	return idx
}

// bestPath is the path a single-path proxy would pick, knowing the paths
// but not the future (events, outages): the most capacity in the data
// directions, then the lowest delay.
func bestPath(sc *Scenario) int {
	up, down := sc.dirs()
	best, bestCap := 0, -1.0
	for i, p := range sc.Paths {
		c := 0.0
		if p.Emulated {
			if down {
				c += p.downCap.mean(0, sc.Duration)
			}
			if up {
				c += p.upCap.mean(0, sc.Duration)
			}
		}
		if math.IsNaN(c) {
			c = math.MaxFloat64 // unlimited
		}
		if c > bestCap || (c == bestCap && p.Down.Delay+p.Up.Delay < sc.Paths[best].Down.Delay+sc.Paths[best].Up.Delay) {
			best, bestCap = i, c
		}
	}
	return best
}

// terms are the scenario's SLA as the bestvalue planner reads it.
func (sc *Scenario) terms() transport.Terms {
	if sc.SLA == nil {
		return transport.Terms{}
	}
	s := sc.SLA
	return transport.Terms{Tier: sc.Name, RevenueGB: s.RevenueGB, Profile: scheduler.Profile{CPU: scheduler.CPUHigh},
		SLA: scheduler.SLA{MinGoodput: s.MinGoodputBps / 8, P99Latency: s.P99Latency, Survive: s.Survive,
			ResidualLoss: s.ResidualLoss, MaxCostGB: s.MaxCostGB}}
}

// tier is the scenario's classes as a tier the concentrator pushes: each
// class picked by its name as the SOCKS username. Nil without classes.
func (sc *Scenario) tier() *tier.Tier {
	if sc.SLA == nil || len(sc.SLA.Classes) == 0 {
		return nil
	}
	t := &tier.Tier{Name: sc.Name, RevenueGB: sc.SLA.RevenueGB}
	for i, c := range sc.SLA.Classes {
		tc := tier.Class{Name: c.Name, SLA: c.SLA}
		if i > 0 {
			tc.Users = []string{c.Name}
		}
		t.Classes = append(t.Classes, tc)
	}
	return t
}

// startBraid sets up braid under sys's policy over sys's paths.
func startBraid(ctx context.Context, sc *Scenario, sys System, id identity, log *slog.Logger, acct server.UsageSink) (_ *env, err error) {
	e, closers := newEnv()
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	tcfg := transport.Config{Policy: sys.Policy, Terms: sc.terms(), Logger: log, NoPacketCoding: sys.Uncoded, NoMeasuredPacing: sys.Unpaced}
	scfg := tcfg
	scfg.Tier = sc.tier()
	srv, err := server.Start(server.Config{Listen: "127.0.0.1:0", Cert: id.cert, Tokens: []string{"bench"},
		AllowPrivate: true, AllowOwn: true, Transport: scfg, Logger: log,
		Accounting: acct, AccountingID: sc.Name + "/" + sys.Name})
	if err != nil {
		return nil, fmt.Errorf("concentrator: %w", err)
	}
	*closers = append(*closers, func() { srv.Close() })
	if acct != nil {
		e.usageMark = srv.CollectUsage
	}
	var pcs []client.PathConfig
	for _, i := range systemPaths(sc, sys) {
		p := &sc.Paths[i]
		pc := client.PathConfig{Name: p.Name, Bind: netx.Bind{IP: netip.MustParseAddr("127.0.0.1")},
			Server: srv.Addr().String(), Conns: p.Conns, PriceGB: p.PriceGB, Medium: p.Medium, Operator: p.Operator,
			RateMbps: min(p.Up.RateBps, p.Down.RateBps) / 1e6}
		if p.NoRateHint {
			pc.RateMbps = 0
		}
		ep := envPath{index: i}
		if p.Emulated {
			r, err := emu.NewRelay("127.0.0.1:0", srv.Addr(), p.Up, p.Down, relaySeed(sc.Seed, i))
			if err != nil {
				return nil, fmt.Errorf("emulator for path %s: %w", p.Name, err)
			}
			*closers = append(*closers, func() { r.Close() })
			pc.Server = r.Addr().String()
			ep.link = r
			ep.bytes = relayBytes(r)
		}
		pcs = append(pcs, pc)
		e.paths = append(e.paths, ep)
	}
	cli, err := client.Start(ctx, client.Config{Pin: id.pin, Token: "bench", SOCKS: "127.0.0.1:0",
		Paths: pcs, Transport: tcfg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	*closers = append(*closers, func() { cli.Close() })
	for k := range e.paths {
		if e.paths[k].bytes == nil {
			name := sc.Paths[e.paths[k].index].Name
			e.paths[k].bytes = func() (uint64, uint64) {
				for _, p := range cli.Session().Paths() {
					if p.Name() == name {
						return p.BytesSent.Load(), p.BytesReceived.Load()
					}
				}
				return 0, 0
			}
		}
	}
	socksAddr := cli.SOCKSAddr().String()
	e.dial = func(ctx context.Context, dest netip.AddrPort, class string) (conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", socksAddr)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		if sys.HTTP {
			if err := httpConnect(c, dest, class); err != nil {
				c.Close()
				return nil, fmt.Errorf("http connect: %w", err)
			}
			c.SetDeadline(time.Time{})
			return c.(*net.TCPConn), nil
		}
		var creds *socks5.Credentials
		if class != "" {
			creds = &socks5.Credentials{User: class, Pass: "-"}
		}
		if _, err := socks5.Connect(c, creds, socks5.Addr{IP: dest.Addr(), Port: dest.Port()}); err != nil {
			c.Close()
			return nil, fmt.Errorf("socks connect: %w", err)
		}
		c.SetDeadline(time.Time{})
		return c.(*net.TCPConn), nil
	}
	e.dialUDP = func(ctx context.Context, dest netip.AddrPort, class string) (udpPeer, error) {
		return dialSOCKSUDP(ctx, socksAddr, dest, class)
	}
	e.udpCoding = func() (data, parity uint64, plans string) {
		sessions := append([]*transport.Session{}, srv.Sessions()...)
		if s := cli.Session(); s != nil {
			sessions = append(sessions, s)
		}
		var desc []string
		for _, s := range sessions {
			ds := s.DatagramStats()
			data += ds.Sent.Load()
			parity += ds.Parity.Load()
			end := "concentrator"
			if s.IsClient() {
				end = "client"
			}
			desc = append(desc, fmt.Sprintf("%s datagrams: delivered %d, repaired %d, late %d, unrepaired %d, duplicate %d, queue full %d",
				end, ds.Delivered.Load(), ds.Repaired.Load(), ds.Late.Load(), ds.Unrepaired.Load(), ds.Duplicate.Load(), ds.QueueFull.Load()))
			for class, p := range s.DatagramPlans() {
				desc = append(desc, fmt.Sprintf("%s class %d: %s", end, class, p.String()))
			}
			for _, p := range s.Paths() {
				st := p.Stats()
				desc = append(desc, fmt.Sprintf("%s path %s: %d data packets, %d parity packets (%d B) beneath QUIC, %d B of probes sent",
					end, p.Name(), st.DataPackets, st.ParityPackets, st.ParityBytes, st.ProbeBytesSent))
			}
		}
		slices.Sort(desc)
		return data, parity, strings.Join(desc, "; ")
	}
	want := len(pcs)
	e.ready = func(ctx context.Context) error {
		return waitFor(ctx, func() bool {
			if countUp(cli.Session().Paths()) < want {
				return false
			}
			ss := srv.Sessions()
			return len(ss) == 1 && countUp(ss[0].Paths()) == want
		}, func() string {
			return fmt.Sprintf("client paths up: %d of %d", countUp(cli.Session().Paths()), want)
		})
	}
	return e, nil
}

func countUp(ps []*transport.Path) int {
	n := 0
	for _, p := range ps {
		if p.Up() {
			n++
		}
	}
	return n
}

func relayBytes(r *emu.Relay) func() (uint64, uint64) {
	return func() (uint64, uint64) {
		s := r.Stats()
		return s.Up.DeliveredBytes, s.Down.DeliveredBytes
	}
}

// waitFor polls ok until it holds or ctx ends.
func waitFor(ctx context.Context, ok func() bool, state func() string) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("paths not ready (%s): %w", state(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// directALPN is quic-direct's protocol name.
const directALPN = "braid-bench-direct"

// directQUICConfig is braid's QUIC configuration with room for a stream
// per proxied connection.
func directQUICConfig() *quic.Config {
	c := transport.QUICConfig()
	c.MaxIncomingStreams = 1024
	c.KeepAlivePeriod = 5 * time.Second
	return c
}

// startDirect sets up quic-direct over sys's path (or the best one): a
// proxy whose client opens one stream per TCP connection on one QUIC
// connection, whose server dials the destination named at the stream's
// start and relays both ways.
func startDirect(ctx context.Context, sc *Scenario, sys System, id identity) (_ *env, err error) {
	e, closers := newEnv()
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	ln, err := quic.ListenAddr("127.0.0.1:0", pki.ServerTLS(id.cert, directALPN), directQUICConfig())
	if err != nil {
		return nil, err
	}
	srv := &directServer{ln: ln, conns: tracked{tcp: map[net.Conn]struct{}{}}}
	srv.wg.Add(1)
	go srv.serve()
	*closers = append(*closers, srv.close)

	i := systemPaths(sc, sys)[0]
	p := &sc.Paths[i]
	addr := ln.Addr().String()
	ep := envPath{index: i}
	if p.Emulated {
		r, err := emu.NewRelay("127.0.0.1:0", ln.Addr().(*net.UDPAddr), p.Up, p.Down, relaySeed(sc.Seed, i))
		if err != nil {
			return nil, fmt.Errorf("emulator for path %s: %w", p.Name, err)
		}
		*closers = append(*closers, func() { r.Close() })
		addr = r.Addr().String()
		ep.link = r
		ep.bytes = relayBytes(r)
	}
	qc, err := quic.DialAddr(ctx, addr, pki.ClientTLS(id.pin, directALPN), directQUICConfig())
	if err != nil {
		return nil, fmt.Errorf("quic-direct dial: %w", err)
	}
	*closers = append(*closers, func() { qc.CloseWithError(0, "") })
	if ep.bytes == nil {
		ep.bytes = func() (uint64, uint64) {
			s := qc.ConnectionStats()
			return s.BytesSent, s.BytesReceived
		}
	}
	e.paths = []envPath{ep}
	// The near end: like braid's SOCKS proxy, a local TCP listener that
	// the workloads connect to, so both systems carry the same TCP hops.
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fe := &directFront{ln: front, qc: qc, conns: tracked{tcp: map[net.Conn]struct{}{}}}
	fe.wg.Add(1)
	go fe.serve()
	*closers = append(*closers, fe.close)
	e.dial = func(ctx context.Context, dest netip.AddrPort, _ string) (conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", front.Addr().String())
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(directHeader(dest.String())); err != nil {
			c.Close()
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	e.dialUDP = func(_ context.Context, dest netip.AddrPort, _ string) (udpPeer, error) { return newDirectUDP(qc, dest) }
	e.ready = func(context.Context) error { return nil }
	return e, nil
}

// directHeader names a stream's destination: a 2-byte length and
// HOST:PORT.
func directHeader(addr string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(addr))), addr...)
}

func readDirectHeader(r io.Reader) (string, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", err
	}
	a := make([]byte, binary.BigEndian.Uint16(n[:]))
	_, err := io.ReadFull(r, a)
	return string(a), err
}

// splice copies both ways between a TCP connection and a QUIC stream,
// carrying half-close across, until both directions are done; an error
// resets the stream and closes the connection.
func splice(c *net.TCPConn, st *quic.Stream) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(c, st); err != nil {
			c.Close()
			return
		}
		c.CloseWrite()
	}()
	if _, err := io.Copy(st, c); err != nil {
		st.CancelWrite(0)
		st.CancelRead(0)
	} else {
		st.Close()
	}
	<-done
	c.Close()
}

// tracked is a set of live TCP connections to close at shutdown.
type tracked struct {
	mu  sync.Mutex
	tcp map[net.Conn]struct{}
}

func (t *tracked) add(c net.Conn) {
	t.mu.Lock()
	t.tcp[c] = struct{}{}
	t.mu.Unlock()
}

func (t *tracked) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.tcp, c)
	t.mu.Unlock()
}

func (t *tracked) closeAll() {
	t.mu.Lock()
	for c := range t.tcp {
		c.Close()
	}
	t.mu.Unlock()
}

// directFront is quic-direct's near end: each accepted TCP connection
// names its destination and becomes one stream.
type directFront struct {
	ln    net.Listener
	qc    *quic.Conn
	wg    sync.WaitGroup
	conns tracked
}

func (d *directFront) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.conns.add(c)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer d.conns.remove(c)
			defer c.Close()
			dest, err := readDirectHeader(c)
			if err != nil {
				return
			}
			st, err := d.qc.OpenStreamSync(context.Background())
			if err != nil {
				return
			}
			if _, err := st.Write(directHeader(dest)); err != nil {
				st.CancelRead(0)
				st.CancelWrite(0)
				return
			}
			splice(c.(*net.TCPConn), st)
		}()
	}
}

func (d *directFront) close() {
	d.ln.Close()
	d.conns.closeAll()
	d.wg.Wait()
}

// directServer is quic-direct's far end: each stream names its
// destination, which it dials and splices to.
type directServer struct {
	ln    *quic.Listener
	wg    sync.WaitGroup
	conns tracked

	mu  sync.Mutex
	qcs []*quic.Conn
}

func (d *directServer) serve() {
	defer d.wg.Done()
	for {
		qc, err := d.ln.Accept(context.Background())
		if err != nil {
			return
		}
		d.mu.Lock()
		d.qcs = append(d.qcs, qc)
		d.mu.Unlock()
		d.wg.Add(2)
		go func() {
			defer d.wg.Done()
			relayDatagrams(qc)
		}()
		go func() {
			defer d.wg.Done()
			for {
				st, err := qc.AcceptStream(context.Background())
				if err != nil {
					return
				}
				d.wg.Add(1)
				go func() {
					defer d.wg.Done()
					d.stream(st)
				}()
			}
		}()
	}
}

func (d *directServer) stream(st *quic.Stream) {
	dest, err := readDirectHeader(st)
	var c net.Conn
	if err == nil {
		c, err = net.DialTimeout("tcp", dest, 10*time.Second)
	}
	if err != nil {
		st.CancelRead(0)
		st.CancelWrite(0)
		return
	}
	d.conns.add(c)
	defer d.conns.remove(c)
	splice(c.(*net.TCPConn), st)
}

func (d *directServer) close() {
	d.ln.Close()
	d.mu.Lock()
	for _, qc := range d.qcs {
		qc.CloseWithError(0, "")
	}
	d.mu.Unlock()
	d.conns.closeAll()
	d.wg.Wait()
}

// httpConnect asks the proxy on c for a tunnel to dest with HTTP
// CONNECT, class as the username of Proxy-Authorization as SOCKS5's
// would be. It reads the answer's header byte by byte so that no byte of
// the tunnel is read ahead.
func httpConnect(c net.Conn, dest netip.AddrPort, class string) error {
	req := "CONNECT " + dest.String() + " HTTP/1.1\r\nHost: " + dest.String() + "\r\n"
	if class != "" {
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(class+":-")) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return err
	}
	var hdr []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
		if len(hdr) > 16<<10 {
			return errors.New("answer header too long")
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		hdr = append(hdr, b[0])
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(hdr)), nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy answered %s", resp.Status)
	}
	return nil
}

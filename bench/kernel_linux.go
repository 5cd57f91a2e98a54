//go:build linux

package bench

// The kernel systems, mptcp and tcp: Linux's own transports over the same
// emulated paths braid crosses. Kernel TCP cannot cross bench/emu's UDP
// relay, so each path is a pair of TUN devices, one in a client network
// namespace and one in a server namespace, with the bench forwarding every
// IP packet between them through two emu.Pipes (the path's up and down
// links, with the relay's seeds). The workloads and their destination stay
// in the bench's own namespace, as they do for braid:
//
//	workload -> front (127.0.0.1) -> [client ns] tunI ==Pipe==> tunI [server ns] -> far end -> destination
//
// A namespace is entered by a goroutine locked to its thread, which never
// unlocks: Go then ends that thread with the goroutine, so no other
// goroutine ever runs in the namespace. Sockets made there stay there.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"braid/bench/emu"
)

// tunOverhead is the IPv4 and UDP header bytes a UDP relay never sees: a
// Pipe leaves them uncharged, so that a full-size packet costs what braid's
// packets of the same payload cost on a Relay.
const tunOverhead = 28

// nsSeq makes each run's namespace names unique within the process.
var nsSeq atomic.Uint64

// kernelSkip says why the kernel systems cannot run here, or "".
func kernelSkip(kind string) string {
	if os.Geteuid() != 0 {
		return kind + " needs root (network namespaces and TUN devices); run braid-bench as root to compare with the kernel"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return kind + " needs the ip command (iproute2)"
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return kind + " needs /dev/net/tun: " + err.Error()
	}
	if kind == "mptcp" {
		b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
		if err != nil {
			return "mptcp needs a kernel with MPTCP: " + err.Error()
		}
		if strings.TrimSpace(string(b)) != "1" {
			return "mptcp is disabled on this host (net.mptcp.enabled=0)"
		}
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err == nil && !strings.Contains(" "+strings.TrimSpace(string(b))+" ", " "+kernelCC+" ") {
		// Loading the module makes it available; try once.
		_ = exec.Command("modprobe", "tcp_"+kernelCC).Run()
		b, _ = os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
		if !strings.Contains(" "+strings.TrimSpace(string(b))+" ", " "+kernelCC+" ") {
			return kind + " needs the " + kernelCC + " congestion control (tcp_" + kernelCC + ")"
		}
	}
	return ""
}

// inNetns runs fn on a thread in the namespace ns (an open
// /var/run/netns file) and returns its error. The thread is discarded
// afterwards.
func inNetns(ns *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine.
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// kernelNet is the two namespaces and the TUN paths between them.
type kernelNet struct {
	cli, srv     string // namespace names
	cliNS, srvNS *os.File
	paths        []*tunPath
	wg           sync.WaitGroup
}

// tunPath is one emulated path: a TUN device at each end and a Pipe per
// direction.
type tunPath struct {
	cliAddr, srvAddr netip.Addr
	cliTun, srvTun   *os.File
	up, down         *emu.Pipe
}

func (p *tunPath) SetStart(t time.Time) {
	p.up.SetStart(t)
	p.down.SetStart(t)
}

func (p *tunPath) SetBroken(b bool) {
	p.up.SetBroken(b)
	p.down.SetBroken(b)
}

func (p *tunPath) bytes() (uint64, uint64) {
	return p.up.Stats().DeliveredBytes, p.down.Stats().DeliveredBytes
}

// ipCmd runs ip with args and returns an error carrying its output.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sysctl writes /proc/sys/<key with / for .> on the calling thread, which
// must be in the namespace meant: /proc/sys/net is the caller's.
func sysctl(key, val string) error {
	return os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(val), 0o644)
}

// openTun creates a TUN device named name (no packet info header) on the
// calling thread's namespace and returns it, non-blocking, for Go's poller.
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.TUNSETIFF), uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("creating TUN device %s: %w", name, e)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// newKernelNet builds the namespaces and one TUN path per index of
// sc.Paths in idx (the first carries the server's address), with kernelCC
// as both namespaces' congestion control. For MPTCP, every further path
// is a subflow endpoint of the client, routed out of its own device.
func newKernelNet(sc *Scenario, idx []int, mptcp bool) (_ *kernelNet, err error) {
	if len(idx) > 8 {
		return nil, fmt.Errorf("the kernel systems take at most 8 paths (MPTCP's subflow limit), not %d", len(idx))
	}
	n := nsSeq.Add(1)
	k := &kernelNet{cli: fmt.Sprintf("braidbench-%d-%d-c", os.Getpid(), n), srv: fmt.Sprintf("braidbench-%d-%d-s", os.Getpid(), n)}
	defer func() {
		if err != nil {
			k.close()
		}
	}()
	for _, ns := range []string{k.cli, k.srv} {
		if err := ipCmd("netns", "add", ns); err != nil {
			return nil, err
		}
	}
	if k.cliNS, err = os.Open("/var/run/netns/" + k.cli); err != nil {
		return nil, err
	}
	if k.srvNS, err = os.Open("/var/run/netns/" + k.srv); err != nil {
		return nil, err
	}
	for _, ns := range []*os.File{k.cliNS, k.srvNS} {
		err := inNetns(ns, func() error {
			for _, kv := range [][2]string{
				{"net.ipv6.conf.all.disable_ipv6", "1"}, {"net.ipv6.conf.default.disable_ipv6", "1"},
				// Replies to a subflow's address come in on its own
				// device, not the one the main table names.
				{"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"},
				{"net.ipv4.tcp_congestion_control", kernelCC},
			} {
				if err := sysctl(kv[0], kv[1]); err != nil {
					return err
				}
			}
			if mptcp {
				return sysctl("net.mptcp.enabled", "1")
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for j, i := range idx {
		p := &sc.Paths[i]
		tp := &tunPath{cliAddr: netip.AddrFrom4([4]byte{10, 77, byte(j), 1}), srvAddr: netip.AddrFrom4([4]byte{10, 77, byte(j), 2})}
		k.paths = append(k.paths, tp)
		dev := fmt.Sprintf("path%d", j)
		if err := inNetns(k.cliNS, func() (err error) { tp.cliTun, err = openTun(dev); return }); err != nil {
			return nil, err
		}
		if err := inNetns(k.srvNS, func() (err error) { tp.srvTun, err = openTun(dev); return }); err != nil {
			return nil, err
		}
		for _, c := range [][]string{
			{"-n", k.cli, "addr", "add", tp.cliAddr.String(), "peer", tp.srvAddr.String(), "dev", dev},
			{"-n", k.srv, "addr", "add", tp.srvAddr.String(), "peer", tp.cliAddr.String(), "dev", dev},
			{"-n", k.cli, "link", "set", dev, "up"},
			{"-n", k.srv, "link", "set", dev, "up"},
		} {
			if err := ipCmd(c...); err != nil {
				return nil, err
			}
		}
		if err := inNetns(k.cliNS, func() error { return sysctl("net.ipv4.conf."+dev+".rp_filter", "0") }); err != nil {
			return nil, err
		}
		if mptcp && j > 0 {
			table := fmt.Sprint(100 + j)
			for _, c := range [][]string{
				{"-n", k.cli, "rule", "add", "from", tp.cliAddr.String(), "table", table},
				{"-n", k.cli, "route", "add", k.paths[0].srvAddr.String(), "dev", dev, "table", table},
				{"-n", k.cli, "mptcp", "endpoint", "add", tp.cliAddr.String(), "dev", dev, "subflow"},
			} {
				if err := ipCmd(c...); err != nil {
					return nil, err
				}
			}
		}
		seed := relaySeed(sc.Seed, i)
		tp.up = emu.NewPipe(p.Up, seed, tunOverhead, writeTo(tp.srvTun))
		tp.down = emu.NewPipe(p.Down, seed^0x5DEECE66D, tunOverhead, writeTo(tp.cliTun))
		k.wg.Add(2)
		go k.forward(tp.cliTun, tp.up)
		go k.forward(tp.srvTun, tp.down)
	}
	if mptcp {
		for _, ns := range []string{k.cli, k.srv} {
			if err := ipCmd("-n", ns, "mptcp", "limits", "set", "subflows", "8", "add_addr_accepted", "8"); err != nil {
				return nil, err
			}
		}
	}
	return k, nil
}

func writeTo(f *os.File) func([]byte) error {
	return func(b []byte) error {
		_, err := f.Write(b)
		return err
	}
}

// forward reads packets from a TUN device into a Pipe until the device is
// closed.
func (k *kernelNet) forward(f *os.File, p *emu.Pipe) {
	defer k.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			// EIO while the device goes down at close; anything else
			// is not expected from a TUN device, so stop too.
			return
		}
		p.Send(buf[:n])
	}
}

// close removes everything newKernelNet made; deleting the namespaces
// removes their devices, routes and endpoints.
func (k *kernelNet) close() {
	for _, p := range k.paths {
		for _, f := range []*os.File{p.cliTun, p.srvTun} {
			if f != nil {
				f.Close()
			}
		}
	}
	k.wg.Wait()
	for _, p := range k.paths {
		for _, pp := range []*emu.Pipe{p.up, p.down} {
			if pp != nil {
				pp.Close()
			}
		}
	}
	for _, f := range []*os.File{k.cliNS, k.srvNS} {
		if f != nil {
			f.Close()
		}
	}
	for _, ns := range []string{k.cli, k.srv} {
		_ = ipCmd("netns", "del", ns)
	}
}

// startKernel sets up the mptcp or tcp system: one kernel connection
// (MPTCP over all of sys's paths, or TCP over one) per workload
// connection, between a front in the bench's namespace and a far end in
// the server namespace that dials the destination.
func startKernel(ctx context.Context, sc *Scenario, sys System) (_ *env, err error) {
	if why := kernelSkip(sys.Kind); why != "" {
		return nil, skipError(why)
	}
	mptcp := sys.Kind == "mptcp"
	e, closers := newEnv()
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	idx := systemPaths(sc, sys)
	k, err := newKernelNet(sc, idx, mptcp)
	if err != nil {
		return nil, fmt.Errorf("kernel paths: %w", err)
	}
	*closers = append(*closers, k.close)
	for j, i := range idx {
		e.paths = append(e.paths, envPath{index: i, link: k.paths[j], bytes: k.paths[j].bytes})
	}

	var lc net.ListenConfig
	lc.SetMultipathTCP(mptcp)
	var ln net.Listener
	srvAddr := netip.AddrPortFrom(k.paths[0].srvAddr, 0)
	if err := inNetns(k.srvNS, func() (err error) {
		ln, err = lc.Listen(ctx, "tcp4", srvAddr.String())
		return
	}); err != nil {
		return nil, fmt.Errorf("far end: %w", err)
	}
	far := &kernelFar{ln: ln, conns: tracked{tcp: map[net.Conn]struct{}{}}}
	far.wg.Add(1)
	go far.serve()
	*closers = append(*closers, far.close)
	target := ln.Addr().String()

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fe := &kernelFront{ln: front, ns: k.cliNS, target: target, mptcp: mptcp, conns: tracked{tcp: map[net.Conn]struct{}{}}}
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
	e.ready = func(ctx context.Context) error { return fe.probe(ctx) }
	return e, nil
}

// kernelFront is the near end: each accepted TCP connection names its
// destination and becomes one kernel connection from the client namespace.
type kernelFront struct {
	ln     net.Listener
	ns     *os.File
	target string
	mptcp  bool
	wg     sync.WaitGroup
	conns  tracked
}

// dial opens a connection to the far end from the client namespace.
func (f *kernelFront) dial(ctx context.Context) (*net.TCPConn, error) {
	var c net.Conn
	err := inNetns(f.ns, func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		d.SetMultipathTCP(f.mptcp)
		c, err = d.DialContext(ctx, "tcp4", f.target)
		return
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// probe checks that a connection crosses the paths before the run starts.
func (f *kernelFront) probe(ctx context.Context) error {
	c, err := f.dial(ctx)
	if err != nil {
		return fmt.Errorf("kernel paths not ready: %w", err)
	}
	c.Close()
	return nil
}

func (f *kernelFront) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.conns.add(c)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.conns.remove(c)
			defer c.Close()
			dest, err := readDirectHeader(c)
			if err != nil {
				return
			}
			k, err := f.dial(context.Background())
			if err != nil {
				return
			}
			f.conns.add(k)
			defer f.conns.remove(k)
			if _, err := k.Write(directHeader(dest)); err != nil {
				k.Close()
				return
			}
			spliceTCP(c.(*net.TCPConn), k)
		}()
	}
}

func (f *kernelFront) close() {
	f.ln.Close()
	f.conns.closeAll()
	f.wg.Wait()
}

// kernelFar is the far end in the server namespace: each connection names
// its destination, which it dials from the bench's namespace.
type kernelFar struct {
	ln    net.Listener
	wg    sync.WaitGroup
	conns tracked
}

func (f *kernelFar) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.conns.add(c)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.conns.remove(c)
			defer c.Close()
			dest, err := readDirectHeader(c)
			if err != nil {
				return // the readiness probe, or a broken peer
			}
			d, err := net.DialTimeout("tcp", dest, 10*time.Second)
			if err != nil {
				return
			}
			f.conns.add(d)
			defer f.conns.remove(d)
			spliceTCP(c.(*net.TCPConn), d.(*net.TCPConn))
		}()
	}
}

func (f *kernelFar) close() {
	f.ln.Close()
	f.conns.closeAll()
	f.wg.Wait()
}

// spliceTCP copies both ways between two TCP connections, carrying
// half-close across, until both directions are done, then closes both.
func spliceTCP(a, b *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := a.ReadFrom(b); err != nil {
			a.Close()
			b.Close()
			return
		}
		a.CloseWrite()
	}()
	if _, err := b.ReadFrom(a); err != nil {
		a.Close()
		b.Close()
	} else {
		b.CloseWrite()
	}
	<-done
	a.Close()
	b.Close()
}

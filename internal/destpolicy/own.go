package destpolicy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"braid/internal/notify"
)

// Refresh timing. The interval bounds how long a new address on this host
// stays dialable through the concentrator; minGap bounds how often
// Refresh can make Own list the interfaces.
const (
	refreshInterval = 2 * time.Second
	refreshMinGap   = 200 * time.Millisecond
)

// Own is the set of this host's own addresses: every address on every
// interface (loopback, down and link-local ones included), the addresses
// given to NewOwn or Add, and implicitly all loopback addresses and the
// unspecified ones, which a dial on this host also reaches.
//
// Between Start and Close a goroutine lists the interfaces again every
// 2 s, and soon after Refresh; [Own.Contains] only loads an immutable
// snapshot through an atomic pointer, so it never waits for that listing.
// An address added to an interface is thus missed for up to 2 s; one
// that Linux delivers locally without being on an interface (an AnyIP
// "local" route) is missed altogether unless the operator adds it. A
// listing that fails keeps the previous set.
//
// Create one with NewOwn. The methods are safe for concurrent use. A nil
// *Own holds only the implicit addresses.
type Own struct {
	// Replaced by tests before Start.
	source   func() ([]netip.Addr, error)
	interval time.Duration
	minGap   time.Duration

	set atomic.Pointer[ownSet]

	mu      sync.Mutex // guards the fields below and serializes listings
	extra   []netip.Addr
	ifaces  []netip.Addr // the last successful listing
	started bool
	closed  bool
	kick    chan struct{} // Refresh -> loop, buffered 1
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when loop returns
}

// ownSet is one immutable snapshot: addresses unmapped and without zone.
type ownSet struct {
	addrs map[netip.Addr]struct{}
}

func (s *ownSet) has(ip netip.Addr) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	if s == nil {
		return false
	}
	_, ok := s.addrs[ip]
	return ok
}

// NewOwn returns an Own holding the implicit addresses and extra, the
// addresses the operator says reach this host though no interface has
// them (a public address in front of a 1:1 NAT). It lists no interface
// until Start.
func NewOwn(extra ...netip.Addr) *Own {
	o := &Own{
		source:   interfaceAddrs,
		interval: refreshInterval,
		minGap:   refreshMinGap,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	o.extra = appendNormal(nil, extra)
	o.publishLocked()
	return o
}

// Start lists the interfaces once, failing if that fails (then the set
// would miss addresses that are this host's), and starts refreshing the
// set until Close. Start may be called once, and not after Close.
func (o *Own) Start() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
		return errors.New("own addresses: start after close")
	case o.started:
		return errors.New("own addresses: already started")
	}
	if err := o.listLocked(); err != nil {
		return err
	}
	o.started = true
	go o.loop()
	return nil
}

// Close stops refreshing and waits for the goroutine Start started. The
// set stays as it was last listed. Close may be called more than once.
func (o *Own) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	started := o.started
	close(o.stop)
	o.mu.Unlock()
	if started {
		<-o.done
	}
	return nil
}

// Add adds addresses that reach this host, such as the address a listener
// is bound to, for as long as o lives. It does no I/O: the set is
// rebuilt from the last listing. Invalid addresses are ignored.
func (o *Own) Add(addrs ...netip.Addr) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.extra = appendNormal(o.extra, addrs)
	o.publishLocked()
}

// Refresh asks for the interfaces to be listed again soon, without
// waiting for it: a call within 200 ms of the last listing is served by
// the one after it, and calls while one is pending coalesce. Use it when
// something suggests this host's addresses changed. Before Start the
// request waits for Start; after Close it is dropped.
func (o *Own) Refresh() {
	if o == nil {
		return
	}
	notify.Signal(o.kick)
}

// Contains reports whether a dial to ip reaches this host: ip, unmapped
// and without zone, is in the set, or is loopback or unspecified, or an
// IPv4 address ip embeds (see [Embedded]) is, so ::ffff:192.0.2.7 and
// 64:ff9b::c000:207 are this host when 192.0.2.7 is.
func (o *Own) Contains(ip netip.Addr) bool {
	_, ok := o.match(ip)
	return ok
}

// match is Contains, also returning the embedded IPv4 address that
// matched (invalid when ip itself did).
func (o *Own) match(ip netip.Addr) (embedded netip.Addr, ok bool) {
	var s *ownSet
	if o != nil {
		s = o.set.Load()
	}
	ip = ip.Unmap().WithZone("")
	if s.has(ip) {
		return netip.Addr{}, true
	}
	var buf [2]netip.Addr
	for _, v4 := range appendEmbedded(buf[:0], ip) {
		if s.has(v4) {
			return v4, true
		}
	}
	return netip.Addr{}, false
}

// Addrs returns the explicit addresses in the set, interface and added
// ones, sorted, for a log line; the implicit ones are not listed.
func (o *Own) Addrs() []netip.Addr {
	if o == nil {
		return nil
	}
	s := o.set.Load()
	out := make([]netip.Addr, 0, len(s.addrs))
	for a := range s.addrs {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (o *Own) loop() {
	defer close(o.done)
	ticker := time.NewTicker(o.interval)
	defer ticker.Stop()
	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	last := time.Now()
	armed := false
	for {
		select {
		case <-o.stop:
			return
		case <-o.kick:
			if armed {
				continue
			}
			if wait := o.minGap - time.Since(last); wait > 0 {
				timer.Reset(wait)
				armed = true
				continue
			}
		case <-timer.C:
			armed = false
		case <-ticker.C:
		}
		o.mu.Lock()
		if !o.closed {
			// A failed listing keeps the previous set: dropping it would
			// make this host's addresses dialable.
			_ = o.listLocked()
		}
		o.mu.Unlock()
		last = time.Now()
	}
}

// listLocked lists the interfaces and publishes the new set.
func (o *Own) listLocked() error {
	addrs, err := o.source()
	if err != nil {
		return fmt.Errorf("own addresses: %w", err)
	}
	o.ifaces = appendNormal(nil, addrs)
	o.publishLocked()
	return nil
}

// publishLocked builds a snapshot from the last listing and the added
// addresses and makes Contains see it.
func (o *Own) publishLocked() {
	s := &ownSet{addrs: make(map[netip.Addr]struct{}, len(o.ifaces)+len(o.extra))}
	for _, a := range o.ifaces {
		s.addrs[a] = struct{}{}
	}
	for _, a := range o.extra {
		s.addrs[a] = struct{}{}
	}
	o.set.Store(s)
}

// appendNormal appends the valid addresses of in to dst, unmapped and
// without zone.
func appendNormal(dst, in []netip.Addr) []netip.Addr {
	for _, a := range in {
		if a.IsValid() {
			dst = append(dst, a.Unmap().WithZone(""))
		}
	}
	return dst
}

// interfaceAddrs lists the addresses on all interfaces (on Linux one
// rtnetlink dump).
func interfaceAddrs() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(ifas))
	for _, ifa := range ifas {
		var ip net.IP
		switch a := ifa.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

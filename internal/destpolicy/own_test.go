package destpolicy

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakeSource is an interface listing the test changes at will.
type fakeSource struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	calls int
}

func (f *fakeSource) list() ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return slices.Clone(f.addrs), f.err
}

func (f *fakeSource) set(err error, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	f.addrs = nil
	for _, a := range addrs {
		f.addrs = append(f.addrs, netip.MustParseAddr(a))
	}
}

func (f *fakeSource) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// newFakeOwn returns an Own listing src that refreshes only on Refresh
// (the timer is an hour) with a minimum gap of gap.
func newFakeOwn(src *fakeSource, gap time.Duration, extra ...netip.Addr) *Own {
	o := NewOwn(extra...)
	o.source = src.list
	o.interval = time.Hour
	o.minGap = gap
	return o
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOwnContains(t *testing.T) {
	src := &fakeSource{}
	src.set(nil, "10.1.2.3", "2001:db8::5", "fe80::1%eth0", "::ffff:192.0.2.9")
	o := newFakeOwn(src, time.Millisecond, netip.MustParseAddr("198.51.100.7"))
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	cases := map[string]bool{
		// Interface addresses, in every form that reaches them.
		"10.1.2.3":                             true,
		"::ffff:10.1.2.3":                      true,
		"::10.1.2.3":                           true,
		"::ffff:0:a01:203":                     true,
		"64:ff9b::a01:203":                     true,
		"64:ff9b:1::a01:203":                   true,
		"2002:a01:203::1":                      true,
		"2001:0:a01:203::ffff:ffff":            true, // Teredo server
		"2001:0:4136:e378:8000:63bf:f5fe:fdfc": true, // Teredo client
		"2001:db8::5":                          true,
		"fe80::1":                              true,
		"fe80::1%eth1":                         true,
		"192.0.2.9":                            true, // listed mapped
		// Added by the operator.
		"198.51.100.7":       true,
		"64:ff9b::c633:6407": true,
		// Implicit.
		"127.0.0.1":        true,
		"127.0.0.2":        true,
		"::1":              true,
		"::ffff:127.0.0.1": true,
		"64:ff9b::7f00:1":  true,
		"0.0.0.0":          true,
		"::":               true,
		// Not this host.
		"10.1.2.4":         false,
		"8.8.8.8":          false,
		"64:ff9b::808:808": false,
		"2001:db8::6":      false,
		"fe80::2":          false,
	}
	for s, want := range cases {
		if got := o.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", s, got, want)
		}
	}
	want := []netip.Addr{
		netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.9"),
		netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::5"),
		netip.MustParseAddr("fe80::1"),
	}
	if got := o.Addrs(); !slices.Equal(got, want) {
		t.Errorf("Addrs() = %v, want %v", got, want)
	}
}

func TestOwnNil(t *testing.T) {
	var o *Own
	cases := map[string]bool{"127.0.0.1": true, "::1": true, "::": true, "64:ff9b::7f00:1": true, "8.8.8.8": false, "10.0.0.1": false}
	for s, want := range cases {
		if got := o.Contains(netip.MustParseAddr(s)); got != want {
			t.Errorf("nil Contains(%s) = %v, want %v", s, got, want)
		}
	}
	o.Refresh()
	if got := o.Addrs(); got != nil {
		t.Errorf("nil Addrs() = %v", got)
	}
}

// TestOwnSystem lists this machine's interfaces itself and expects every
// address, loopback included, in the set and refused by a policy that
// allows private destinations but not own ones.
func TestOwnSystem(t *testing.T) {
	o := NewOwn()
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var mine []netip.Addr
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
					mine = append(mine, ip.Unmap())
				}
			}
		}
	}
	mine = append(mine, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"))
	if len(o.Addrs()) == 0 {
		t.Error("Addrs() is empty; a machine has at least a loopback address")
	}

	private := &Policy{AllowPrivate: true, Own: o}
	open := &Policy{AllowPrivate: true, AllowOwn: true, Own: o}
	for _, ip := range mine {
		if !o.Contains(ip) {
			t.Errorf("Contains(%s) = false for an address of this machine", ip)
		}
		var re *RefusedError
		if err := private.Check(ip); !errors.As(err, &re) || re.Reason != reasonOwn {
			t.Errorf("AllowPrivate Check(%s) = %v, want the own-address refusal", ip, err)
		}
		if err := open.Check(ip); err != nil {
			t.Errorf("AllowPrivate+AllowOwn Check(%s) = %v, want nil", ip, err)
		}
		if ip.Is4() {
			nat64 := netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 12: ip.As4()[0], ip.As4()[1], ip.As4()[2], ip.As4()[3]})
			if err := private.Check(nat64); !errors.As(err, &re) || re.Reason != reasonOwn || re.Embedded != ip {
				t.Errorf("AllowPrivate Check(%s) = %v, want the own-address refusal of %s", nat64, err, ip)
			}
		}
	}
}

func TestOwnAdd(t *testing.T) {
	src := &fakeSource{}
	src.set(nil, "10.0.0.1")
	o := newFakeOwn(src, time.Millisecond)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	listener := netip.MustParseAddr("203.0.113.10")
	if o.Contains(listener) {
		t.Fatalf("Contains(%s) before Add", listener)
	}
	o.Add(listener, netip.Addr{}, netip.MustParseAddr("::ffff:203.0.113.11"))
	for _, s := range []string{"203.0.113.10", "203.0.113.11", "::ffff:203.0.113.10", "10.0.0.1"} {
		if !o.Contains(netip.MustParseAddr(s)) {
			t.Errorf("Contains(%s) = false after Add", s)
		}
	}
	if n := len(o.Addrs()); n != 3 {
		t.Errorf("Addrs() = %v, want 3 addresses (the invalid one ignored)", o.Addrs())
	}

	// Added addresses outlive a listing that no longer has the old ones.
	src.set(nil, "10.0.0.2")
	o.Refresh()
	eventually(t, "the new listing", func() bool { return o.Contains(netip.MustParseAddr("10.0.0.2")) })
	if !o.Contains(listener) {
		t.Errorf("Contains(%s) = false after a refresh", listener)
	}
	if o.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("Contains(10.0.0.1) = true after it left the interfaces")
	}
}

func TestOwnRefresh(t *testing.T) {
	t.Run("on demand", func(t *testing.T) {
		src := &fakeSource{}
		src.set(nil, "10.0.0.1")
		o := newFakeOwn(src, time.Millisecond)
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		src.set(nil, "10.0.0.2", "2001:db8::2")
		o.Refresh()
		eventually(t, "10.0.0.2", func() bool { return o.Contains(netip.MustParseAddr("10.0.0.2")) })
		if !o.Contains(netip.MustParseAddr("2001:db8::2")) || o.Contains(netip.MustParseAddr("10.0.0.1")) {
			t.Errorf("after refresh Addrs() = %v, want [10.0.0.2 2001:db8::2]", o.Addrs())
		}
	})
	t.Run("timer", func(t *testing.T) {
		src := &fakeSource{}
		src.set(nil, "10.0.0.1")
		o := newFakeOwn(src, time.Millisecond)
		o.interval = 10 * time.Millisecond
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		src.set(nil, "10.0.0.3")
		eventually(t, "10.0.0.3", func() bool { return o.Contains(netip.MustParseAddr("10.0.0.3")) })
	})
	t.Run("failure keeps the set", func(t *testing.T) {
		src := &fakeSource{}
		src.set(nil, "10.0.0.1")
		o := newFakeOwn(src, time.Millisecond)
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		src.set(errors.New("netlink broke"))
		before := src.count()
		o.Refresh()
		eventually(t, "a failed listing", func() bool { return src.count() > before })
		// The failed listing is done once the goroutine released the lock.
		o.mu.Lock()
		o.mu.Unlock()
		if !o.Contains(netip.MustParseAddr("10.0.0.1")) {
			t.Error("a failed listing dropped 10.0.0.1")
		}
	})
}

// TestOwnRefreshRateLimited hammers Refresh and expects listings no more
// often than the minimum gap allows.
func TestOwnRefreshRateLimited(t *testing.T) {
	src := &fakeSource{}
	src.set(nil, "10.0.0.1")
	const gap = 100 * time.Millisecond
	o := newFakeOwn(src, gap)
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	start := time.Now()
	for time.Since(start) < 3*gap+gap/2 {
		o.Refresh()
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	// One listing in Start, then at most one per gap.
	got := src.count()
	if limit := 2 + int(elapsed/gap); got > limit {
		t.Errorf("%d listings in %v with a %v gap, want at most %d", got, elapsed, gap, limit)
	}
	if got < 3 {
		t.Errorf("%d listings in %v with a %v gap, want at least 3", got, elapsed, gap)
	}
}

func TestOwnLifecycle(t *testing.T) {
	src := &fakeSource{}
	src.set(errors.New("no netlink"))
	o := newFakeOwn(src, time.Millisecond)
	if err := o.Start(); err == nil {
		t.Error("Start with a failing listing = nil, want an error")
	}
	src.set(nil, "10.0.0.1")
	if err := o.Start(); err != nil {
		t.Fatalf("Start after the failure: %v", err)
	}
	if err := o.Start(); err == nil {
		t.Error("second Start = nil, want an error")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := o.Start(); err == nil {
		t.Error("Start after Close = nil, want an error")
	}
	o.Refresh() // dropped, must not block
	if !o.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("Close dropped the set")
	}

	// Close without Start.
	if err := NewOwn().Close(); err != nil {
		t.Errorf("Close without Start = %v", err)
	}
}

// TestOwnCloseStopsGoroutine: Close returns only after the refresh
// goroutine has stopped, even with a refresh pending.
func TestOwnCloseStopsGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t)
	for range 20 {
		o := NewOwn()
		o.interval = time.Millisecond
		o.minGap = 50 * time.Millisecond
		if err := o.Start(); err != nil {
			t.Fatal(err)
		}
		o.Refresh()
		time.Sleep(2 * time.Millisecond)
		o.Refresh() // pending behind the gap
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

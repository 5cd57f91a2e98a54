package destpolicy

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheck(t *testing.T) {
	src := &fakeSource{}
	src.set(nil, "127.0.0.1", "::1", "10.0.0.5", "192.0.2.80", "2001:db8:1::5", "8.8.4.4")
	own := newFakeOwn(src, time.Millisecond, netip.MustParseAddr("1.2.3.4")) // 1:1 NAT address
	if err := own.Start(); err != nil {
		t.Fatal(err)
	}
	defer own.Close()

	strict := &Policy{Own: own}
	private := &Policy{AllowPrivate: true, Own: own}
	ownOnly := &Policy{AllowOwn: true, Own: own}
	open := &Policy{AllowPrivate: true, AllowOwn: true, Own: own}
	zero := &Policy{}

	cases := []struct {
		policy *Policy
		ip     string
		reason string // "" allowed
		emb    string
	}{
		// Public destinations pass every policy.
		{strict, "1.1.1.1", "", ""},
		{strict, "2606:4700::1111", "", ""},
		{strict, "64:ff9b::101:101", "", ""},
		{zero, "1.1.1.1", "", ""},
		{open, "1.1.1.1", "", ""},

		// Special-purpose refused unless AllowPrivate; the first reason
		// wins, so loopback reads "loopback" in a strict policy.
		{strict, "127.0.0.1", reasonLoopback, ""},
		{strict, "10.9.9.9", reasonPrivate, ""},
		{strict, "64:ff9b::7f00:1", reasonLoopback, "127.0.0.1"},
		{strict, "::127.0.0.1", reasonLoopback, "127.0.0.1"},
		{ownOnly, "10.9.9.9", reasonPrivate, ""},
		{ownOnly, "127.0.0.1", reasonLoopback, ""},
		{zero, "169.254.169.254", reasonLinkLocal, ""},
		{private, "10.9.9.9", "", ""},
		{private, "169.254.169.254", "", ""},
		{private, "fd00::1", "", ""},

		// Own addresses refused unless AllowOwn, also when AllowPrivate
		// lets their range through.
		{strict, "8.8.4.4", reasonOwn, ""},
		{strict, "::ffff:8.8.4.4", reasonOwn, ""},
		{strict, "64:ff9b::808:404", reasonOwn, "8.8.4.4"},
		{strict, "2002:808:404::1", reasonOwn, "8.8.4.4"},
		{strict, "1.2.3.4", reasonOwn, ""},
		{strict, "64:ff9b::102:304", reasonOwn, "1.2.3.4"},
		{private, "127.0.0.1", reasonOwn, ""},
		{private, "127.0.0.53", reasonOwn, ""},
		{private, "::1", reasonOwn, ""},
		{private, "0.0.0.0", reasonOwn, ""},
		{private, "::", reasonOwn, ""},
		{private, "10.0.0.5", reasonOwn, ""},
		{private, "::ffff:10.0.0.5", reasonOwn, ""},
		{private, "64:ff9b::a00:5", reasonOwn, "10.0.0.5"},
		{private, "64:ff9b:1::a00:5", reasonOwn, "10.0.0.5"},
		{private, "::10.0.0.5", reasonOwn, "10.0.0.5"},
		{private, "2001:db8:1::5", reasonOwn, ""},
		{private, "2001:db8:1::6", "", ""},
		{private, "192.0.2.80", reasonOwn, ""},
		{zero, "::ffff:127.0.0.1", reasonLoopback, ""},
		{&Policy{AllowPrivate: true}, "127.0.0.1", reasonOwn, ""}, // nil Own: implicit ones
		{&Policy{AllowPrivate: true}, "10.0.0.5", "", ""},
		{ownOnly, "8.8.4.4", "", ""},
		{ownOnly, "64:ff9b::808:404", "", ""},
		{open, "127.0.0.1", "", ""},
		{open, "10.0.0.5", "", ""},
		{open, "64:ff9b::7f00:1", "", ""},
	}
	for _, c := range cases {
		ip := netip.MustParseAddr(c.ip)
		err := c.policy.Check(ip)
		name := func() string {
			return "Check" + map[bool]string{true: "(private)", false: ""}[c.policy.AllowPrivate] +
				map[bool]string{true: "(own)", false: ""}[c.policy.AllowOwn] + "(" + c.ip + ")"
		}
		if c.reason == "" {
			if err != nil {
				t.Errorf("%s = %v, want nil", name(), err)
			}
			continue
		}
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("%s = %v, want a *RefusedError", name(), err)
			continue
		}
		var emb netip.Addr
		if c.emb != "" {
			emb = netip.MustParseAddr(c.emb)
		}
		if re.Reason != c.reason || re.Embedded != emb || re.Addr != ip {
			t.Errorf("%s = %v, want reason %q embedded %v", name(), err, c.reason, emb)
		}
	}
	for _, p := range []*Policy{strict, open} {
		if err := p.Check(netip.Addr{}); err == nil {
			t.Errorf("Check(invalid) with %+v = nil", *p)
		}
	}
}

func TestRefusedErrorText(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1":       "destination 127.0.0.1 is loopback",
		"::ffff:10.0.0.1": "destination ::ffff:10.0.0.1 is private",
		"64:ff9b::7f00:1": "destination 64:ff9b::7f00:1: embedded IPv4 127.0.0.1 is loopback",
		"2002:a00:1::1":   "destination 2002:a00:1::1: embedded IPv4 10.0.0.1 is private",
		"ff02::1":         "destination ff02::1 is multicast",
		"2001:db8::1":     "destination 2001:db8::1 is reserved for documentation",
	}
	for s, want := range cases {
		err := Public(netip.MustParseAddr(s))
		if err == nil || err.Error() != want {
			t.Errorf("Public(%s) = %v, want %q", s, err, want)
		}
	}
	p := &Policy{AllowPrivate: true}
	if err := p.Check(netip.MustParseAddr("::127.0.0.1")); err == nil ||
		err.Error() != "destination ::7f00:1: embedded IPv4 127.0.0.1 is the concentrator's own address" {
		t.Errorf("Check(::127.0.0.1) = %v", err)
	}
}

// TestCheckAllocs: an allowed destination costs no allocation, so the
// check can run for every candidate address of every flow.
func TestCheckAllocs(t *testing.T) {
	own := NewOwn(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"))
	p := &Policy{Own: own}
	ips := []netip.Addr{
		netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2606:4700::1111"),
		netip.MustParseAddr("64:ff9b::101:101"), netip.MustParseAddr("2001:0:4136:e378:8000:63bf:fefe:fefe"),
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, ip := range ips {
			if err := p.Check(ip); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("Check allocates %v times per run of allowed addresses, want 0", allocs)
	}
}

// embedForms returns v4 in every IPv6 form that carries it, the other
// bits taken from fill: mapped, compatible, translated, both NAT64
// prefixes, 6to4, and Teredo as server and as client, one also with a
// zone.
func embedForms(v4 netip.Addr, fill [12]byte) []netip.Addr {
	a := v4.As4()
	var forms []netip.Addr
	add := func(b [16]byte) { forms = append(forms, netip.AddrFrom16(b)) }
	withV4 := func(b [16]byte, at int) [16]byte { copy(b[at:], a[:]); return b }

	add(withV4([16]byte{10: 0xff, 11: 0xff}, 12))  // ::ffff:a.b.c.d
	add(withV4([16]byte{}, 12))                    // ::a.b.c.d
	add(withV4([16]byte{8: 0xff, 9: 0xff}, 12))    // ::ffff:0:a.b.c.d
	add(withV4([16]byte{0, 0x64, 0xff, 0x9b}, 12)) // 64:ff9b::a.b.c.d
	local := [16]byte{0, 0x64, 0xff, 0x9b, 0, 1}   // 64:ff9b:1:xxxx:xxxx:xxxx:a.b.c.d
	copy(local[6:12], fill[:6])
	add(withV4(local, 12))
	six := [16]byte{0x20, 0x02} // 2002:a.b.c.d:xxxx:...
	copy(six[6:], fill[:10])
	add(withV4(six, 2))
	server := [16]byte{0x20, 0x01} // 2001:0:a.b.c.d:xxxx:...
	copy(server[8:], fill[:8])
	add(withV4(server, 4))
	client := [16]byte{0x20, 0x01} // 2001:0:xxxx:xxxx:xxxx:xxxx:~a.b.c.d
	copy(client[4:12], fill[:8])
	client[12], client[13], client[14], client[15] = ^a[0], ^a[1], ^a[2], ^a[3]
	add(client)
	forms = append(forms, forms[3].WithZone("eth0"))
	return forms
}

// FuzzCheck checks any 16 bytes as an IPv6 address and their first four
// as an IPv4 address without panicking, and that an IPv4 address refused
// as special-purpose or as the host's own is refused in every IPv6 form
// that embeds it.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"::", "::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2001:0:4136:e378:8000:63bf:80ff:fffe",
		"2002:a00:1::1", "2606:4700::1111", "7f00:1::", "a00:1::", "101:101::", "0:1::",
		"c000:200::", "ffff:ffff::", "e000::", "6440:1::",
	} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:])
	}
	strict := &Policy{}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b [16]byte
		copy(b[:], data)
		ip6 := netip.AddrFrom16(b)
		_ = strict.Check(ip6)
		_ = Public(ip6.WithZone("z"))
		_ = Embedded(ip6)

		v4 := netip.AddrFrom4([4]byte(b[:4]))
		forms := embedForms(v4, [12]byte(b[4:]))
		for _, form := range forms {
			// :: and ::1 are IPv6 addresses, not IPv4-compatible ones.
			if form.IsUnspecified() || form.IsLoopback() {
				continue
			}
			found := false
			for _, e := range Embedded(form) {
				found = found || e == v4
			}
			if !found {
				t.Errorf("Embedded(%s) = %v, does not carry %s", form, Embedded(form), v4)
			}
		}

		if strict.Check(v4) != nil {
			for _, form := range forms {
				if strict.Check(form) == nil {
					t.Errorf("%s is refused (%v) but %s is allowed", v4, strict.Check(v4), form)
				}
			}
		}

		ownOnly := &Policy{AllowPrivate: true, Own: NewOwn(v4)}
		if ownOnly.Check(v4) == nil {
			t.Fatalf("Check(%s) = nil with %s an own address", v4, v4)
		}
		for _, form := range forms {
			if ownOnly.Check(form) == nil {
				t.Errorf("own %s is refused but %s is allowed", v4, form)
			}
		}
	})
}

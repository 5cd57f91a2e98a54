package destpolicy

import (
	"net/netip"
	"slices"
	"testing"
)

func TestEmbedded(t *testing.T) {
	cases := []struct {
		ip   string
		want []string
	}{
		// IPv4-mapped.
		{"::ffff:10.0.0.1", []string{"10.0.0.1"}},
		{"::ffff:1.1.1.1", []string{"1.1.1.1"}},
		// IPv4-compatible, but not the IPv6 unspecified and loopback.
		{"::127.0.0.1", []string{"127.0.0.1"}},
		{"::8.8.8.8", []string{"8.8.8.8"}},
		{"::2", []string{"0.0.0.2"}},
		{"::", nil},
		{"::1", nil},
		// SIIT IPv4-translated.
		{"::ffff:0:7f00:1", []string{"127.0.0.1"}},
		// NAT64 well-known prefix: only the /96.
		{"64:ff9b::7f00:1", []string{"127.0.0.1"}},
		{"64:ff9b::101:101", []string{"1.1.1.1"}},
		{"64:ff9b:0:0:1::7f00:1", nil},
		// NAT64 local-use prefix: the whole /48, last 32 bits.
		{"64:ff9b:1::a00:1", []string{"10.0.0.1"}},
		{"64:ff9b:1:ffff:ffff:ffff:a00:1", []string{"10.0.0.1"}},
		{"64:ff9b:2::a00:1", nil},
		// 6to4: bits 16 to 48.
		{"2002:7f00:1::1", []string{"127.0.0.1"}},
		{"2002:c000:22a:1234::ffff", []string{"192.0.2.42"}},
		// Teredo, RFC 4380 section 4's example: server 65.54.227.120,
		// client 192.0.2.45 (inverted on the wire).
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", []string{"65.54.227.120", "192.0.2.45"}},
		// Teredo whose client is 127.0.0.1 (0x7f000001 inverted).
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", []string{"65.54.227.120", "127.0.0.1"}},
		{"2001:0:a00:1::ffff:ffff", []string{"10.0.0.1", "0.0.0.0"}},
		// The zone does not hide anything.
		{"64:ff9b::7f00:1%eth0", []string{"127.0.0.1"}},
		// Nothing embedded.
		{"2606:4700::1111", nil},
		{"2001:db8::7f00:1", nil},
		{"2001:1::7f00:1", nil},
		{"fe80::7f00:1", nil},
		{"1.1.1.1", nil},
		{"127.0.0.1", nil},
	}
	for _, c := range cases {
		got := Embedded(netip.MustParseAddr(c.ip))
		var want []netip.Addr
		for _, w := range c.want {
			want = append(want, netip.MustParseAddr(w))
		}
		if !slices.Equal(got, want) {
			t.Errorf("Embedded(%s) = %v, want %v", c.ip, got, want)
		}
	}
	if got := Embedded(netip.Addr{}); got != nil {
		t.Errorf("Embedded(invalid) = %v, want nil", got)
	}
}

package destpolicy

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPublic(t *testing.T) {
	cases := []struct {
		ip       string
		reason   string // "" allowed
		embedded string // the embedded address named, if any
	}{
		// Public, and public payloads in every embedded form.
		{"1.1.1.1", "", ""},
		{"8.8.8.8", "", ""},
		{"2606:4700::1111", "", ""},
		{"2001:4860:4860::8888", "", ""},
		{"::ffff:8.8.8.8", "", ""},
		{"64:ff9b::101:101", "", ""},
		{"64:ff9b:1::101:101", "", ""},
		{"2002:101:101::1", "", ""},
		{"2001:0:4136:e378:8000:63bf:fefe:fefe", "", ""}, // client 1.1.1.1
		{"1.0.0.0", "", ""},
		{"100.63.255.255", "", ""},
		{"100.128.0.0", "", ""},
		{"172.32.0.1", "", ""},
		{"192.0.1.255", "", ""},
		{"198.20.0.1", "", ""},
		{"223.255.255.255", "", ""},
		{"2001:db9::1", "", ""},

		// IPv4 special-purpose ranges.
		{"0.0.0.0", reasonUnspecified, ""},
		{"0.1.2.3", reasonThisNetwork, ""},
		{"10.1.2.3", reasonPrivate, ""},
		{"172.16.0.1", reasonPrivate, ""},
		{"172.31.255.255", reasonPrivate, ""},
		{"192.168.1.1", reasonPrivate, ""},
		{"100.64.0.1", reasonShared, ""},
		{"100.127.255.255", reasonShared, ""},
		{"127.0.0.1", reasonLoopback, ""},
		{"127.255.255.254", reasonLoopback, ""},
		{"169.254.169.254", reasonLinkLocal, ""},
		{"192.0.0.8", reasonProtocol, ""},
		{"192.0.2.1", reasonDocumentation, ""},
		{"198.51.100.1", reasonDocumentation, ""},
		{"203.0.113.1", reasonDocumentation, ""},
		{"198.18.0.1", reasonBenchmarking, ""},
		{"198.19.255.255", reasonBenchmarking, ""},
		{"224.0.0.1", reasonMulticast, ""},
		{"239.255.255.250", reasonMulticast, ""},
		{"240.0.0.1", reasonReserved, ""},
		{"255.255.255.254", reasonReserved, ""},
		{"255.255.255.255", reasonBroadcast, ""},

		// IPv6 special-purpose ranges.
		{"::", reasonUnspecified, ""},
		{"::1", reasonLoopback, ""},
		{"fc00::1", reasonPrivate, ""},
		{"fd12:3456::1", reasonPrivate, ""},
		{"fe80::1", reasonLinkLocal, ""},
		{"fe80::1%eth0", reasonLinkLocal, ""},
		{"febf::1", reasonLinkLocal, ""},
		{"fec0::1", reasonSiteLocal, ""},
		{"ff01::1", reasonMulticast, ""}, // interface-local
		{"ff02::1", reasonMulticast, ""}, // link-local
		{"ff05::2", reasonMulticast, ""}, // site-local
		{"ff0e::1", reasonMulticast, ""}, // global
		{"2001:db8::1", reasonDocumentation, ""},
		{"3fff::1", reasonDocumentation, ""},
		{"2001:2::1", reasonBenchmarking, ""},
		{"100::1", reasonDiscard, ""},
		{"::8.8.8.8", reasonCompatible, ""},
		{"::ffff:0:808:808", reasonTranslated, ""},
		{"64:ff9b:0:0:1::101:101", reasonReserved, ""}, // beside the /96
		{"4000::1", reasonReserved, ""},
		{"1::1", reasonReserved, ""},

		// IPv4-mapped: judged as the IPv4 address.
		{"::ffff:127.0.0.1", reasonLoopback, ""},
		{"::ffff:10.0.0.1", reasonPrivate, ""},
		{"::ffff:0.0.0.0", reasonUnspecified, ""},

		// Other embedded forms: judged by the IPv4 address they carry.
		{"::127.0.0.1", reasonLoopback, "127.0.0.1"},
		{"::10.0.0.1", reasonPrivate, "10.0.0.1"},
		{"::ffff:0:7f00:1", reasonLoopback, "127.0.0.1"},
		{"64:ff9b::7f00:1", reasonLoopback, "127.0.0.1"},
		{"64:ff9b::a00:1", reasonPrivate, "10.0.0.1"},
		{"64:ff9b::a9fe:a9fe", reasonLinkLocal, "169.254.169.254"},
		{"64:ff9b::7f00:1%eth0", reasonLoopback, "127.0.0.1"},
		{"64:ff9b:1::a00:1", reasonPrivate, "10.0.0.1"},
		{"64:ff9b:1::7f00:1", reasonLoopback, "127.0.0.1"},
		{"2002:7f00:1::1", reasonLoopback, "127.0.0.1"},
		{"2002:c0a8:101::1", reasonPrivate, "192.168.1.1"},
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", reasonLoopback, "127.0.0.1"},       // client 127.0.0.1
		{"2001:0:7f00:1:8000:63bf:fefe:fefe", reasonLoopback, "127.0.0.1"},          // server 127.0.0.1
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", reasonPrivate, "10.0.0.1"},         // client 10.0.0.1
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", reasonDocumentation, "192.0.2.45"}, // RFC 4380 example
	}
	for _, c := range cases {
		ip := netip.MustParseAddr(c.ip)
		err := Public(ip)
		if c.reason == "" {
			if err != nil {
				t.Errorf("Public(%s) = %v, want nil", c.ip, err)
			}
			continue
		}
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("Public(%s) = %v, want a *RefusedError (%s)", c.ip, err, c.reason)
			continue
		}
		var emb netip.Addr
		if c.embedded != "" {
			emb = netip.MustParseAddr(c.embedded)
		}
		if re.Addr != ip || re.Reason != c.reason || re.Embedded != emb {
			t.Errorf("Public(%s) = {%s %s %q}, want {%s %s %q}", c.ip, re.Addr, re.Embedded, re.Reason, ip, emb, c.reason)
		}
	}
	if err := Public(netip.Addr{}); err == nil {
		t.Error("Public(invalid) = nil, want an error")
	}
}

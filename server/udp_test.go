package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// A client sending each datagram to another name gets at most the
// association's lookup rate of lookups, the rest dropped and counted; a
// name that did not resolve is not looked up again within udpFailTTL.
func TestUDPLookupsBounded(t *testing.T) {
	var calls atomic.Int64
	s := &Server{ctx: context.Background(), log: slog.New(slog.DiscardHandler)}
	s.cfg.DialTimeout = time.Second
	s.cfg.Resolve = func(ctx context.Context, host string) ([]net.IP, error) {
		calls.Add(1)
		if host == "public.test" {
			return []net.IP{net.ParseIP("8.8.8.8")}, nil
		}
		if host == "private.test" {
			return []net.IP{net.ParseIP("10.1.2.3")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	r := &udpRelay{s: s, names: map[string]udpName{}}

	start := time.Now()
	const n = 1000
	for i := range n {
		if ips := r.resolve(fmt.Sprintf("n%d.test", i)); len(ips) != 0 {
			t.Fatalf("an unresolvable name resolved to %v", ips)
		}
	}
	elapsed := time.Since(start)
	limit := int64(udpLookupBurst + udpLookupRate*elapsed.Seconds() + 1)
	d := s.UDPDrops()
	if got := calls.Load(); got > limit || got < udpLookupBurst {
		t.Errorf("%d lookups for %d names in %v, want within [%d, %d]", got, n, elapsed, udpLookupBurst, limit)
	}
	if d.Unresolved+d.Limited != n || int64(d.Unresolved) != calls.Load() {
		t.Errorf("drops %+v for %d names and %d lookups", d, n, calls.Load())
	}

	// One name that does not resolve, many times: one lookup.
	time.Sleep(time.Second) // the bucket refills
	before := calls.Load()
	for range 100 {
		r.resolve("gone.test")
	}
	if got := calls.Load() - before; got != 1 {
		t.Errorf("%d lookups of one unresolvable name, want 1", got)
	}

	// A name resolving only to a refused address is refused, and
	// counted so, from the cache too; a public one resolves.
	before, refused := calls.Load(), s.UDPDrops().Refused
	for range 10 {
		if ips := r.resolve("private.test"); len(ips) != 0 {
			t.Fatalf("private.test allowed: %v", ips)
		}
	}
	if got := s.UDPDrops().Refused - refused; got != 10 {
		t.Errorf("%d refused of 10 datagrams to a private name", got)
	}
	if ips := r.resolve("public.test"); len(ips) != 1 || ips[0].String() != "8.8.8.8" {
		t.Errorf("public.test resolved to %v", ips)
	}
	if got := calls.Load() - before; got != 2 {
		t.Errorf("%d lookups of two names, want 2", got)
	}
}

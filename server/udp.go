package server

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"braid/internal/destpolicy"
	"braid/internal/socks5"
	"braid/transport"
)

// UDP relaying: each association a client opens gets one UDP socket here
// (unbound, unconnected), which sends the client's datagrams to their
// destinations and hands back the answers of those destinations, and of
// no one else (a port the association has not sent to is dropped). The
// destination policy is TCP's, checked after resolution; names are
// resolved here, never at the client, and cached for udpNameTTL.
const (
	// udpIdle ends an association that has carried nothing either way
	// for this long (RFC 4787 asks at least 2 minutes of a NAT's UDP
	// mappings).
	udpIdle = 2 * time.Minute
	// udpMaxDests bounds the destinations one association may send to,
	// udpMaxNames the names it keeps resolved.
	udpMaxDests = 256
	udpMaxNames = 64
	udpNameTTL  = 30 * time.Second
	// udpFailTTL keeps a name that did not resolve (or resolved only to
	// refused addresses) from being looked up again for this long.
	udpFailTTL = 5 * time.Second
	// udpLookupRate and udpLookupBurst bound the lookups one association
	// makes, per second and at once: a client sending each datagram to
	// another name would otherwise turn its datagram rate into the
	// concentrator's lookup rate, each lookup holding the association's
	// datagrams for up to the dial timeout. Datagrams past the bound are
	// dropped and counted (UDPDrops.Limited).
	udpLookupRate  = 20
	udpLookupBurst = 20
	// udpMaxDatagram is the largest datagram read from a destination.
	udpMaxDatagram = 64 << 10
)

// udpStats counts what the concentrator's UDP relays dropped.
type udpStats struct {
	refused, tooMany, unresolved, limited, stranger, sendErr atomic.Uint64
}

// UDPDrops counts the datagrams the concentrator's UDP relays dropped,
// since it started, by reason.
type UDPDrops struct {
	// Refused: the destination policy refused the address (or every
	// address a name resolved to), or the address was malformed.
	Refused uint64
	// TooMany: the association already sent to udpMaxDests destinations.
	TooMany uint64
	// Unresolved: the name did not resolve.
	Unresolved uint64
	// Limited: a name to look up past the association's lookup rate.
	Limited uint64
	// Stranger: an answer from an address the association never sent to.
	Stranger uint64
	// SendError: the socket refused the datagram.
	SendError uint64
}

// UDPDrops returns what the UDP relays dropped.
func (s *Server) UDPDrops() UDPDrops {
	d := &s.udpDrops
	return UDPDrops{Refused: d.refused.Load(), TooMany: d.tooMany.Load(), Unresolved: d.unresolved.Load(),
		Limited: d.limited.Load(), Stranger: d.stranger.Load(), SendError: d.sendErr.Load()}
}

// assocs serves a session's UDP associations until it ends.
func (s *Server) assocs(sess *transport.Session) {
	defer s.wg.Done()
	for {
		a, err := sess.AcceptAssociation(s.ctx)
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.assoc(sess, a)
		}()
	}
}

type udpRelay struct {
	s     *Server
	name  string // the session's, for log lines
	a     *transport.Association
	conn  *net.UDPConn
	mu    sync.Mutex
	dests map[netip.AddrPort]bool
	names map[string]udpName
	// lookups bounds the names resolved (send's goroutine only).
	lookups bucket
}

type udpName struct {
	ips        []netip.Addr // allowed by the policy
	at         time.Time
	unresolved bool // the lookup failed (ips empty)
}

// assoc relays one association until it ends, either end closes it or it
// idles.
func (s *Server) assoc(sess *transport.Session, a *transport.Association) {
	conn, err := net.ListenUDP("udp", nil)
	if err != nil {
		s.log.Warn("udp association: no socket", "session", sess.Name(), "err", err)
		a.Close()
		return
	}
	r := &udpRelay{s: s, name: sess.Name(), a: a, conn: conn, dests: map[netip.AddrPort]bool{}, names: map[string]udpName{}}
	s.log.Debug("udp association", "session", sess.Name())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.answers()
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(udpIdle / 4)
		defer t.Stop()
		for {
			select {
			case <-a.Done():
				return
			case <-s.ctx.Done():
				a.Close()
				return
			case <-t.C:
				if a.Idle() > udpIdle {
					a.CloseIdle()
					return
				}
			}
		}
	}()
	for {
		addr, payload, err := a.Recv(s.ctx)
		if err != nil {
			break
		}
		r.send(addr, payload)
	}
	a.Close()
	conn.Close()
	wg.Wait()
}

// send sends one datagram of the client's to its destination.
func (r *udpRelay) send(addr, payload []byte) {
	dest, rest, err := socks5.ParseAddr(addr)
	if err != nil || len(rest) != 0 || dest.Port == 0 {
		r.s.udpDrops.refused.Add(1)
		return
	}
	var ip netip.Addr
	if dest.IP.IsValid() {
		ip = dest.IP.Unmap()
		if err := r.s.destPolicy().Check(ip); err != nil {
			r.s.udpDrops.refused.Add(1)
			r.s.log.Debug("udp destination refused (--allow-private and --allow-own widen the policy)", "session", r.name, "dest", dest.String(), "err", err)
			return
		}
	} else {
		ips := r.resolve(dest.Name)
		if len(ips) == 0 {
			return
		}
		ip = ips[0]
	}
	to := netip.AddrPortFrom(ip, dest.Port)
	r.mu.Lock()
	if !r.dests[to] {
		if len(r.dests) >= udpMaxDests {
			r.mu.Unlock()
			r.s.udpDrops.tooMany.Add(1)
			return
		}
		r.dests[to] = true
	}
	r.mu.Unlock()
	if _, err := r.conn.WriteToUDPAddrPort(payload, to); err != nil {
		r.s.udpDrops.sendErr.Add(1)
	}
}

// resolve returns name's addresses the policy allows, from the cache
// while it is fresh.
func (r *udpRelay) resolve(name string) []netip.Addr {
	now := time.Now()
	if n, ok := r.names[name]; ok {
		if len(n.ips) > 0 && now.Sub(n.at) < udpNameTTL {
			return n.ips
		}
		if len(n.ips) == 0 && now.Sub(n.at) < udpFailTTL {
			if n.unresolved {
				r.s.udpDrops.unresolved.Add(1)
			} else {
				r.s.udpDrops.refused.Add(1)
			}
			return nil
		}
	}
	if !r.lookups.take(now) {
		r.s.udpDrops.limited.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.DialTimeout)
	found, err := r.s.cfg.Resolve(ctx, name)
	cancel()
	if len(r.names) >= udpMaxNames {
		clear(r.names)
	}
	if err != nil {
		r.s.udpDrops.unresolved.Add(1)
		r.names[name] = udpName{at: now, unresolved: true}
		return nil
	}
	var ips []netip.Addr
	policy := r.s.destPolicy()
	for _, f := range found {
		if a, ok := netip.AddrFromSlice(f); ok {
			if a = a.Unmap(); policy.Check(a) == nil {
				ips = append(ips, a)
			}
		}
	}
	if len(ips) == 0 {
		r.s.udpDrops.refused.Add(1)
		r.s.log.Debug("udp destination refused (--allow-private and --allow-own widen the policy)", "session", r.name, "dest", name)
	}
	r.names[name] = udpName{ips: ips, at: now}
	return ips
}

// bucket is a token bucket: rate tokens a second, at most burst held.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) take(now time.Time) bool {
	if b.at.IsZero() {
		b.tokens = udpLookupBurst
	} else {
		b.tokens = min(b.tokens+now.Sub(b.at).Seconds()*udpLookupRate, udpLookupBurst)
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// answers hands the destinations' datagrams back to the client, from
// destinations the association has sent to only.
func (r *udpRelay) answers() {
	buf := make([]byte, udpMaxDatagram)
	var addr []byte
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		r.mu.Lock()
		known := r.dests[from]
		r.mu.Unlock()
		if !known {
			r.s.udpDrops.stranger.Add(1)
			continue
		}
		addr, _ = socks5.AppendAddr(addr[:0], socks5.Addr{IP: from.Addr(), Port: from.Port()})
		r.a.Send(addr, buf[:n])
	}
}

// destPolicy is the destination policy in force.
func (s *Server) destPolicy() *destpolicy.Policy {
	if s.dest != nil {
		return s.dest
	}
	return &destpolicy.Policy{AllowPrivate: s.cfg.AllowPrivate, AllowOwn: s.cfg.AllowOwn}
}

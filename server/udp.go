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
	// udpMaxDatagram is the largest datagram read from a destination.
	udpMaxDatagram = 64 << 10
)

// udpStats counts what the concentrator's UDP relays dropped.
type udpStats struct {
	refused, tooMany, unresolved, stranger, sendErr atomic.Uint64
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
	sess  *transport.Session
	a     *transport.Association
	conn  *net.UDPConn
	mu    sync.Mutex
	dests map[netip.AddrPort]bool
	names map[string]udpName
}

type udpName struct {
	ips []netip.Addr // allowed by the policy
	at  time.Time
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
	r := &udpRelay{s: s, sess: sess, a: a, conn: conn, dests: map[netip.AddrPort]bool{}, names: map[string]udpName{}}
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
			r.s.log.Debug("udp destination refused (--allow-private and --allow-own widen the policy)", "session", r.sess.Name(), "dest", dest.String(), "err", err)
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
	if n, ok := r.names[name]; ok && time.Since(n.at) < udpNameTTL {
		return n.ips
	}
	ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.DialTimeout)
	found, err := r.s.cfg.Resolve(ctx, name)
	cancel()
	if err != nil {
		r.s.udpDrops.unresolved.Add(1)
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
		r.s.log.Debug("udp destination refused (--allow-private and --allow-own widen the policy)", "session", r.sess.Name(), "dest", name)
	}
	if len(r.names) >= udpMaxNames {
		clear(r.names)
	}
	r.names[name] = udpName{ips: ips, at: time.Now()}
	return ips
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

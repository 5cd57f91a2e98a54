package client

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"braid/internal/socks5"
	"braid/transport"
)

// associate serves a SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): a UDP
// relay socket on the address the application reached the proxy at, a
// transport association to the concentrator, and datagrams between them
// until the application closes its TCP connection, the concentrator ends
// the association (idle for 2 minutes) or the session goes away. Only the
// application's own host may send on the relay (the TCP connection's
// address, and the port the request named if it named one); datagrams
// from others, fragments (FRAG != 0) and malformed headers are dropped and
// counted, as most SOCKS servers do.
func (c *Client) associate(conn net.Conn, req socks5.Request) {
	conn.SetDeadline(time.Now().Add(c.cfg.ConnectTimeout + time.Second))
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
	a, err := c.openAssociation(ctx)
	cancel()
	if err != nil {
		code := replyFor(err)
		c.log.Debug("udp association refused", "code", code.String(), "err", err)
		socks5.WriteReply(conn, code, socks5.Addr{})
		return
	}
	defer a.Close()
	local, _ := conn.LocalAddr().(*net.TCPAddr)
	remote, _ := conn.RemoteAddr().(*net.TCPAddr)
	if local == nil || remote == nil {
		socks5.WriteReply(conn, socks5.GeneralFailure, socks5.Addr{})
		return
	}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP, Zone: local.Zone})
	if err != nil {
		c.log.Warn("udp association: no relay socket", "err", err)
		socks5.WriteReply(conn, socks5.GeneralFailure, socks5.Addr{})
		return
	}
	defer uc.Close()
	bound := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := socks5.WriteReply(conn, socks5.Succeeded, socks5.Addr{IP: bound.Addr().Unmap(), Port: bound.Port()}); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	r := &udpAssoc{c: c, a: a, uc: uc, host: remote.AddrPort().Addr().Unmap(), user: req.User}
	if req.Dest.Port != 0 {
		r.port = req.Dest.Port
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.fromApp()
	}()
	go func() {
		defer wg.Done()
		r.toApp()
	}()
	// The association lasts as long as the TCP connection (RFC 1928).
	go func() {
		<-a.Done()
		conn.Close()
	}()
	io.Copy(io.Discard, conn)
	a.Close()
	uc.Close()
	wg.Wait()
}

// openAssociation opens an association on the session that is up
// (onSession).
func (c *Client) openAssociation(ctx context.Context) (*transport.Association, error) {
	return onSession(c, ctx, func(sess *transport.Client) (*transport.Association, error) {
		return sess.OpenAssociation(ctx)
	})
}

type udpAssoc struct {
	c    *Client
	a    *transport.Association
	uc   *net.UDPConn
	host netip.Addr // the application's host
	port uint16     // its port, if the request named it
	user string     // the SOCKS username, for the datagrams' class
	app  atomic.Pointer[netip.AddrPort]

	// Dropped: from another host or port, fragments, malformed.
	stranger, frag, malformed atomic.Uint64
}

// fromApp carries the application's datagrams to the association.
func (r *udpAssoc) fromApp() {
	buf := make([]byte, 64<<10)
	var addr []byte
	for {
		n, from, err := r.uc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() != r.host || (r.port != 0 && from.Port() != r.port) {
			r.stranger.Add(1)
			continue
		}
		h, payload, err := socks5.ParseUDPHeader(buf[:n])
		if err != nil {
			r.malformed.Add(1)
			continue
		}
		if h.Frag != 0 {
			r.frag.Add(1)
			continue
		}
		if addr, err = socks5.AppendAddr(addr[:0], h.Addr); err != nil {
			r.malformed.Add(1)
			continue
		}
		if cur := r.app.Load(); cur == nil || *cur != from {
			at := from
			r.app.Store(&at) // answers go where the application sends from
		}
		// Each datagram is classed by its destination port and the user,
		// as a flow is (the tier's classes), and coded with its class's.
		if err := r.a.SendClass(addr, payload, r.a.Classify(h.Addr.Port, r.user)); err == transport.ErrAssociationClosed {
			return
		}
	}
}

// toApp carries the association's datagrams to the application, with
// their source in front.
func (r *udpAssoc) toApp() {
	out := make([]byte, 0, socks5.MaxUDPHeaderLen+64<<10)
	for {
		addr, payload, err := r.a.Recv(r.c.ctx)
		if err != nil {
			return
		}
		to := r.app.Load()
		if to == nil {
			continue // the application has not sent yet: nowhere to answer
		}
		src, rest, err := socks5.ParseAddr(addr)
		if err != nil || len(rest) != 0 {
			continue
		}
		b, err := socks5.AppendUDPHeader(out[:0], socks5.UDPHeader{Addr: src})
		if err != nil {
			continue
		}
		r.uc.WriteToUDPAddrPort(append(b, payload...), *to)
	}
}

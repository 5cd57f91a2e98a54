package server

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/quic-go/quic-go"
)

// A client that refuses the concentrator's key (a wrong --pin) aborts the
// TLS handshake, and quic-go never hands such a connection to Accept nor
// says why it ended. To still log one clear line on this side, every
// handshake is noted when it starts (GetConfigForClient); when the TLS
// layer is done with it, a connection from that address that did not
// reach Accept soon after was refused by the client. (A qlog tracer would
// see the client's alert, but tracing every connection costs a quarter of
// the loopback throughput.)

type remoteKey struct{}

func connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	return context.WithValue(ctx, remoteKey{}, info.RemoteAddr), nil
}

// handshakeGrace is how long after the TLS layer finishes a handshake its
// connection may take to reach Accept.
const handshakeGrace = time.Second

// watchHandshakes returns conf with the hook that notes each handshake.
func (s *Server) watchHandshakes(conf *tls.Config) *tls.Config {
	conf = conf.Clone()
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		ctx := hello.Context()
		remote, ok := ctx.Value(remoteKey{}).(net.Addr)
		if !ok {
			return nil, nil
		}
		context.AfterFunc(ctx, func() {
			time.AfterFunc(handshakeGrace, func() { s.checkHandshake(remote.String()) })
		})
		return nil, nil
	}
	return conf
}

// accepted records that a connection from remote completed its handshake.
func (s *Server) accepted(remote string) {
	s.mu.Lock()
	s.handshaken[remote] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) checkHandshake(remote string) {
	s.mu.Lock()
	_, ok := s.handshaken[remote]
	delete(s.handshaken, remote)
	closed := s.closed
	s.mu.Unlock()
	if !ok && !closed {
		s.log.Warn("client did not complete the TLS handshake: a wrong --pin, or its packets stopped arriving", "remote", remote)
	}
}

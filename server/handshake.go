package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"braid/transport/pktfec"
)

// Handshakes in progress. quic-go builds a connection's state (its size is
// in docs/BENCH.md) for every Initial it takes, before it has decrypted a
// byte, and keeps it until the handshake completes or HandshakeIdleTimeout
// (transport.QUICConfig: 3 s) passes. A flood of Initials from throwaway
// or spoofed addresses would so hold state for every packet of the last
// 3 s. The concentrator therefore counts the handshakes in progress: a
// connection counts from ConnContext, quic-go's hook just before it builds
// the state, until Accept returns it or its context ends (the handshake
// failed or timed out), whichever comes first, and exactly once.
//
//   - From RetryHandshakes in progress on, VerifySourceAddress makes every
//     new client prove its address with a stateless Retry first. quic-go
//     answers from the packet alone; a client that comes back with the
//     Retry token owns its address, and a spoofed one never comes back.
//   - At MaxHandshakes, ConnContext refuses: quic-go answers
//     CONNECTION_REFUSED, again without state, until some finish.
//
// A client that refuses the concentrator's key (a wrong --pin) aborts the
// TLS handshake, and quic-go never hands such a connection to Accept nor
// says why it ended. To still log one clear line on this side, every TLS
// handshake is noted when it starts (GetConfigForClient); when the TLS
// layer is done with it, a connection that did not reach Accept soon
// after was refused by the client. (A qlog tracer would see the client's
// alert, but tracing every connection costs throughput: docs/BENCH.md.)
// That needs no table: the mark is on the connection's own handshake
// record, so it is bounded by the handshakes in progress.

type handshakeKey struct{}

// handshake is one connection from ConnContext until Accept returns it or
// its context ends.
type handshake struct {
	remote   net.Addr
	counted  atomic.Bool // it counts in Server.handshakes
	accepted atomic.Bool // Accept returned it
	stop     func() bool // cancels the release when the context ends
}

// errTooManyHandshakes makes quic-go refuse a connection.
var errTooManyHandshakes = errors.New("too many handshakes in progress")

// floodLogEvery spaces the log lines about Retries and refusals: under a
// flood they happen thousands of times a second.
const floodLogEvery = 10 * time.Second

// connContext is quic-go's ConnContext: it is called on the listener's
// one packet-handling goroutine, for every connection quic-go is about to
// build, after VerifySourceAddress.
func (s *Server) connContext(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	if s.handshakes.Add(1) > int64(s.cfg.MaxHandshakes) {
		s.handshakes.Add(-1)
		s.refusedHandshakes.Add(1)
		s.noteFlood()
		return nil, errTooManyHandshakes
	}
	h := &handshake{remote: info.RemoteAddr}
	h.counted.Store(true)
	// quic-go cancels ctx when the connection ends, however it ends.
	h.stop = context.AfterFunc(ctx, func() { s.release(h) })
	ctx = context.WithValue(ctx, handshakeKey{}, h)
	if s.coder != nil {
		ctx = pktfec.NewContext(ctx, s.coder)
	}
	return ctx, nil
}

// verifySourceAddress is quic-go's VerifySourceAddress, asked for every
// Initial without a valid token: true sends a Retry instead of building
// a connection.
func (s *Server) verifySourceAddress(net.Addr) bool {
	if s.handshakes.Load() < int64(s.cfg.RetryHandshakes) {
		return false
	}
	s.retries.Add(1)
	s.noteFlood()
	return true
}

// accepted takes the connection whose context is ctx out of the count
// when Accept returns it.
func (s *Server) accepted(ctx context.Context) {
	h, ok := ctx.Value(handshakeKey{}).(*handshake)
	if !ok {
		return
	}
	h.accepted.Store(true)
	h.stop()
	s.release(h)
}

// release takes h out of the count, once however often it is called.
func (s *Server) release(h *handshake) {
	if h.counted.CompareAndSwap(true, false) {
		s.handshakes.Add(-1)
	}
}

// handshaking returns the number of handshakes in progress.
func (s *Server) handshaking() int { return int(s.handshakes.Load()) }

// noteFlood logs, at most every floodLogEvery, that clients are being
// sent Retries or refused.
func (s *Server) noteFlood() {
	now := time.Now().UnixNano()
	last := s.floodLogged.Load()
	if (last != 0 && now-last < int64(floodLogEvery)) || !s.floodLogged.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("many QUIC handshakes in progress: new clients must answer a Retry, and beyond the cap are refused",
		"in_progress", s.handshakes.Load(), "retry_from", s.cfg.RetryHandshakes, "max", s.cfg.MaxHandshakes,
		"retries_total", s.retries.Load(), "refused_total", s.refusedHandshakes.Load())
}

// handshakeGrace is how long after the TLS layer finishes a handshake its
// connection may take to reach Accept.
const handshakeGrace = time.Second

// watchHandshakes returns conf with the hook that notes each TLS handshake.
func (s *Server) watchHandshakes(conf *tls.Config) *tls.Config {
	conf = conf.Clone()
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		// hello's context ends when the TLS layer is done with the
		// handshake; it derives from the connection's, which holds h.
		ctx := hello.Context()
		h, ok := ctx.Value(handshakeKey{}).(*handshake)
		if !ok {
			return nil, nil
		}
		context.AfterFunc(ctx, func() {
			time.AfterFunc(handshakeGrace, func() { s.checkHandshake(h) })
		})
		return nil, nil
	}
	return conf
}

func (s *Server) checkHandshake(h *handshake) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !h.accepted.Load() && !closed {
		s.log.Warn("client did not complete the TLS handshake: a wrong --pin, or its packets stopped arriving", "remote", h.remote.String())
	}
}

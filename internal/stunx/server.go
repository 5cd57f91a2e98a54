package stunx

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
)

// Defaults of a Server's rate limit.
const (
	DefaultRate  = 20 // responses per second per source
	DefaultBurst = 20 // responses a quiet source may get at once
)

// maxTracked bounds the rate limiter's table of sources.
const maxTracked = 16384

// MaxResponseGrowth is how many bytes a response may be larger than the
// request it answers. The server's answer is header (20) + XOR-MAPPED-ADDRESS
// (12 for IPv4, 24 for IPv6) + SOFTWARE "braid" (12) + FINGERPRINT (8, only
// if the request carried one): at most 56 bytes to a bare 20-byte request
// and at most 64 to a request with FINGERPRINT (>= 28 bytes), so a response
// is never more than 36 bytes larger than its request. Together with the
// per-source rate limit this makes the server useless as a reflection
// amplifier. The server also never answers anything but a well-formed
// Binding request, so two servers cannot be made to talk to each other.
const MaxResponseGrowth = 36

// Stats counts what a Server did with the packets it read. All fields are
// updated atomically and may be read at any time. Every packet read is
// counted in Requests and, once handled, in exactly one of Answered and
// Dropped.
type Stats struct {
	Requests    atomic.Uint64 // packets read, well-formed or not
	Answered    atomic.Uint64 // Binding success responses sent
	Dropped     atomic.Uint64 // packets not answered, for any reason
	Malformed   atomic.Uint64 // of Dropped: not a well-formed STUN message
	RateLimited atomic.Uint64 // of Dropped: valid requests over the rate limit
}

// Server answers STUN Binding requests. The zero value is ready to use with
// the defaults; one Server may serve several PacketConns at once (for
// example an IPv4 and an IPv6 transport), sharing its rate limit and Stats.
// Fields must not change once serving started.
type Server struct {
	// Log receives debug messages about dropped packets; nil discards.
	Log *slog.Logger
	// Rate is the sustained number of responses per second per source;
	// zero means DefaultRate. A source is an IPv4 address or an IPv6 /64
	// (ports are not part of it: a spoofer chooses them freely).
	Rate float64
	// Burst is how many responses a source that was quiet may get at
	// once; zero means DefaultBurst.
	Burst int

	// Stats counts the server's work.
	Stats Stats

	lim limiter
}

// Serve answers STUN Binding requests arriving on pc with a Binding success
// response carrying XOR-MAPPED-ADDRESS (the request's source address) and
// SOFTWARE "braid", until ctx ends. It uses a Server with the default rate
// limit (DefaultRate per second per source, DefaultBurst at once). Malformed
// or non-STUN packets, and anything that is not a Binding request, are
// counted and dropped, never answered; see MaxResponseGrowth for the
// response size bound. It returns nil once ctx ends, or the error that made
// pc unreadable.
func Serve(ctx context.Context, pc PacketConn, log *slog.Logger) error {
	return (&Server{Log: log}).Serve(ctx, pc)
}

// Serve is like the package-level Serve with s's settings and Stats.
func (s *Server) Serve(ctx context.Context, pc PacketConn) error {
	log := s.logger()
	log.Debug("stun: serving")
	buf := make([]byte, maxPacket+1) // one spare byte reveals truncation
	c := new(codec)                  // this goroutine's, reused for every packet
	for {
		n, addr, err := pc.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			if ctx.Err() != nil {
				log.Debug("stun: stopped")
				return nil
			}
			return fmt.Errorf("stunx: serve: %w", err)
		}
		resp := s.handle(buf[:n], addrPortOf(addr), time.Now(), c)
		if resp == nil {
			continue
		}
		if _, err := pc.WriteTo(resp, addr); err != nil {
			s.Stats.Dropped.Add(1)
			log.Debug("stun: cannot send response", "to", addr, "err", err)
			continue
		}
		s.Stats.Answered.Add(1)
	}
}

// handle processes one packet b from the address from and returns the
// response to send, or nil if the packet is dropped. The response is built
// in c and valid until c's next use. It counts Requests and, when it drops,
// Dropped; the caller counts the outcome of sending. b is not modified and
// not retained.
func (s *Server) handle(b []byte, from netip.AddrPort, now time.Time, c *codec) []byte {
	s.Stats.Requests.Add(1)
	drop := func(reason string, err error) []byte {
		s.Stats.Dropped.Add(1)
		if log := s.Log; log != nil {
			log.Debug("stun: dropped packet", "from", from, "len", len(b), "reason", reason, "err", err)
		}
		return nil
	}
	m, err := c.decode(b)
	if err != nil {
		s.Stats.Malformed.Add(1)
		return drop("malformed", err)
	}
	switch {
	case m.Type == bindingIndication:
		return drop("binding indication", nil) // keepalive; never answered
	case m.Type != stun.BindingRequest:
		return drop("not a binding request", nil)
	case hasRequiredAttr(m):
		// RFC 5389 would answer 420 Unknown Attribute; braid's probers
		// never send such attributes, so staying silent costs nothing.
		return drop("comprehension-required attribute", nil)
	case !from.IsValid() || from.Port() == 0 || from.Addr().IsUnspecified() || from.Addr().IsMulticast():
		return drop("unanswerable source", nil)
	}
	if !s.lim.allow(s, from.Addr(), now) {
		s.Stats.RateLimited.Add(1)
		return drop("rate limited", nil)
	}
	resp, err := c.bindingSuccess(m, from)
	if err != nil { // cannot happen: pion's setters fail only on bad input
		return drop("cannot build response", err)
	}
	if len(resp) > len(b)+MaxResponseGrowth { // cannot happen; see MaxResponseGrowth
		return drop("response too large", nil)
	}
	return resp
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// limiter is a token bucket per source, keyed by IPv4 address or IPv6 /64.
type limiter struct {
	mu        sync.Mutex
	buckets   map[netip.Addr]bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// allow reports whether the source a may get one more response at now,
// and takes a token if so. The table holds at most maxTracked sources;
// sources whose bucket refilled completely are forgotten (they are the same
// as new ones). If the table is full of active sources, new sources are
// refused until some go quiet: under a flood of spoofed sources the server
// falls silent rather than growing without bound.
func (l *limiter) allow(s *Server, a netip.Addr, now time.Time) bool {
	rate, burst := s.Rate, float64(s.Burst)
	if rate <= 0 {
		rate = DefaultRate
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	refill := time.Duration(burst / rate * float64(time.Second)) // time to refill completely
	key := sourceKey(a)

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = make(map[netip.Addr]bucket)
		l.lastSweep = now
	}
	if since := now.Sub(l.lastSweep); since > time.Minute || (len(l.buckets) >= maxTracked && since > 100*time.Millisecond) {
		l.sweep(now, refill)
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxTracked {
			return false
		}
		b = bucket{tokens: burst, last: now}
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		l.buckets[key] = b
		return false
	}
	b.tokens--
	l.buckets[key] = b
	return true
}

// sweep forgets sources whose bucket would be full by now.
func (l *limiter) sweep(now time.Time, refill time.Duration) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if now.Sub(b.last) >= refill {
			delete(l.buckets, k)
		}
	}
}

// sourceKey is the rate-limited unit for address a: the IPv4 address, or
// the /64 an IPv6 address belongs to (one host usually owns a whole /64).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

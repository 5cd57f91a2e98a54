package server

import (
	"sync/atomic"

	"braid/transport"
)

// Reasons a join is refused, the keys of Counters.JoinsRefused: a bad
// token, the cap on all sessions, the cap on one token's sessions, a
// path for a session that does not exist (or with a wrong secret), and
// a concentrator that is draining or closing.
const (
	RefusedAuth           = "auth"
	RefusedMaxSessions    = "max_sessions"
	RefusedTokenSessions  = "token_sessions"
	RefusedUnknownSession = "unknown_session"
	RefusedShutdown       = "shutdown"
)

// JoinReasons lists the reasons, in the order of the constants.
var JoinReasons = []string{RefusedAuth, RefusedMaxSessions, RefusedTokenSessions, RefusedUnknownSession, RefusedShutdown}

// joinCounts are the concentrator's join counters; each field is
// counted once per join where the join is decided.
type joinCounts struct {
	refused [5]atomic.Uint64 // by the index of the reason in JoinReasons
	// unreadable: a connection whose join could not be read (malformed,
	// a version this concentrator does not speak, or none in time).
	unreadable atomic.Uint64
	opened     atomic.Uint64
}

// refuse counts one join refused for JoinReasons[r].
func (c *joinCounts) refuse(r int) { c.refused[r].Add(1) }

const (
	rAuth = iota
	rMaxSessions
	rTokenSessions
	rUnknownSession
	rShutdown
)

// Counters are the concentrator's counters since Start, for metrics and
// accounting at the edge: cumulative, never reset, cheap to read (atomic
// loads and one short lock for the SLA windows).
type Counters struct {
	// JoinsRefused counts refused joins by reason (JoinReasons).
	JoinsRefused map[string]uint64
	// UnreadableJoins counts connections whose join could not be read:
	// malformed, of a protocol version not spoken here, or none in time.
	UnreadableJoins uint64
	// SessionsOpened counts the sessions the concentrator opened.
	SessionsOpened uint64
	// HandshakesRefused counts QUIC handshakes refused for the cap on
	// handshakes in progress; Retries the Retry packets sent.
	HandshakesRefused, Retries uint64
	// DestinationsRefused counts flow destinations the policy refused.
	DestinationsRefused uint64
	// UDP is what the UDP relays dropped, by reason.
	UDP UDPDrops
	// SLAWindows are the SLA windows met and missed per tier and class,
	// of every session since Start (transport.SLAWindows).
	SLAWindows []transport.SLACount
	// MaxSessions is the cap on concurrent sessions.
	MaxSessions int
}

// Counters returns the concentrator's counters now.
func (s *Server) Counters() Counters {
	c := Counters{
		JoinsRefused:        make(map[string]uint64, len(JoinReasons)),
		UnreadableJoins:     s.joins.unreadable.Load(),
		SessionsOpened:      s.joins.opened.Load(),
		HandshakesRefused:   uint64(s.refusedHandshakes.Load()),
		Retries:             uint64(s.retries.Load()),
		DestinationsRefused: uint64(s.destRefused.Load()),
		UDP:                 s.UDPDrops(),
		SLAWindows:          s.cfg.Transport.SLAWindows.Counts(),
		MaxSessions:         s.cfg.MaxSessions,
	}
	for i, r := range JoinReasons {
		c.JoinsRefused[r] = s.joins.refused[i].Load()
	}
	return c
}

package transport

import (
	"braid/internal/fielderr"
	"braid/internal/tier"
	"braid/transport/wire"

	"braid/scheduler"
	"log/slog"
	"time"
)

// Config tunes one side of a session. The zero value of a field means its
// default; Fill applies the defaults and Validate checks the result.
type Config struct {
	// K is the most data shards one block is cut into (default 8). Small
	// blocks use fewer: one shard per MinShard bytes.
	K int
	// M is the parity shards added to a full block of K data shards
	// (default 0). A smaller block gets ceil(M*k/K) parity shards, at least
	// one when M > 0.
	M int
	// NoPacketCoding turns off the parity beneath QUIC (transport/pktfec):
	// connections then join with MinVersion and their packets go as QUIC
	// sends them. The client and concentrator read it to decide whether
	// to wrap their sockets.
	NoPacketCoding bool
	// NoMeasuredPacing leaves a path without a nominal rate (rate=)
	// unpaced, as before measured pacing (pathmon's bwModel): quic-go's
	// window alone then decides how fast it goes.
	NoMeasuredPacing bool
	// BlockSize is the most flow bytes one block carries (default 64 KiB).
	BlockSize int
	// InitialFlowWindow is the receive window a new flow starts with, sent
	// in the join (default 256 KiB). It grows while the flow's reader
	// keeps up, up to FlowWindow.
	InitialFlowWindow int
	// FlowWindow is the largest receive window one flow is granted, and
	// the most bytes one flow keeps sent and unacknowledged, whatever
	// credit the peer grants (default 4 MiB).
	FlowWindow int
	// SessionWindow bounds the receive windows granted to all of a
	// session's flows together (each new flow still gets its initial
	// window), and the block bytes the session keeps sent and
	// unacknowledged (default 32 MiB). Flows share it fairly: a flow's
	// window grows past its initial one only to SessionWindow/(flows+1).
	SessionWindow int
	// Budget, if not nil, bounds the bytes held by every session that
	// shares it (the concentrator's global limit); see budget.go.
	Budget *Budget
	// SLAWindows, if not nil, counts the SLA windows met and missed by
	// every session that shares it (slawindow.go).
	SLAWindows *SLAWindows
	// MaxFlows bounds concurrent flows in a session (default 1024).
	MaxFlows int
	// MaxAssociations bounds a session's UDP associations (default 64);
	// AssocQueue bounds the datagrams each holds received and not yet
	// read (default 128), past which they are dropped and counted.
	MaxAssociations, AssocQueue int
	// StreamsPerConn is the number of data streams each side opens on each
	// QUIC connection (default 4), so one lost packet stalls only the shards
	// behind it on one stream.
	StreamsPerConn int
	// ProbeInterval is how often each connection is pinged (default 50 ms).
	ProbeInterval time.Duration
	// DownAfter is the least silence after which a connection counts as down
	// (default 200 ms); the effective limit is max(DownAfter, 3*SRTT+100ms).
	DownAfter time.Duration
	// UpAfter is how long a connection that went down must answer every
	// probe before it carries data again (default 1 s): a flapping link does
	// not whipsaw the traffic.
	UpAfter time.Duration
	// RedialAfter is how long a client connection that went down may stay
	// silent before it is closed and dialed afresh (default 1 s); the old
	// one may still come back within it.
	RedialAfter time.Duration
	// Grace is how long a session and its flows wait with no live path
	// before they fail (default 30 s).
	Grace time.Duration
	// Policy names the scheduling policy (scheduler.New): weighted (the
	// default; cheapest when paths have prices, see PricedPolicy),
	// bestvalue, cheapest, minrtt, roundrobin, duplicate or single:PATH.
	Policy string
	// Terms are what the session's user buys, read by the bestvalue
	// planner; Session.SetTerms changes them.
	Terms Terms
	// Tier, at the concentrator, is the user's tier: it sets Terms (its
	// default class) and is pushed to the client in a TIER message when
	// each connection joins, so the client plans its uploads by it.
	Tier *tier.Tier
	// Device is the client device's profile, sent in its joins (client
	// side); the concentrator takes it from the first join.
	Device wire.Device
	// Prices are the USD per GB of paths that report no price, by medium
	// (MediumX), at the concentrator.
	Prices map[uint8]float64
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Terms are the economics and promise the bestvalue planner plans for:
// revenue per GB of the user's tier, its SLA, and the client device.
type Terms struct {
	// Tier names the user's tier, for logs and status.
	Tier      string
	RevenueGB float64
	// SLA is the default class's SLA when Classes is empty.
	SLA scheduler.SLA
	// Classes are the tier's traffic classes, the default one first;
	// flows name theirs when they open (Session.OpenFlowClass).
	Classes []ClassTerms
	Profile scheduler.Profile
}

// ClassTerms is one traffic class's SLA.
type ClassTerms struct {
	Name string
	SLA  scheduler.SLA
}

// MinShard is the smallest shard a block is cut into, so tiny writes are
// not split into tiny shards.
const MinShard = 1024

// maxBlocksInFlight bounds a flow's unacknowledged blocks, and so the state
// a receiver keeps for blocks that wait on an earlier one.
const maxBlocksInFlight = 4096

// Fill sets the defaults of zero fields.
func (c *Config) Fill() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.K, 8)
	def(&c.BlockSize, 64<<10)
	def(&c.InitialFlowWindow, 256<<10)
	def(&c.FlowWindow, 4<<20)
	def(&c.SessionWindow, 32<<20)
	def(&c.MaxFlows, 1024)
	def(&c.MaxAssociations, 64)
	def(&c.AssocQueue, 128)
	def(&c.StreamsPerConn, 4)
	defDur(&c.ProbeInterval, 50*time.Millisecond)
	defDur(&c.DownAfter, 200*time.Millisecond)
	defDur(&c.UpAfter, time.Second)
	defDur(&c.RedialAfter, time.Second)
	defDur(&c.Grace, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ConfigError names the field of a Config that is wrong and why.
type ConfigError = fielderr.Error

// Validate checks a filled Config.
func (c *Config) Validate() error {
	switch {
	case c.K < 1 || c.K > wire.MaxShards:
		return fielderr.Errorf("k", "%d is outside 1..%d", c.K, wire.MaxShards)
	case c.M < 0 || c.K+c.M > wire.MaxShards:
		return fielderr.Errorf("m", "%d: k+m must be at most %d", c.M, wire.MaxShards)
	case c.BlockSize < MinShard || c.BlockSize > c.K*wire.MaxShardSize:
		return fielderr.Errorf("block-size", "%d is outside %d..%d", c.BlockSize, MinShard, c.K*wire.MaxShardSize)
	case c.InitialFlowWindow < minPeerWindow || c.InitialFlowWindow > c.FlowWindow:
		return fielderr.Errorf("initial-flow-window", "%d is outside %d..%d (the flow window)", c.InitialFlowWindow, minPeerWindow, c.FlowWindow)
	case c.FlowWindow < c.BlockSize:
		return fielderr.Errorf("flow-window", "%d is smaller than the block size %d", c.FlowWindow, c.BlockSize)
	case c.FlowWindow > 1<<30:
		return fielderr.Errorf("flow-window", "%d is more than 1 GiB", c.FlowWindow)
	case c.SessionWindow < c.FlowWindow || c.SessionWindow > 1<<40:
		if c.SessionWindow > 1<<40 {
			return fielderr.Errorf("session-window", "%d is more than 1 TiB", c.SessionWindow)
		}
		return fielderr.Errorf("session-window", "%d is smaller than the flow window %d", c.SessionWindow, c.FlowWindow)
	case c.MaxFlows < 1:
		return fielderr.New("max-flows", "must be at least 1")
	case c.MaxAssociations < 1 || c.MaxAssociations > 1<<16:
		return fielderr.Errorf("max-associations", "%d is outside 1..65536", c.MaxAssociations)
	case c.AssocQueue < 1 || c.AssocQueue > 1<<16:
		return fielderr.Errorf("assoc-queue", "%d is outside 1..65536", c.AssocQueue)
	case c.StreamsPerConn < 1 || c.StreamsPerConn > 64:
		return fielderr.Errorf("streams-per-conn", "%d is outside 1..64", c.StreamsPerConn)
	case c.ProbeInterval < time.Millisecond:
		return fielderr.New("probe-interval", "must be at least 1ms")
	case c.Grace < 0:
		return fielderr.New("grace", "must not be negative")
	}
	if _, err := scheduler.New(c.Policy, c.K, c.M, MinShard); err != nil {
		return fielderr.New("policy", err.Error())
	}
	if c.Policy == "duplicate" && c.BlockSize > wire.MaxShardSize {
		return fielderr.Errorf("block-size", "%d: duplicate sends whole blocks as single shards of at most %d bytes", c.BlockSize, wire.MaxShardSize)
	}
	return nil
}

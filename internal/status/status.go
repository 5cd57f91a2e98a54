// Package status is braid's status document: what the client (and the
// concentrator, per session) knows about each path, served as JSON on a
// loopback HTTP address and printed by `braid status`.
package status

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"braid/transport"
	"braid/transport/wire"
)

// Path is one path's status. Field names are a contract (docs/STATUS.md).
type Path struct {
	Name     string  `json:"name"`
	State    string  `json:"state"`
	Medium   string  `json:"medium"`
	Operator string  `json:"operator"`
	Conns    int     `json:"conns"`
	RTTMs    float64 `json:"rtt_ms"`
	RTTP99Ms float64 `json:"rtt_p99_ms"`
	JitterMs float64 `json:"jitter_ms"`
	Loss     float64 `json:"loss"`
	// Packet coding: LinkLoss before repair; Parity is parity packets
	// sent per data packet; Repaired the packets rebuilt here. All null
	// when no connection of the path codes.
	LinkLoss *float64 `json:"link_loss"`
	Parity   *float64 `json:"parity"`
	Repaired *uint64  `json:"repaired"`
	// ParityHeld says why no parity is sent though the peer measures
	// loss: "queue" or "full" (docs/STATUS.md); "" when none holds it.
	ParityHeld  string  `json:"parity_held"`
	DeliveryBps float64 `json:"delivery_bps"`
	// PaceBps is the rate the path is paced to; null while it is not.
	PaceBps       *float64 `json:"pace_bps"`
	MappedAddr    *string  `json:"mapped_addr"`
	BytesSent     uint64   `json:"bytes_sent"`
	BytesReceived uint64   `json:"bytes_received"`
	CostUSD       float64  `json:"cost_usd"`
}

// Client is the client's status document.
type Client struct {
	// Session is "up" while a session with the concentrator carries the
	// flows, "connecting" while the client (re)joins, and "stopped" once
	// the client has given up (a refused token or pin).
	Session string `json:"session"`
	// SessionError says why the last join failed or the last session
	// ended; empty when neither happened since the session came up.
	SessionError string `json:"session_error,omitempty"`
	// Sessions counts the sessions opened since the client started.
	Sessions int    `json:"sessions"`
	Paths    []Path `json:"paths"`
	Flows    int    `json:"flows"`
	// Plans are the bestvalue plans for uploads, one per traffic class,
	// the default class first; absent under other policies.
	Plans []Plan `json:"plans,omitempty"`
}

// Session is one session's status at the concentrator.
type Session struct {
	ID    string `json:"id"`
	Paths []Path `json:"paths"`
	Flows int    `json:"flows"`
	// Plans are the bestvalue plans for downloads, one per traffic
	// class; absent under other policies.
	Plans []Plan `json:"plans,omitempty"`
}

// Plan is the bestvalue plan in force and its explanation.
type Plan struct {
	Tier           string         `json:"tier"`
	Class          string         `json:"class"`
	K              int            `json:"k"`
	M              int            `json:"m"`
	Shards         map[string]int `json:"shards"`
	ShardBytes     int            `json:"shard_bytes"`
	Compress       bool           `json:"compress"`
	GoodputBps     float64        `json:"goodput_bps"`
	CapacityBps    float64        `json:"capacity_bps"`
	P99Ms          float64        `json:"p99_ms"`
	ResidualLoss   float64        `json:"residual_loss"`
	Survives       int            `json:"survives"`
	CostUSDPerGB   float64        `json:"cost_usd_per_gb"`
	ProfitUSDPerH  float64        `json:"profit_usd_per_h"`
	Binding        string         `json:"binding"`
	SLAMet         bool           `json:"sla_met"`
	Relaxed        []string       `json:"relaxed"`
	Since          time.Time      `json:"since"`
	Changes        uint64         `json:"changes"`
	ViolationTicks uint64         `json:"violation_ticks"`
	Text           string         `json:"text"`
}

// SessionPlans converts the session's plans; nil when it has none.
func SessionPlans(s *transport.Session) []Plan {
	var out []Plan
	tier := s.Terms().Tier
	for _, pi := range s.Plans() {
		p := &pi.Plan
		sp := Plan{Tier: tier, Class: pi.Class, K: p.K, M: p.M, Shards: map[string]int{}, ShardBytes: p.ShardSize,
			Compress: p.Compress, GoodputBps: p.Goodput * 8, CapacityBps: p.Capacity * 8, P99Ms: ms(p.P99),
			ResidualLoss: p.ResidualLoss, Survives: p.Survives, CostUSDPerGB: p.CostGB, ProfitUSDPerH: p.Profit * 3600,
			Binding: p.Binding, SLAMet: p.Feasible, Relaxed: append([]string{}, p.Relaxed...), Since: p.At,
			Changes: pi.Changes, ViolationTicks: pi.Violations, Text: p.String()}
		for i, n := range p.Shards {
			if n > 0 && i < len(p.Names) {
				sp.Shards[p.Names[i]] = n
			}
		}
		out = append(out, sp)
	}
	return out
}

// Server is the concentrator's status document.
type Server struct {
	Sessions []Session `json:"sessions"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// FromStats converts a path's monitor snapshot. mapped is the path's
// public address as STUN saw it, or "" when unknown.
func FromStats(s transport.PathStats, mapped string) Path {
	op := "own"
	if s.Operator == wire.OperatorPartner {
		op = "partner"
	}
	p := Path{Name: s.Name, State: s.State.String(), Medium: wire.MediumName(s.Medium), Operator: op, Conns: s.Conns,
		RTTMs: ms(s.RTT), RTTP99Ms: ms(s.RTTP99), JitterMs: ms(s.Jitter), Loss: s.Loss, DeliveryBps: s.DeliveryBps,
		BytesSent: s.BytesSent, BytesReceived: s.BytesReceived,
		CostUSD: float64(s.BytesSent+s.BytesReceived) / 1e9 * s.PriceGB}
	if mapped != "" {
		p.MappedAddr = &mapped
	}
	if s.PaceBps > 0 {
		pace := s.PaceBps
		p.PaceBps = &pace
	}
	if s.Coded > 0 {
		ll, rep := s.LinkLoss, s.Repaired
		par := 0.0
		if s.DataPackets > 0 {
			par = float64(s.ParityPackets) / float64(s.DataPackets)
		}
		p.LinkLoss, p.Parity, p.Repaired = &ll, &par, &rep
		p.ParityHeld = s.ParityHeld
	}
	return p
}

// SessionPaths returns the status of every path of a session, by name.
func SessionPaths(s *transport.Session, mapped func(name string) string) []Path {
	var out []Path
	for _, p := range s.Paths() {
		m := ""
		if mapped != nil {
			m = mapped(p.Name())
		}
		out = append(out, FromStats(p.Stats(), m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Handler serves GET /status with the document doc returns.
func Handler(doc func() any) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(doc())
	})
	return mux
}

// WriteTable prints paths as an aligned table.
func WriteTable(w io.Writer, paths []Path, flows int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tSTATE\tMEDIUM\tOPERATOR\tRTT\tP99\tJITTER\tLOSS\tLINK LOSS\tPARITY\tDELIVERY\tPACE\tSENT\tRECEIVED\tCOST\tMAPPED")
	for _, p := range paths {
		mapped := "-"
		if p.MappedAddr != nil {
			mapped = *p.MappedAddr
		}
		link, parity := "-", "-"
		if p.LinkLoss != nil && p.Parity != nil {
			link, parity = fmt.Sprintf("%.2f%%", *p.LinkLoss*100), fmt.Sprintf("%.1f%%", *p.Parity*100)
			if p.ParityHeld != "" {
				parity += " (held: " + p.ParityHeld + ")"
			}
		}
		pace := "-"
		if p.PaceBps != nil {
			pace = bits(*p.PaceBps)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f ms\t%.1f ms\t%.1f ms\t%.2f%%\t%s\t%s\t%s\t%s\t%s\t%s\t$%.4f\t%s\n",
			p.Name, p.State, p.Medium, p.Operator, p.RTTMs, p.RTTP99Ms, p.JitterMs, p.Loss*100, link, parity,
			bits(p.DeliveryBps), pace, size(p.BytesSent), size(p.BytesReceived), p.CostUSD, mapped)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d flow(s)\n", flows)
}

func bits(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	}
	return fmt.Sprintf("%.0f kbit/s", bps/1e3)
}

func size(b uint64) string {
	units := []string{"B", "KB", "MB", "GB", "TB"}
	f := float64(b)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", f), ".0") + " " + units[i]
}

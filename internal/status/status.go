// Package status is braid's status document: what the client (and the
// concentrator, per session) knows about each path, served as JSON on a
// loopback HTTP address and printed by `braid status`.
package status

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
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
	// CostUSD counts shard and probe bytes, both ways, at the path's
	// price.
	CostUSD float64 `json:"cost_usd"`

	// UploadBps and DownloadBps are the shard bytes the path carried
	// from the client to the concentrator and back over about the last
	// second, in bits/s (the same on both ends); UploadShare and
	// DownloadShare its part of the session's, 0 to 1 (0 when nothing
	// moves that way).
	UploadBps     float64 `json:"upload_bps"`
	DownloadBps   float64 `json:"download_bps"`
	UploadShare   float64 `json:"upload_share"`
	DownloadShare float64 `json:"download_share"`
	// ProbeBytesSent and ProbeBytesReceived are what the path's
	// connections carried while it carried no shards (probes, their
	// acknowledgements, control), with UDP and IP headers; SlowProbing
	// says its probes go every second, not every 50 ms: the path costs
	// and is idle.
	ProbeBytesSent     uint64 `json:"probe_bytes_sent"`
	ProbeBytesReceived uint64 `json:"probe_bytes_received"`
	SlowProbing        bool   `json:"slow_probing"`
	// Idle is true for an up path that carries nothing now because the
	// scheduler leaves it so (the plan gives it no shard); Why says why
	// the path is in its state, or why it is idle ("" when it is up and
	// used).
	Idle bool   `json:"idle"`
	Why  string `json:"why"`
}

// Summary is what a status document says of a session as a whole. Its
// fields are absent while the client has no session.
type Summary struct {
	// Scheduler is the policy that spreads what this side sends
	// (--scheduler, or the default it took); Tier the user's tier, ""
	// without one.
	Scheduler string `json:"scheduler,omitempty"`
	Tier      string `json:"tier,omitempty"`
	// Started is when the session began, UptimeS its age in seconds.
	Started *time.Time `json:"started,omitempty"`
	UptimeS float64    `json:"uptime_s,omitempty"`
	Totals  *Totals    `json:"totals,omitempty"`
	// FlowsByClass counts the open flows by traffic class (absent when
	// there are none).
	FlowsByClass map[string]int `json:"flows_by_class,omitempty"`
	// UDP is the session's UDP associations and what its datagrams did;
	// absent when it has carried none.
	UDP *UDP `json:"udp,omitempty"`
}

// UDP is a session's datagram counters (this end's: what it sent and
// what it received) and each class's datagram plan.
type UDP struct {
	Associations int `json:"associations"`
	// Sent counts coded data datagrams sent, Parity the parity and
	// copies sent beside them; Delivered those received and handed on
	// as they came, Repaired those rebuilt from parity or taken from a
	// copy before their own arrived; Duplicate the second arrivals;
	// Late those past their class's deadline or the receiver's window;
	// QueueFull those dropped at a full connection queue; Unrepaired
	// the data of groups that closed short with too little parity.
	Sent       uint64 `json:"sent"`
	Parity     uint64 `json:"parity"`
	Delivered  uint64 `json:"delivered"`
	Repaired   uint64 `json:"repaired"`
	Duplicate  uint64 `json:"duplicate"`
	Late       uint64 `json:"late"`
	QueueFull  uint64 `json:"queue_full"`
	Unrepaired uint64 `json:"unrepaired"`
	// Plans are the datagram plans in force, one per class that sent.
	Plans []UDPPlan `json:"plans,omitempty"`
}

// UDPPlan is one class's datagram plan (scheduler.DatagramPlan).
type UDPPlan struct {
	Class        string         `json:"class"`
	Kind         string         `json:"kind"`
	K            int            `json:"k"`
	M            int            `json:"m"`
	Shards       map[string]int `json:"shards"`
	DelayMs      float64        `json:"delay_ms"`
	RepairMs     float64        `json:"repair_ms"`
	ResidualLoss float64        `json:"residual_loss"`
	Survives     int            `json:"survives"`
	CostUSDPerGB float64        `json:"cost_usd_per_gb"`
	Binding      string         `json:"binding"`
	SLAMet       bool           `json:"sla_met"`
	Relaxed      []string       `json:"relaxed"`
	Text         string         `json:"text"`
}

// SessionUDP describes s's datagrams; nil when it has carried none.
func SessionUDP(s *transport.Session) *UDP {
	ds := s.DatagramStats()
	u := &UDP{Associations: s.NumAssociations(), Sent: ds.Sent.Load(), Parity: ds.Parity.Load(),
		Delivered: ds.Delivered.Load(), Repaired: ds.Repaired.Load(), Duplicate: ds.Duplicate.Load(),
		Late: ds.Late.Load(), QueueFull: ds.QueueFull.Load(), Unrepaired: ds.Unrepaired.Load()}
	if u.Associations == 0 && u.Sent == 0 && u.Delivered == 0 && u.Repaired == 0 {
		return nil
	}
	terms := s.Terms()
	plans := s.DatagramPlans()
	for _, class := range slices.Sorted(maps.Keys(plans)) {
		p := plans[class]
		name := "default"
		if class > 0 && class < len(terms.Classes) {
			name = terms.Classes[class].Name
		} else if class > 0 {
			name = fmt.Sprint(class)
		}
		up := UDPPlan{Class: name, Kind: p.Kind(), K: p.K, M: p.M, Shards: map[string]int{}, DelayMs: ms(p.Delay),
			RepairMs: ms(p.RepairDelay), ResidualLoss: p.ResidualLoss, Survives: p.Survives, CostUSDPerGB: p.CostGB,
			Binding: p.Binding, SLAMet: p.Feasible, Relaxed: append([]string{}, p.Relaxed...), Text: p.String()}
		for i, n := range p.Shards {
			if n > 0 && i < len(p.Names) {
				up.Shards[p.Names[i]] = n
			}
		}
		u.Plans = append(u.Plans, up)
	}
	return u
}

// Totals add up a session's paths.
type Totals struct {
	// BytesUp and BytesDown are the shard bytes from the client to the
	// concentrator and back; ProbeBytes what probing idle paths cost
	// (both ways); CostUSD the cost of it all.
	BytesUp    uint64  `json:"bytes_up"`
	BytesDown  uint64  `json:"bytes_down"`
	ProbeBytes uint64  `json:"probe_bytes"`
	CostUSD    float64 `json:"cost_usd"`
	// UploadBps and DownloadBps are the session's current rates.
	UploadBps   float64 `json:"upload_bps"`
	DownloadBps float64 `json:"download_bps"`
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
	// ID names the session (Session.Name), absent while there is none.
	ID string `json:"id,omitempty"`
	Summary
}

// Session is one session's status at the concentrator.
type Session struct {
	ID    string `json:"id"`
	Paths []Path `json:"paths"`
	Flows int    `json:"flows"`
	// Plans are the bestvalue plans for downloads, one per traffic
	// class; absent under other policies.
	Plans []Plan `json:"plans,omitempty"`
	Summary
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
	// UDPDropped counts, since the concentrator started, the datagrams
	// its UDP relays dropped, by reason (absent from a concentrator too
	// old to say).
	UDPDropped *UDPDropped `json:"udp_dropped,omitempty"`
}

// UDPDropped is server.UDPDrops as the status page shows it.
type UDPDropped struct {
	Refused    uint64 `json:"refused"`    // the destination policy refused the address
	TooMany    uint64 `json:"too_many"`   // past an association's destination limit
	Unresolved uint64 `json:"unresolved"` // the name did not resolve
	Limited    uint64 `json:"limited"`    // past an association's lookup rate
	Stranger   uint64 `json:"stranger"`   // an answer from an address never sent to
	SendError  uint64 `json:"send_error"` // the socket refused the datagram
}

// Total is the sum over reasons.
func (u *UDPDropped) Total() uint64 {
	return u.Refused + u.TooMany + u.Unresolved + u.Limited + u.Stranger + u.SendError
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// FromStats converts a path's monitor snapshot, as the client sees it.
// mapped is the path's public address as STUN saw it, or "" when
// unknown.
func FromStats(s transport.PathStats, mapped string) Path { return fromStats(s, mapped, true) }

// fromStats converts a snapshot taken at the client, or at the
// concentrator (client false: what it sends goes down).
func fromStats(s transport.PathStats, mapped string, client bool) Path {
	op := "own"
	if s.Operator == wire.OperatorPartner {
		op = "partner"
	}
	p := Path{Name: s.Name, State: s.State.String(), Medium: wire.MediumName(s.Medium), Operator: op, Conns: s.Conns,
		RTTMs: ms(s.RTT), RTTP99Ms: ms(s.RTTP99), JitterMs: ms(s.Jitter), Loss: s.Loss, DeliveryBps: s.DeliveryBps,
		BytesSent: s.BytesSent, BytesReceived: s.BytesReceived,
		ProbeBytesSent: s.ProbeBytesSent, ProbeBytesReceived: s.ProbeBytesReceived, SlowProbing: s.SlowProbing > 0,
		UploadBps: s.SendBps, DownloadBps: s.ReceiveBps, Why: s.Why,
		CostUSD: float64(s.BytesSent+s.BytesReceived+s.ProbeBytesSent+s.ProbeBytesReceived) / 1e9 * s.PriceGB}
	if !client {
		p.UploadBps, p.DownloadBps = s.ReceiveBps, s.SendBps
	}
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

// SessionPaths returns the status of every path of a session, by name,
// with each one's share of the session's traffic.
func SessionPaths(s *transport.Session, mapped func(name string) string) []Path {
	out := []Path{}
	for _, p := range s.Paths() {
		m := ""
		if mapped != nil {
			m = mapped(p.Name())
		}
		out = append(out, fromStats(p.Stats(), m, s.IsClient()))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	Shares(out)
	return out
}

// Shares sets each path's share of the paths' current rates.
func Shares(paths []Path) {
	var up, down float64
	for i := range paths {
		up += paths[i].UploadBps
		down += paths[i].DownloadBps
	}
	for i := range paths {
		paths[i].UploadShare, paths[i].DownloadShare = 0, 0
		if up > 0 {
			paths[i].UploadShare = paths[i].UploadBps / up
		}
		if down > 0 {
			paths[i].DownloadShare = paths[i].DownloadBps / down
		}
	}
}

// Explain marks the up paths that carry nothing now because the
// scheduler leaves them idle, and says why: a plan (plans, the default
// class first) that gives a path no shard, or the scheduler's rule
// (cheapest, single:PATH). A path that is down or degraded keeps its own
// why.
func Explain(paths []Path, plans []Plan, scheduler string) {
	for i := range paths {
		p := &paths[i]
		p.Idle = false
		if p.State != "up" {
			continue
		}
		why := ""
		switch {
		case p.UploadBps+p.DownloadBps > 0:
			// It carries traffic (the last plan's, or re-sends): not idle.
		case len(plans) > 0:
			used := false
			for _, pl := range plans {
				used = used || pl.Shards[p.Name] > 0
			}
			if !used {
				why = "the plan leaves it idle"
				if b := plans[0].Binding; b != "" {
					why += " (binds: " + b + ")"
				}
			}
		case strings.HasPrefix(scheduler, "single:") && scheduler != "single:"+p.Name:
			why = "the scheduler sends only on " + strings.TrimPrefix(scheduler, "single:")
		case scheduler == "cheapest" && cheaperBusy(paths, p):
			why = "cheaper paths carry the traffic while they have room (cheapest)"
		}
		if why != "" {
			p.Idle = true
			if p.SlowProbing {
				why += "; probed every second"
			}
		} else if p.SlowProbing {
			why = "no traffic: probed every second"
		}
		p.Why = why
	}
}

// cheaperBusy reports whether a path cheaper than p carries traffic now.
func cheaperBusy(paths []Path, p *Path) bool {
	for i := range paths {
		q := &paths[i]
		if q.Name != p.Name && q.price() < p.price() && q.UploadBps+q.DownloadBps > 0 {
			return true
		}
	}
	return false
}

// price is the path's price per GB, from its cost and bytes (the
// document carries no price of its own); 0 before it carried any.
func (p *Path) price() float64 {
	b := p.BytesSent + p.BytesReceived + p.ProbeBytesSent + p.ProbeBytesReceived
	if b == 0 {
		return 0
	}
	return p.CostUSD / float64(b) * 1e9
}

// Describe returns a live session's paths, plans and summary, with the
// paths' shares and why each is idle.
func Describe(s *transport.Session, mapped func(name string) string, now time.Time) ([]Path, []Plan, Summary) {
	paths := SessionPaths(s, mapped)
	plans := SessionPlans(s)
	scheduler := s.PolicyName()
	Explain(paths, plans, scheduler)
	started := s.Started()
	sum := Summary{Scheduler: scheduler, Tier: s.Terms().Tier, Started: &started,
		UptimeS: math.Round(now.Sub(started).Seconds()*10) / 10, Totals: Total(paths, s.IsClient()), UDP: SessionUDP(s)}
	terms := s.Terms()
	for class, n := range s.FlowsByClass() {
		name := "default"
		if class > 0 && class < len(terms.Classes) {
			name = terms.Classes[class].Name
		} else if class > 0 {
			name = fmt.Sprint(class)
		}
		if sum.FlowsByClass == nil {
			sum.FlowsByClass = map[string]int{}
		}
		sum.FlowsByClass[name] += n
	}
	return paths, plans, sum
}

// Total adds up the paths of a session; client says which end's
// document they are from.
func Total(paths []Path, client bool) *Totals {
	t := &Totals{}
	for _, p := range paths {
		up, down := p.BytesSent, p.BytesReceived
		if !client {
			up, down = down, up
		}
		t.BytesUp += up
		t.BytesDown += down
		t.ProbeBytes += p.ProbeBytesSent + p.ProbeBytesReceived
		t.CostUSD += p.CostUSD
		t.UploadBps += p.UploadBps
		t.DownloadBps += p.DownloadBps
	}
	return t
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

// WriteClient prints the client's document: the session, its totals,
// a table of its paths and the plans in force.
func WriteClient(w io.Writer, doc *Client) {
	switch {
	case doc.Session != "up":
		fmt.Fprintf(w, "session %s (%d opened since the client started)", doc.Session, doc.Sessions)
		if doc.SessionError != "" {
			fmt.Fprintf(w, ": %s", doc.SessionError)
		}
		fmt.Fprintln(w)
		return
	case doc.ID != "":
		fmt.Fprintf(w, "session %s up", doc.ID)
	default:
		fmt.Fprint(w, "session up")
	}
	writeSession(w, doc.Paths, doc.Flows, doc.Plans, &doc.Summary)
}

// WriteServer prints the concentrator's document, session by session.
func WriteServer(w io.Writer, doc *Server) {
	if u := doc.UDPDropped; u != nil && u.Total() > 0 {
		fmt.Fprintf(w, "UDP datagrams dropped since start: %d refused, %d past the destination limit, %d unresolved, "+
			"%d past the lookup rate, %d from strangers, %d send errors\n\n",
			u.Refused, u.TooMany, u.Unresolved, u.Limited, u.Stranger, u.SendError)
	}
	if len(doc.Sessions) == 0 {
		fmt.Fprintln(w, "no sessions")
		return
	}
	for i := range doc.Sessions {
		ss := &doc.Sessions[i]
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "session %s", ss.ID)
		writeSession(w, ss.Paths, ss.Flows, ss.Plans, &ss.Summary)
	}
}

func writeSession(w io.Writer, paths []Path, flows int, plans []Plan, sum *Summary) {
	if sum.UptimeS > 0 {
		fmt.Fprintf(w, " for %v", (time.Duration(sum.UptimeS*10) * time.Second / 10).Round(time.Second))
	}
	if sum.Scheduler != "" {
		fmt.Fprintf(w, ", scheduler %s", sum.Scheduler)
	}
	tier := sum.Tier
	if tier == "" {
		tier = "none"
	}
	fmt.Fprintf(w, ", tier %s, %d flow(s)", tier, flows)
	if len(sum.FlowsByClass) > 0 {
		var cl []string
		for _, name := range slices.Sorted(maps.Keys(sum.FlowsByClass)) {
			cl = append(cl, fmt.Sprintf("%s %d", name, sum.FlowsByClass[name]))
		}
		fmt.Fprintf(w, " (%s)", strings.Join(cl, ", "))
	}
	fmt.Fprintln(w)
	if t := sum.Totals; t != nil {
		fmt.Fprintf(w, "now: up %s, down %s; total: up %s, down %s, probing %s, cost $%.4f\n",
			bits(t.UploadBps), bits(t.DownloadBps), size(t.BytesUp), size(t.BytesDown), size(t.ProbeBytes), t.CostUSD)
	}
	fmt.Fprintln(w)
	WriteTable(w, paths, flows)
	for _, p := range plans {
		tier := p.Tier
		if tier == "" {
			tier = "none"
		}
		fmt.Fprintf(w, "plan for class %s (tier %s), since %s, %d change(s):\n  %s\n", p.Class, tier,
			p.Since.UTC().Format(time.TimeOnly), p.Changes, p.Text)
	}
	if u := sum.UDP; u != nil {
		fmt.Fprintf(w, "udp: %d association(s); sent %d (+%d parity), delivered %d, repaired %d, duplicate %d, late %d, queue full %d, unrepaired %d\n",
			u.Associations, u.Sent, u.Parity, u.Delivered, u.Repaired, u.Duplicate, u.Late, u.QueueFull, u.Unrepaired)
		for _, p := range u.Plans {
			fmt.Fprintf(w, "datagram plan for class %s:\n  %s\n", p.Class, p.Text)
		}
	}
}

// WriteTable prints paths as an aligned table. UP and DOWN are the
// current rates from the client to the concentrator and back, with each
// path's share.
func WriteTable(w io.Writer, paths []Path, flows int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tSTATE\tUP\tDOWN\tMEDIUM\tOPERATOR\tRTT\tP99\tJITTER\tLOSS\tLINK LOSS\tPARITY\tDELIVERY\tPACE\tSENT\tRECEIVED\tCOST\tMAPPED\tWHY")
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
		state := p.State
		if p.Idle {
			state = "idle"
		}
		why := p.Why
		if why == "" {
			why = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.1f ms\t%.1f ms\t%.1f ms\t%.2f%%\t%s\t%s\t%s\t%s\t%s\t%s\t$%.4f\t%s\t%s\n",
			p.Name, state, rateShare(p.UploadBps, p.UploadShare), rateShare(p.DownloadBps, p.DownloadShare),
			p.Medium, p.Operator, p.RTTMs, p.RTTP99Ms, p.JitterMs, p.Loss*100, link, parity,
			bits(p.DeliveryBps), pace, size(p.BytesSent), size(p.BytesReceived), p.CostUSD, mapped, why)
	}
	tw.Flush()
}

// rateShare prints a rate and its share, "-" when nothing moves.
func rateShare(bps, share float64) string {
	if bps == 0 {
		return "-"
	}
	return fmt.Sprintf("%s %.0f%%", bits(bps), share*100)
}

func bits(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.0f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
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

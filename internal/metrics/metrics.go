// Package metrics exports braid's state to Prometheus: a Collector that,
// at scrape time, reads the same snapshot the status page reads (each
// session's paths, plans and held bytes, and the concentrator's counters)
// and turns it into const metrics. Nothing here runs on the data path: a
// scrape costs what one status page costs, and nothing between scrapes.
//
// Only the edge (cmd/braid) links this package and client_golang;
// internal/deptest keeps Prometheus out of transport, scheduler, client
// and server. docs/OPERATIONS.md lists every metric.
//
// Label sets are bounded: session (the session's name, at most the
// concentrator's --max-sessions of them, one at the client), path (the
// client's path names, at most 16 per session), class (the tier's
// traffic classes), state, binding and reason (fixed lists below). No
// label names a flow, a destination or a token.
package metrics

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"braid/internal/netx"
	"braid/internal/status"
)

// Snapshot is what one scrape reads.
type Snapshot struct {
	Sessions []Session
	// Client is set at the client, Server at the concentrator; the other
	// is nil.
	Client *ClientCounters
	Server *ServerCounters
	// SLAWindows are the SLA windows met and missed per tier and class
	// since the process started (transport.SLAWindows), all sessions'.
	SLAWindows []SLAWindow
}

// SLAWindow is one tier and class's SLA windows: timed re-plans (one a
// second) whose plan met the class's SLA, and those whose plan did not.
type SLAWindow struct {
	Tier, Class string
	Met, Missed uint64
}

// Session is one live session as the status page shows it, with the
// bytes it holds for its peer.
type Session struct {
	// ID is the session's name (status.Session.ID).
	ID    string
	Paths []status.Path
	Plans []status.Plan
	// Tier is the user's tier, "" without one.
	Tier         string
	Flows        int
	FlowsByClass map[string]int
	Started      time.Time
	// HeldSend, HeldWindow and HeldReassembly are transport.Held's
	// fields: sent and unacknowledged blocks, receive windows granted,
	// shards waiting in reassembly.
	HeldSend, HeldWindow, HeldReassembly int64
	// MalformedDatagrams counts the peer's datagrams dropped as
	// malformed (transport.SessionStats.DatagramsMalformed).
	MalformedDatagrams uint64
	// ProtocolErrors counts the session's connections closed because
	// the peer broke the protocol (transport.SessionStats.ProtocolErrors).
	ProtocolErrors uint64
	// Classes are what the session measured of each traffic class.
	Classes []Class
}

// Class is one traffic class's measured side, to set against its plan's
// predictions: the flow bytes this side sent and delivered
// (transport.ClassUsage), and the p99 of its blocks' times from first
// send to acknowledgement (transport.Session.BlockAckP99), over
// AckBlocks blocks (0: none yet, and no p99).
type Class struct {
	Name               string
	Offered, Delivered uint64
	AckP99             time.Duration
	AckBlocks          int
}

// ClientCounters are the client's own: whether a session is up, and how
// many it opened since it started.
type ClientCounters struct {
	Up             bool
	SessionsOpened uint64
}

// ServerCounters are the concentrator's, since it started.
type ServerCounters struct {
	// JoinsRefused counts refused joins by reason; the keys are
	// JoinReasons.
	JoinsRefused map[string]uint64
	// BadJoins counts connections whose join could not be read
	// (malformed, a wrong version's, or none in time): the concentrator's
	// protocol errors.
	BadJoins uint64
	// HandshakesRefused counts QUIC handshakes refused for the cap on
	// handshakes in progress; Retries the Retry packets sent.
	HandshakesRefused, Retries uint64
	// DestinationsRefused counts destinations the policy refused.
	DestinationsRefused uint64
	// SessionsOpened counts the sessions the concentrator opened.
	SessionsOpened uint64
	// UDPDrops counts the datagrams the UDP relays dropped, by reason;
	// the keys are UDPDropReasons.
	UDPDrops map[string]uint64
	// MaxSessions is the cap on concurrent sessions (--max-sessions).
	MaxSessions int
}

// JoinReasons are the values of the reason label of
// braid_server_joins_refused_total.
var JoinReasons = []string{"auth", "max_sessions", "token_sessions", "unknown_session", "shutdown"}

// UDPDropReasons are the values of the reason label of
// braid_server_udp_dropped_datagrams_total (server.UDPDrops' fields).
var UDPDropReasons = []string{"refused", "too_many", "unresolved", "limited", "stranger", "send_error"}

// Verdicts are the values of the verdict label of braid_sla_windows_total.
var Verdicts = []string{"met", "missed"}

// HeldKinds are the values of the kind label of braid_held_bytes and
// braid_session_held_bytes.
var HeldKinds = []string{"send", "window", "reassembly"}

// States are the values of the state label of braid_path_state.
var States = []string{"up", "degraded", "down"}

// Bindings are the values of the binding label of braid_plan_binding:
// the plan's binding term (status.Plan.Binding) with spaces as
// underscores; any other becomes "other".
var Bindings = []string{"goodput", "p99_latency", "residual_loss", "survival", "cost_cap", "capacity", "price", "no_path_up", "other"}

// Source gives the collector its snapshot at scrape time. Snapshot is
// called from the scraping goroutine, possibly from several at once.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc is a Source from a function.
type SourceFunc func() Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot() Snapshot { return f() }

var _ Source = SourceFunc(nil)

// def is one metric: its name, help, type and label names, and its
// description for client_golang.
type def struct {
	name, help string
	counter    bool
	labels     []string
	order      []int // labels' indices by name, the order they are written in
	desc       *prometheus.Desc
	i          int // its place in defs
}

// defs lists every metric, in the order a scrape writes them.
var defs []*def

func newDef(counter bool, name, help string, labels ...string) *def {
	d := &def{name: name, help: help, counter: counter, labels: labels,
		desc: prometheus.NewDesc(name, help, labels, nil), i: len(defs)}
	for i := range labels {
		d.order = append(d.order, i)
	}
	slices.SortFunc(d.order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	defs = append(defs, d)
	return d
}

func desc(name, help string, labels ...string) *def {
	return newDef(strings.HasSuffix(name, "_total"), name, help, labels...)
}

var (
	sp  = []string{"session", "path"}
	sc  = []string{"session", "class"}
	one = []string{"session"}

	dSessions     = desc("braid_sessions", "Live sessions.")
	dMaxSessions  = desc("braid_server_max_sessions", "The cap on concurrent sessions (--max-sessions).")
	dFlows        = desc("braid_flows", "Open flows, all sessions together.")
	dClientUp     = desc("braid_client_session_up", "1 while a session with the concentrator carries the flows, else 0.")
	dClientOpened = desc("braid_client_sessions_opened_total", "Sessions the client opened since it started.")
	dJoinsRefused = desc("braid_server_joins_refused_total", "Joins the concentrator refused, by reason.", "reason")
	dProtoErrors  = desc("braid_server_protocol_errors_total", "Connections whose join could not be read: malformed, of an unknown version, or none in time.")
	dHandshakes   = desc("braid_server_handshakes_refused_total", "QUIC handshakes refused for the cap on handshakes in progress.")
	dRetries      = desc("braid_server_retries_total", "QUIC Retry packets sent to check a client's address.")
	dDestRefused  = desc("braid_server_destinations_refused_total", "Destinations the destination policy refused.")
	dSrvOpened    = desc("braid_server_sessions_opened_total", "Sessions the concentrator opened since it started.")
	dUDPDropped   = desc("braid_server_udp_dropped_datagrams_total", "Datagrams the concentrator's UDP relays dropped, by reason: refused (destination policy), too_many (destinations of one association), unresolved, limited (name lookups over the rate), stranger (answer from an address never sent to), send_error.", "reason")
	dSLAWindows   = desc("braid_sla_windows_total", "SLA windows (timed re-plans, one a second) of sessions with a tier, by tier, class and verdict: met when the plan in force met the class's SLA, missed when not.", "tier", "class", "verdict")
	dHeld         = desc("braid_held_bytes", "Bytes all sessions together hold for their peers, by kind: send, window, reassembly (as braid_session_held_bytes).", "kind")

	dSessInfo    = desc("braid_session_info", "1 for each live session, labelled with its tier (\"\" without one).", "session", "tier")
	dSessStart   = desc("braid_session_start_time_seconds", "When the session began, in Unix seconds.", one...)
	dSessFlows   = desc("braid_session_flows", "The session's open flows, by traffic class.", sc...)
	dSessHeld    = desc("braid_session_held_bytes", "Bytes the session holds for its peer: send (sent, unacknowledged), window (receive windows granted), reassembly (shards waiting for their block).", "session", "kind")
	dSessBadDgrm = desc("braid_session_malformed_datagrams_total", "The peer's datagrams dropped as malformed.", one...)
	dClassSent   = desc("braid_class_sent_bytes_total", "Flow bytes this side cut into blocks for the class, before compression: rate() is the measured goodput sent.", sc...)
	dClassDeliv  = desc("braid_class_delivered_bytes_total", "Flow bytes this side delivered to the class's readers, after decompression: rate() is the measured goodput received.", sc...)
	dClassAckP99 = desc("braid_class_block_ack_p99_seconds", "99th percentile of the time from a block's first send to its acknowledgement, over the class's last 128 blocks sent by this side: the measured side of braid_plan_p99_seconds (it includes the acknowledgement's way back).", sc...)
	dSessProto   = desc("braid_session_protocol_errors_total", "The session's connections closed because the peer broke the protocol on them.", one...)

	dPathState    = desc("braid_path_state", "1 for the path's state (up, degraded, down), 0 for the others.", "session", "path", "state")
	dPathIdle     = desc("braid_path_idle", "1 for an up path the scheduler leaves without traffic.", sp...)
	dPathConns    = desc("braid_path_connections", "Live QUIC connections in the path's pool.", sp...)
	dPathRTT      = desc("braid_path_rtt_seconds", "Smoothed RTT of braid's probes.", sp...)
	dPathRTTP99   = desc("braid_path_rtt_p99_seconds", "99th percentile of the last 128 probe RTTs.", sp...)
	dPathJitter   = desc("braid_path_jitter_seconds", "Mean change between consecutive probe RTTs.", sp...)
	dPathLoss     = desc("braid_path_loss_ratio", "Fraction of this side's packets lost over the last 2 s, after packet coding's repair.", sp...)
	dPathLinkLoss = desc("braid_path_link_loss_ratio", "Fraction of this side's packets the peer measured lost before repair (coded paths only).", sp...)
	dPathParity   = desc("braid_path_parity_ratio", "Parity packets sent per data packet (coded paths only).", sp...)
	dPathRepaired = desc("braid_path_repaired_packets_total", "The peer's packets rebuilt here by packet coding (coded paths only).", sp...)
	dPathDelivery = desc("braid_path_delivery_rate_bytes_per_second", "The most this side's sending delivered in any 250 ms of the last 2 s.", sp...)
	dPathPace     = desc("braid_path_pace_bytes_per_second", "What this side paces the path to (paced paths only).", sp...)
	dPathUp       = desc("braid_path_upload_bytes_per_second", "Shard bytes from the client to the concentrator over about the last second.", sp...)
	dPathDown     = desc("braid_path_download_bytes_per_second", "Shard bytes from the concentrator to the client over about the last second.", sp...)
	dPathSent     = desc("braid_path_sent_bytes_total", "Shard and datagram bytes this side sent on the path, headers included.", sp...)
	dPathRecv     = desc("braid_path_received_bytes_total", "Shard and datagram bytes this side received on the path, headers included.", sp...)
	dPathProbeTx  = desc("braid_path_probe_sent_bytes_total", "What the path's connections sent while it carried no shards (probes, control), UDP and IP headers included.", sp...)
	dPathProbeRx  = desc("braid_path_probe_received_bytes_total", "What the path's connections received while it carried no shards, UDP and IP headers included.", sp...)
	dPathCost     = desc("braid_path_cost_usd_total", "What the path's bytes (shards and probes, both ways) cost at its price, in USD.", sp...)

	dPlanK        = desc("braid_plan_data_shards", "k: data shards of a full block in the class's plan.", sc...)
	dPlanM        = desc("braid_plan_parity_shards", "m: parity shards of a full block in the class's plan.", sc...)
	dPlanShards   = desc("braid_plan_path_shards", "Shards of each block the class's plan puts on the path.", "session", "class", "path")
	dPlanGoodput  = desc("braid_plan_goodput_bytes_per_second", "The plan's predicted goodput.", sc...)
	dPlanCapacity = desc("braid_plan_capacity_bytes_per_second", "The most the plan carries.", sc...)
	dPlanP99      = desc("braid_plan_p99_seconds", "The plan's predicted p99 block delivery time.", sc...)
	dPlanCostGB   = desc("braid_plan_cost_usd_per_gigabyte", "What a delivered GB costs under the plan, parity included.", sc...)
	dPlanProfit   = desc("braid_plan_profit_usd_per_second", "Revenue less cost at the plan's predicted goodput.", sc...)
	dPlanSLAMet   = desc("braid_plan_sla_met", "1 when the class's plan meets its SLA, else 0.", sc...)
	dPlanBinding  = desc("braid_plan_binding", "1 for the SLA term or limit the plan is closest to breaking, 0 for the others.", "session", "class", "binding")
	dPlanChanges  = desc("braid_plan_changes_total", "Changes of the class's plan.", sc...)
	dPlanViolTick = desc("braid_plan_sla_violation_ticks_total", "Re-planning ticks whose plan broke the class's SLA.", sc...)
)

// Collector is a prometheus.Collector over a Source: for a registry of
// one's own. Handler serves the same metrics faster (text.go).
type Collector struct{ src Source }

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector that reads src at every scrape.
func NewCollector(src Source) *Collector { return &Collector{src: src} }

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range defs {
		ch <- d.desc
	}
}

// Collect reads one snapshot and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	emit(c.src.Snapshot(), &emitter{ch: ch})
}

// emitter takes each sample of a scrape: as a const metric on ch, or,
// without ch, as a line of text (text.go).
type emitter struct {
	ch   chan<- prometheus.Metric
	text *textWriter
}

func (e *emitter) add(d *def, v float64, lv ...string) {
	if e.ch != nil {
		e.constMetric(d, v, append([]string(nil), lv...))
		return
	}
	// lv does not escape on this path, so the variadic slice of each
	// call stays on the stack: no allocation per sample. textWriter.add
	// makes the values valid UTF-8 itself, as validLabels does.
	e.text.add(d, v, lv)
}

// constMetric sends one const metric; lv is its own (client_golang
// keeps it).
func (e *emitter) constMetric(d *def, v float64, lv []string) {
	t := prometheus.GaugeValue
	if d.counter {
		t = prometheus.CounterValue
	}
	e.ch <- prometheus.MustNewConstMetric(d.desc, t, v, validLabels(lv)...)
}

// emit gives e every sample of snap. Both ways of serving go through
// it, so they cannot drift apart.
func emit(snap Snapshot, e *emitter) {
	// e.add is called directly, not through a func value, so that its
	// variadic labels stay on the stack (emitter.add); each metric is a
	// gauge or a counter by its def.
	e.add(dSessions, float64(len(snap.Sessions)))
	flows := 0
	for i := range snap.Sessions {
		flows += snap.Sessions[i].Flows
	}
	e.add(dFlows, float64(flows))
	if cc := snap.Client; cc != nil {
		e.add(dClientUp, b2f(cc.Up))
		e.add(dClientOpened, float64(cc.SessionsOpened))
	}
	if sc := snap.Server; sc != nil {
		e.add(dMaxSessions, float64(sc.MaxSessions))
		for _, r := range JoinReasons {
			e.add(dJoinsRefused, float64(sc.JoinsRefused[r]), r)
		}
		e.add(dProtoErrors, float64(sc.BadJoins))
		e.add(dHandshakes, float64(sc.HandshakesRefused))
		e.add(dRetries, float64(sc.Retries))
		e.add(dDestRefused, float64(sc.DestinationsRefused))
		e.add(dSrvOpened, float64(sc.SessionsOpened))
		for _, r := range UDPDropReasons {
			e.add(dUDPDropped, float64(sc.UDPDrops[r]), r)
		}
	}
	for i := range snap.SLAWindows {
		w := &snap.SLAWindows[i]
		e.add(dSLAWindows, float64(w.Met), w.Tier, w.Class, "met")
		e.add(dSLAWindows, float64(w.Missed), w.Tier, w.Class, "missed")
	}
	var held [3]int64
	for i := range snap.Sessions {
		s := &snap.Sessions[i]
		held[0] += s.HeldSend
		held[1] += s.HeldWindow
		held[2] += s.HeldReassembly
	}
	for i, k := range HeldKinds {
		e.add(dHeld, float64(held[i]), k)
	}
	for i := range snap.Sessions {
		s := &snap.Sessions[i]
		id := s.ID
		e.add(dSessInfo, 1, id, s.Tier)
		if !s.Started.IsZero() {
			e.add(dSessStart, float64(s.Started.UnixNano())/1e9, id)
		}
		for class, n := range s.FlowsByClass {
			e.add(dSessFlows, float64(n), id, class)
		}
		e.add(dSessHeld, float64(s.HeldSend), id, "send")
		e.add(dSessHeld, float64(s.HeldWindow), id, "window")
		e.add(dSessHeld, float64(s.HeldReassembly), id, "reassembly")
		e.add(dSessBadDgrm, float64(s.MalformedDatagrams), id)
		e.add(dSessProto, float64(s.ProtocolErrors), id)
		for j := range s.Classes {
			c := &s.Classes[j]
			e.add(dClassSent, float64(c.Offered), id, c.Name)
			e.add(dClassDeliv, float64(c.Delivered), id, c.Name)
			if c.AckBlocks > 0 {
				e.add(dClassAckP99, c.AckP99.Seconds(), id, c.Name)
			}
		}
		for j := range s.Paths {
			p := &s.Paths[j]
			for _, st := range States {
				e.add(dPathState, b2f(p.State == st), id, p.Name, st)
			}
			e.add(dPathIdle, b2f(p.Idle), id, p.Name)
			e.add(dPathConns, float64(p.Conns), id, p.Name)
			e.add(dPathRTT, p.RTTMs/1e3, id, p.Name)
			e.add(dPathRTTP99, p.RTTP99Ms/1e3, id, p.Name)
			e.add(dPathJitter, p.JitterMs/1e3, id, p.Name)
			e.add(dPathLoss, p.Loss, id, p.Name)
			if p.LinkLoss != nil {
				e.add(dPathLinkLoss, *p.LinkLoss, id, p.Name)
			}
			if p.Parity != nil {
				e.add(dPathParity, *p.Parity, id, p.Name)
			}
			if p.Repaired != nil {
				e.add(dPathRepaired, float64(*p.Repaired), id, p.Name)
			}
			e.add(dPathDelivery, p.DeliveryBps/8, id, p.Name)
			if p.PaceBps != nil {
				e.add(dPathPace, *p.PaceBps/8, id, p.Name)
			}
			e.add(dPathUp, p.UploadBps/8, id, p.Name)
			e.add(dPathDown, p.DownloadBps/8, id, p.Name)
			e.add(dPathSent, float64(p.BytesSent), id, p.Name)
			e.add(dPathRecv, float64(p.BytesReceived), id, p.Name)
			e.add(dPathProbeTx, float64(p.ProbeBytesSent), id, p.Name)
			e.add(dPathProbeRx, float64(p.ProbeBytesReceived), id, p.Name)
			e.add(dPathCost, p.CostUSD, id, p.Name)
		}
		for j := range s.Plans {
			pl := &s.Plans[j]
			cl := pl.Class
			e.add(dPlanK, float64(pl.K), id, cl)
			e.add(dPlanM, float64(pl.M), id, cl)
			for path, n := range pl.Shards {
				e.add(dPlanShards, float64(n), id, cl, path)
			}
			e.add(dPlanGoodput, pl.GoodputBps/8, id, cl)
			e.add(dPlanCapacity, pl.CapacityBps/8, id, cl)
			e.add(dPlanP99, pl.P99Ms/1e3, id, cl)
			e.add(dPlanCostGB, pl.CostUSDPerGB, id, cl)
			e.add(dPlanProfit, pl.ProfitUSDPerH/3600, id, cl)
			e.add(dPlanSLAMet, b2f(pl.SLAMet), id, cl)
			binding := Binding(pl.Binding)
			for _, b := range Bindings {
				e.add(dPlanBinding, b2f(b == binding), id, cl, b)
			}
			e.add(dPlanChanges, float64(pl.Changes), id, cl)
			e.add(dPlanViolTick, float64(pl.ViolationTicks), id, cl)
		}
	}
}

// Binding is the binding label's value for a plan's binding term: one
// of Bindings.
func Binding(term string) string {
	b := strings.ReplaceAll(term, " ", "_")
	for _, known := range Bindings {
		if b == known {
			return b
		}
	}
	return "other"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves the metrics of src (and nothing else) in Prometheus's
// text format, gzipped when the scraper asks. With a token, a request
// must carry it, as "Authorization: Bearer TOKEN" or as the password of
// HTTP Basic authentication; it is compared in constant time.
func Handler(src Source, token string) http.Handler {
	return RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveText(w, r, src.Snapshot())
	}))
}

// RequireToken wraps h so that, with a token, only requests that carry
// it get through (a bearer token, or the password of Basic
// authentication; their hashes compared in constant time, so neither
// where they differ nor the token's length shows); others get 401.
// Without a token, only requests that name this machine in their Host
// header and that no browser marks as another site's get through
// (netx.LocalRequest: a web page cannot read the metrics by rebinding
// its name to 127.0.0.1); others get 403.
func RequireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !netx.LocalRequest(r.Host, r.Header.Get("Sec-Fetch-Site")) {
				http.Error(w, "without a token the metrics answer only requests to a loopback address", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var got string
		if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			got = strings.TrimSpace(b)
		} else if _, pass, ok := r.BasicAuth(); ok {
			got = pass
		}
		if h := sha256.Sum256([]byte(got)); subtle.ConstantTimeCompare(h[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="braid", Basic realm="braid"`)
			http.Error(w, "a token is required (Authorization: Bearer TOKEN)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

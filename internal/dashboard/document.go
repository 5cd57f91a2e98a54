package dashboard

import (
	"braid/internal/status"
)

// State is the document GET /api/state serves and each server-sent
// event carries. Field names are a contract of the page (assets/app.js)
// and of docs/OPERATIONS.md.
type State struct {
	Role string `json:"role"`
	// SessionState is the client's session state; absent at the
	// concentrator.
	SessionState string `json:"session_state,omitempty"`
	// Seq numbers the samples: a page that receives a tick event whose
	// Seq does not follow the last it has missed one.
	Seq uint64 `json:"seq"`
	// At is the last sample's time, unix milliseconds; StepS and
	// WindowS the sampling interval and the history's length.
	At      int64   `json:"at"`
	StepS   float64 `json:"step_s"`
	WindowS float64 `json:"window_s"`
	// Times are the history's sample times, unix ms, oldest first; every
	// path's history ends at the last of them.
	Times []int64 `json:"times"`
	// SessionsTotal counts every session, SessionsShown those listed
	// (at most the dashboard's MaxSessions).
	SessionsTotal int `json:"sessions_total"`
	SessionsShown int `json:"sessions_shown"`
	// Cost, revenue and profit per second over all sessions, in USD.
	CostUSDPerS    float64        `json:"cost_usd_per_s"`
	RevenueUSDPerS float64        `json:"revenue_usd_per_s"`
	ProfitUSDPerS  float64        `json:"profit_usd_per_s"`
	Tenants        []Tenant       `json:"tenants"`
	Sessions       []SessionState `json:"sessions"`
}

// Tenant adds up the sessions of one tenant (or, where the end does not
// know tenants, of one tier).
type Tenant struct {
	Name           string  `json:"name"`
	Sessions       int     `json:"sessions"`
	Flows          int     `json:"flows"`
	CostUSDPerS    float64 `json:"cost_usd_per_s"`
	RevenueUSDPerS float64 `json:"revenue_usd_per_s"`
	ProfitUSDPerS  float64 `json:"profit_usd_per_s"`
	// SLAMet is false when a plan of one of its sessions misses its
	// SLA.
	SLAMet bool `json:"sla_met"`
}

// SessionState is one shown session.
type SessionState struct {
	ID             string  `json:"id"`
	Tenant         string  `json:"tenant,omitempty"`
	Tier           string  `json:"tier,omitempty"`
	Scheduler      string  `json:"scheduler,omitempty"`
	Flows          int     `json:"flows"`
	UptimeS        float64 `json:"uptime_s"`
	CostUSD        float64 `json:"cost_usd"`
	RevenueUSD     float64 `json:"revenue_usd"`
	CostUSDPerS    float64 `json:"cost_usd_per_s"`
	RevenueUSDPerS float64 `json:"revenue_usd_per_s"`
	// SLAMet is whether every plan meets its SLA; null without plans.
	SLAMet *bool         `json:"sla_met"`
	Paths  []PathState   `json:"paths"`
	Plans  []status.Plan `json:"plans"`
}

// PathState is one path now and its history.
type PathState struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Idle     bool   `json:"idle"`
	Medium   string `json:"medium"`
	Operator string `json:"operator"`
	// Conns is the path's QUIC connections.
	Conns       int     `json:"conns"`
	RTTMs       float64 `json:"rtt_ms"`
	Loss        float64 `json:"loss"`
	UploadBps   float64 `json:"upload_bps"`
	DownloadBps float64 `json:"download_bps"`
	DeliveryBps float64 `json:"delivery_bps"`
	CostUSD     float64 `json:"cost_usd"`
	Why         string  `json:"why"`
	History     History `json:"history"`
}

// History is a path's samples, oldest first, aligned with the end of
// State.Times (a path younger than the window has fewer).
type History struct {
	RTTMs   []float32 `json:"rtt_ms"`
	Loss    []float32 `json:"loss"`
	RateBps []float32 `json:"rate_bps"`
	// States has one letter per sample: u up, i idle, d degraded,
	// x down, - gone from the session.
	States string `json:"states"`
}

// document builds the state document; d.mu is held.
func (d *Dashboard) document() *State {
	n := uint64(d.n)
	tick := d.tick // samples taken; the last is tick-1
	doc := &State{Role: d.cfg.Role, SessionState: d.state, Seq: tick, At: d.lastAt.UnixMilli(),
		StepS: d.cfg.Step.Seconds(), WindowS: d.cfg.Window.Seconds(),
		SessionsTotal: d.total.sessions, SessionsShown: len(d.sessions),
		CostUSDPerS: d.total.costRate, RevenueUSDPerS: d.total.revRate,
		ProfitUSDPerS: d.total.revRate - d.total.costRate,
		Tenants:       append([]Tenant{}, d.tenants...), Sessions: []SessionState{}}
	if tick == 0 {
		doc.Times = []int64{}
		return doc
	}
	from := uint64(0)
	if tick > n {
		from = tick - n
	}
	for t := from; t < tick; t++ {
		doc.Times = append(doc.Times, d.times[t%n])
	}
	for _, tr := range d.sessions {
		s := tr.info
		ss := SessionState{ID: s.ID, Tenant: s.Tenant, Tier: s.Tier, Scheduler: s.Scheduler, Flows: s.Flows,
			UptimeS: finite(s.UptimeS), CostUSD: finite(s.CostUSD), RevenueUSD: finite(s.RevenueUSD),
			CostUSDPerS: tr.m.costRate, RevenueUSDPerS: tr.m.revRate, SLAMet: slaMet(s.Plans),
			Paths: []PathState{}, Plans: []status.Plan{}}
		for _, p := range s.Plans {
			p.GoodputBps, p.CapacityBps, p.P99Ms = finite(p.GoodputBps), finite(p.CapacityBps), finite(p.P99Ms)
			p.ResidualLoss, p.CostUSDPerGB, p.ProfitUSDPerH = finite(p.ResidualLoss), finite(p.CostUSDPerGB), finite(p.ProfitUSDPerH)
			ss.Plans = append(ss.Plans, p)
		}
		for _, pt := range tr.paths {
			p := pt.last
			ps := PathState{Name: pt.name, State: p.State, Idle: p.Idle, Medium: p.Medium, Operator: p.Operator,
				Conns: p.Conns, RTTMs: finite(p.RTTMs), Loss: finite(p.Loss), UploadBps: finite(p.UploadBps),
				DownloadBps: finite(p.DownloadBps), DeliveryBps: finite(p.DeliveryBps), CostUSD: finite(p.CostUSD),
				Why: p.Why}
			if pt.seen+1 < tick {
				ps.State = "gone"
			}
			start := max(from, pt.first)
			h := History{RTTMs: make([]float32, 0, tick-start), Loss: make([]float32, 0, tick-start),
				RateBps: make([]float32, 0, tick-start)}
			states := make([]byte, 0, tick-start)
			for t := start; t < tick; t++ {
				i := t % n
				if t > pt.seen {
					h.RTTMs, h.Loss, h.RateBps = append(h.RTTMs, 0), append(h.Loss, 0), append(h.RateBps, 0)
					states = append(states, '-')
					continue
				}
				h.RTTMs, h.Loss, h.RateBps = append(h.RTTMs, pt.rtt[i]), append(h.Loss, pt.loss[i]), append(h.RateBps, pt.rate[i])
				states = append(states, pt.state[i])
			}
			h.States = string(states)
			ps.History = h
			ss.Paths = append(ss.Paths, ps)
		}
		doc.Sessions = append(doc.Sessions, ss)
	}
	return doc
}

// latest returns a copy of doc whose history holds only the last
// sample: what a tick event carries to a page that has the rest.
func (doc *State) latest() *State {
	out := *doc
	out.Times = tail(doc.Times)
	out.Sessions = make([]SessionState, len(doc.Sessions))
	for i, s := range doc.Sessions {
		s.Paths = append([]PathState(nil), s.Paths...)
		for j := range s.Paths {
			h := &s.Paths[j].History
			h.RTTMs, h.Loss, h.RateBps = tail(h.RTTMs), tail(h.Loss), tail(h.RateBps)
			if len(h.States) > 1 {
				h.States = h.States[len(h.States)-1:]
			}
		}
		out.Sessions[i] = s
	}
	return &out
}

func tail[T any](s []T) []T {
	if len(s) <= 1 {
		return s
	}
	return s[len(s)-1:]
}

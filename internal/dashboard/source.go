package dashboard

import (
	"time"

	"braid/internal/status"
	"braid/transport"
)

// Source returns what the dashboard shows now. The dashboard's sampler
// calls it once per step from one goroutine; it must not block for long
// (it reads snapshots, it waits for nothing).
type Source func(now time.Time) Sample

// Sample is one reading of an end: its sessions as the status document
// describes them, with their money so far.
type Sample struct {
	// State is the client's session state ("up", "connecting",
	// "stopped"); "" at the concentrator.
	State    string
	Sessions []SessionSample
}

// SessionSample is one session's reading.
type SessionSample struct {
	ID string
	// Tenant names whom the session bills to; "" when the source does
	// not know (the page then groups sessions by tier).
	Tenant    string
	Tier      string
	Scheduler string
	Flows     int
	UptimeS   float64
	Paths     []status.Path
	Plans     []status.Plan
	// CostUSD is what the session's paths cost so far (shard and probe
	// bytes both ways at each path's price); RevenueUSD what its flow
	// bytes earned so far at the tier's rate (bytes this end cut into
	// blocks plus bytes it delivered: both directions of the flows).
	// The dashboard turns both into rates per second.
	CostUSD    float64
	RevenueUSD float64
}

// Live is the Source of an end's live sessions: sessions lists them
// (the concentrator's Server.Sessions, or the client's one session);
// state, when not nil, gives the client's session state; tenant, when
// not nil, names a session's tenant.
func Live(sessions func() []*transport.Session, state func() string, tenant func(*transport.Session) string) Source {
	var u transport.Usage
	return func(now time.Time) Sample {
		var smp Sample
		if state != nil {
			smp.State = state()
		}
		for _, ss := range sessions() {
			paths, plans, sum := status.Describe(ss, nil, now)
			s := SessionSample{ID: ss.Name(), Tier: sum.Tier, Scheduler: sum.Scheduler, Flows: ss.NumFlows(),
				UptimeS: sum.UptimeS, Paths: paths, Plans: plans}
			if sum.Totals != nil {
				s.CostUSD = sum.Totals.CostUSD
			}
			if tenant != nil {
				s.Tenant = tenant(ss)
			}
			// Usage reads the same atomic counters the status page
			// does; the sampler is its only caller, so u is reused.
			ss.Usage(&u)
			var flowBytes uint64
			for _, c := range u.Classes {
				flowBytes += c.Offered + c.Delivered
			}
			s.RevenueUSD = float64(flowBytes) / 1e9 * ss.Terms().RevenueGB
			smp.Sessions = append(smp.Sessions, s)
		}
		return smp
	}
}

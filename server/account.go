package server

import (
	"context"
	"math/bits"
	"sync"
	"time"

	"braid/internal/usage"
	"braid/transport"
)

// UsageSink takes the concentrator's usage records
// (internal/accounting.Writer is one). Add must not block: the collector
// calls it while reading every session; a sink that cannot keep up drops
// and counts.
type UsageSink interface {
	Add(r usage.Record) bool
}

// The collector reads every session's counters (transport.Session.Usage)
// each AccountingInterval and when the session ends, and turns what
// changed since the last reading into records per (tenant, tier, class,
// path):
//
//   - bytes are each path's wire bytes (PathUsage.WireSent and
//     WireReceived: QUIC packets and the coder's parity, what the path's
//     provider bills), shared among the classes by the shard bytes each
//     carried on the path; bytes with no class's shards (probes while
//     idle, UDP associations' frames) go to the default class;
//   - cost is a row's bytes at its path's price;
//   - revenue is the flow bytes the class carried both ways (offered and
//     delivered) at the tier's rate, shared among its paths by its shard
//     bytes on each;
//   - SLA seconds: an interval in which a planned class carried traffic
//     counts as met when its plan was feasible and the planner saw no
//     violation in it, as missed otherwise, shared like revenue.
//
// A path that leaves its session between two readings (evicted for a
// newer one) takes what it carried since the last reading with it; a
// session that ends is read once more as it ends.
type collector struct {
	s        *Server
	sink     UsageSink
	id       string
	interval time.Duration

	mu       sync.Mutex
	readings map[*transport.Session]*reading
	rows     []usage.Record // scratch
	live     []sessionInfo  // scratch
}

// reading is a session's last counters.
type reading struct {
	at       time.Time
	cur, old transport.Usage
}

func newCollector(s *Server, sink UsageSink, id string, interval time.Duration) *collector {
	return &collector{s: s, sink: sink, id: id, interval: interval, readings: map[*transport.Session]*reading{}}
}

// run reads every session each interval until ctx ends.
func (c *collector) run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.collect(time.Now())
		}
	}
}

// sessionInfo is a live session and its tenant.
type sessionInfo struct {
	sess   *transport.Session
	token  string
	opened time.Time
}

// sessionInfos appends every live session to out.
func (s *Server) sessionInfos(out []sessionInfo) []sessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.sessions {
		out = append(out, sessionInfo{ss, s.tokens[id], s.opened[id]})
	}
	return out
}

// collect reads every live session. Sessions that have ended are left
// to ended, which reads them last.
func (c *collector) collect(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = c.s.sessionInfos(c.live[:0])
	for _, si := range c.live {
		select {
		case <-si.sess.Done():
			continue
		default:
		}
		c.read(si, now, false)
	}
	clear(c.live)
}

// Tenant names whom a live session bills to: usage.TenantID of its
// token (a hash, never the token), as the accounting records name it;
// "" for a session this concentrator does not hold.
func (s *Server) Tenant(sess *transport.Session) string {
	s.mu.Lock()
	tok, ok := s.tokens[sess.ID()]
	s.mu.Unlock()
	if !ok {
		return ""
	}
	return usage.TenantID(tok)
}

// CollectUsage reads every live session now, as the collector's timer
// does, and returns the time that reading's records end at: a boundary
// a report's --since or --until can cut at (braid-bench marks its
// measured window so). Zero without accounting.
func (s *Server) CollectUsage() time.Time {
	if s.acct == nil {
		return time.Time{}
	}
	now := time.Now()
	s.acct.collect(now)
	return now
}

// ended reads a session that has ended for the last time and forgets it.
func (c *collector) ended(si sessionInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read(si, time.Now(), true)
}

// read takes a session's counters, emits what changed since its last
// reading, and keeps the reading (forgets it when last).
func (c *collector) read(si sessionInfo, now time.Time, last bool) {
	sess, token := si.sess, si.token
	r := c.readings[sess]
	if r == nil {
		// The first reading bills everything since the session began.
		r = &reading{at: si.opened}
		if r.at.IsZero() || r.at.After(now) {
			r.at = now
		}
		if !last {
			c.readings[sess] = r
		}
	}
	r.old, r.cur = r.cur, r.old
	sess.Usage(&r.cur)
	terms := sess.Terms()
	tierName := terms.Tier
	if tierName == "" {
		tierName = usage.NoTier
	}
	c.rows = appendRecords(c.rows[:0], &r.old, &r.cur, recordKey{
		start: r.at, end: now, concentrator: c.id, tenant: usage.TenantID(token), tier: tierName,
	}, terms.RevenueGB)
	for i := range c.rows {
		c.sink.Add(c.rows[i])
	}
	r.at = now
	if last {
		delete(c.readings, sess)
	}
}

// recordKey is what every record of one reading shares.
type recordKey struct {
	start, end                 time.Time
	concentrator, tenant, tier string
}

// sub is a - b, 0 when a counter went backwards (it never should).
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// appendRecords appends the records of what changed from old to cur.
func appendRecords(out []usage.Record, old, cur *transport.Usage, k recordKey, revenueGB float64) []usage.Record {
	dt := k.end.Sub(k.start).Seconds()
	nc := len(cur.Classes)
	if nc == 0 {
		nc = 1
	}
	// Per class: flow bytes, shard bytes over all paths, SLA state.
	var flow, shards [maxClasses]uint64
	var met, missed [maxClasses]bool
	for i, cl := range cur.Classes {
		if i >= maxClasses {
			break
		}
		var o transport.ClassUsage
		if i < len(old.Classes) {
			o = old.Classes[i]
		}
		flow[i] = sub(cl.Offered, o.Offered) + sub(cl.Delivered, o.Delivered)
		if cl.Planned {
			bad := !cl.Feasible || cl.Violations > o.Violations
			met[i], missed[i] = !bad, bad
		}
	}
	type pathDelta struct {
		up, down uint64
		class    [maxClasses]uint64
		sum      uint64
	}
	deltas := make([]pathDelta, len(cur.Paths))
	var wireAll uint64
	for j := range cur.Paths {
		p := &cur.Paths[j]
		var o *transport.PathUsage
		for q := range old.Paths {
			if old.Paths[q].Key == p.Key {
				o = &old.Paths[q]
				break
			}
		}
		if o == nil {
			o = &transport.PathUsage{}
		}
		d := &deltas[j]
		d.up, d.down = sub(p.WireReceived, o.WireReceived), sub(p.WireSent, o.WireSent)
		for c := 0; c < nc && c < maxClasses; c++ {
			d.class[c] = sub(p.ClassSent[c], o.ClassSent[c]) + sub(p.ClassReceived[c], o.ClassReceived[c])
			d.sum += d.class[c]
			shards[c] += d.class[c]
		}
		wireAll += d.up + d.down
	}
	for j := range cur.Paths {
		p, d := &cur.Paths[j], &deltas[j]
		// The class that takes the rounding's remainder: the one with the
		// most shard bytes on the path, the default class without any.
		top := 0
		for c := 1; c < nc && c < maxClasses; c++ {
			if d.class[c] > d.class[top] {
				top = c
			}
		}
		var upLeft, downLeft = d.up, d.down
		for c := 0; c < nc && c < maxClasses; c++ {
			var up, down uint64
			if d.sum > 0 {
				up, down = mulDiv(d.up, d.class[c], d.sum), mulDiv(d.down, d.class[c], d.sum)
			}
			upLeft, downLeft = upLeft-up, downLeft-down
			if c == top {
				// Taken below, once every other class has its share.
				upLeft, downLeft = upLeft+up, downLeft+down
				continue
			}
			out = appendRow(out, k, cur, p, c, up, down, d.class[c], shards[c], d.up+d.down, wireAll, flow[c], revenueGB, dt, met[c], missed[c])
		}
		out = appendRow(out, k, cur, p, top, upLeft, downLeft, d.class[top], shards[top], d.up+d.down, wireAll, flow[top], revenueGB, dt, met[top], missed[top])
	}
	// Classes that carried flow bytes but no shards on any path (no path
	// left to carry them): their revenue on a row of no path.
	for c := 0; c < nc && c < maxClasses; c++ {
		if shards[c] == 0 && wireAll == 0 && flow[c] > 0 {
			out = appendRow(out, k, cur, &transport.PathUsage{Name: "-"}, c, 0, 0, 1, 1, 0, 0, flow[c], revenueGB, dt, met[c], missed[c])
		}
	}
	return out
}

// maxClasses bounds the classes a reading holds.
const maxClasses = len(transport.PathUsage{}.ClassSent)

// mulDiv is a*b/c, exactly, for b <= c (a share of a), so the shares of
// a never sum past it.
func mulDiv(a, b, c uint64) uint64 {
	if c == 0 {
		return 0
	}
	b = min(b, c)
	hi, lo := bits.Mul64(a, b)
	q, _ := bits.Div64(hi, lo, c) // hi < c, as b <= c
	return q
}

// appendRow appends class c's record on path p: its bytes up and down,
// and its share of the class's revenue and SLA seconds, by its shard
// bytes on the path (share of shares), else, when the class moved no
// shards at all, by the path's wire bytes (of wireAll). Rows of nothing
// are left out.
func appendRow(out []usage.Record, k recordKey, cur *transport.Usage, p *transport.PathUsage, c int,
	up, down, classShards, allShards, pathWire, wireAll, flow uint64, revenueGB, dt float64, met, missed bool) []usage.Record {
	var share float64
	switch {
	case allShards > 0:
		share = float64(classShards) / float64(allShards)
	case wireAll > 0:
		// The class moved no shards (its bytes were datagrams, say): its
		// share of each path is the path's share of the wire.
		share = float64(pathWire) / float64(wireAll)
	}
	r := usage.Record{Start: k.start, End: k.end, Concentrator: k.concentrator, Tenant: k.tenant, Tier: k.tier,
		Class: className(cur, c), Path: p.Name, BytesUp: up, BytesDown: down}
	r.CostUSD = float64(up+down) * p.PriceGB / 1e9
	if flow > 0 && share > 0 {
		r.RevenueUSD = float64(flow) * share * revenueGB / 1e9
		if met {
			r.SLAMetS = dt * share
		}
		if missed {
			r.SLAMissedS = dt * share
		}
	}
	r.ProfitUSD = r.RevenueUSD - r.CostUSD
	if up == 0 && down == 0 && r.RevenueUSD == 0 && r.SLAMetS == 0 && r.SLAMissedS == 0 {
		return out
	}
	return append(out, r)
}

func className(u *transport.Usage, c int) string {
	if c < len(u.Classes) && u.Classes[c].Name != "" {
		return u.Classes[c].Name
	}
	return "default"
}

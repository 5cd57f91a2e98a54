// Package dashboard is braid's live web dashboard: a page at / (assets
// embedded, no CDN: it works offline) that shows an end's sessions,
// tenants, each path's state, RTT, loss and rate over the last minutes,
// the plans and their explanation, cost and revenue per second and
// whether the SLA holds.
//
// A sampler reads the end's Source once per Step into a bounded history
// ring (Window/Step samples of at most MaxSessions sessions of at most
// MaxPaths paths each, whatever the peers claim) and pushes each new
// state to the page's watchers by server-sent events (GET /api/events, at
// most MaxWatchers at once; more get 503). GET /api/state is the same
// document, for polling and scripts. It reads the status snapshot the
// status page reads and adds nothing to the data path.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"braid/internal/status"
)

//go:embed assets
var assets embed.FS

// Limits of what the dashboard keeps, whatever the peers claim.
const (
	// maxName bounds a session id, tenant, tier or path name kept.
	maxName = 64
	// maxText bounds a plan's explanation or a path's why.
	maxText = 1024
	// maxPlans bounds the plans kept per session.
	maxPlans = 8
	// maxTenants bounds the tenants listed.
	maxTenants = 256
	// maxMoney bounds the sessions whose money the dashboard follows
	// (each a few words) beyond those it shows.
	maxMoney = 1 << 16
)

// Config is a dashboard's configuration. Zero values take the defaults
// that Fill sets.
type Config struct {
	// Role names the end: "client" or "concentrator".
	Role string
	// Source is read once per Step (required).
	Source Source
	// Token, when not "", is required of every request: as a bearer
	// header, as ?token= (the page then sets a cookie and drops it from
	// the address) or as that cookie.
	Token string
	// Step is the sampling interval (default 2s, at least 100ms);
	// Window how far back the history goes (default 5m).
	Step, Window time.Duration
	// MaxSessions bounds the sessions shown with their history
	// (default 64; the others count in the totals), MaxPaths the paths
	// per session (default 16), MaxWatchers the live pages at once
	// (default 16).
	MaxSessions, MaxPaths, MaxWatchers int
	// Logger, nil for none.
	Logger *slog.Logger
}

// Fill sets the defaults of zero fields.
func (c *Config) Fill() {
	if c.Step == 0 {
		c.Step = 2 * time.Second
	}
	if c.Window == 0 {
		c.Window = 5 * time.Minute
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 64
	}
	if c.MaxPaths == 0 {
		c.MaxPaths = 16
	}
	if c.MaxWatchers == 0 {
		c.MaxWatchers = 16
	}
	if c.Role == "" {
		c.Role = "concentrator"
	}
}

// Validate reports the first field that is wrong.
func (c *Config) Validate() error {
	switch {
	case c.Source == nil:
		return errors.New("dashboard: no source")
	case c.Step < 100*time.Millisecond:
		return fmt.Errorf("dashboard: step %v is under 100ms", c.Step)
	case c.Window < c.Step || c.Window/c.Step > 3600:
		return fmt.Errorf("dashboard: window %v holds %d steps of %v (1 to 3600)", c.Window, c.Window/c.Step, c.Step)
	case c.MaxSessions < 1 || c.MaxSessions > 4096:
		return fmt.Errorf("dashboard: %d sessions shown (1 to 4096)", c.MaxSessions)
	case c.MaxPaths < 1 || c.MaxPaths > 256:
		return fmt.Errorf("dashboard: %d paths per session (1 to 256)", c.MaxPaths)
	case c.MaxWatchers < 1 || c.MaxWatchers > 1024:
		return fmt.Errorf("dashboard: %d watchers (1 to 1024)", c.MaxWatchers)
	}
	return nil
}

// Dashboard samples an end and serves its page. It is an http.Handler;
// Close stops the sampler and ends the live streams.
type Dashboard struct {
	cfg     Config
	n       int // samples kept: Window/Step
	handler http.Handler
	tokHash [32]byte
	log     *slog.Logger

	mu       sync.Mutex
	tick     uint64   // samples taken; the next goes at index tick % n
	times    []int64  // unix ms of each sample, a ring of n
	state    string   // the client's session state at the last sample
	sessions []*track // shown, by id
	money    map[string]money
	total    totals    // over all sessions at the last sample
	tenants  []Tenant  // at the last sample
	last     []byte    // the state document at the last sample
	lastAt   time.Time // when the last sample was taken

	watchers atomic.Int32
	subMu    sync.Mutex
	subs     map[chan []byte]struct{} // formatted events

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// money is what a session cost and earned so far, and its rates.
type money struct {
	cost, rev         float64
	costRate, revRate float64
	at                time.Time
	seen              uint64 // the tick that last saw it
}

type totals struct {
	sessions          int
	costRate, revRate float64
}

// track is a shown session and its paths' history.
type track struct {
	info  SessionSample // the last reading, names and texts clamped
	paths []*pathTrack  // by name, at most MaxPaths
	m     money
}

// pathTrack is one path's history: ring buffers indexed by tick % n.
type pathTrack struct {
	name  string
	last  status.Path
	first uint64 // the first tick with a sample
	seen  uint64 // the last tick with a sample
	rtt   []float32
	loss  []float32
	rate  []float32
	state []byte
}

// New starts a dashboard's sampler; the first sample is taken at once.
func New(cfg Config) (*Dashboard, error) {
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dashboard{cfg: cfg, n: int(cfg.Window / cfg.Step), log: cfg.Logger, money: map[string]money{},
		subs: map[chan []byte]struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.times = make([]int64, d.n)
	d.tokHash = sha256.Sum256([]byte(cfg.Token))
	d.handler = d.routes()
	d.sample(time.Now())
	go d.run()
	return d, nil
}

// Close stops the sampler and ends every live stream. It is safe to
// call more than once.
func (d *Dashboard) Close() error {
	d.once.Do(func() {
		close(d.stop)
		<-d.done
	})
	return nil
}

func (d *Dashboard) run() {
	defer close(d.done)
	t := time.NewTicker(d.cfg.Step)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case now := <-t.C:
			d.sample(now)
		}
	}
}

// sample reads the source once, updates the history and pushes the new
// state to the watchers.
func (d *Dashboard) sample(now time.Time) {
	smp := d.read(now)
	d.mu.Lock()
	d.update(now, smp)
	doc := d.document()
	d.mu.Unlock()
	b, err := json.Marshal(doc)
	if err != nil {
		d.log.Error("dashboard: encode state", "err", err)
		return
	}
	d.mu.Lock()
	d.last = b
	d.mu.Unlock()
	if d.watchers.Load() == 0 {
		return
	}
	// Live pages have the history already: each sample sends them only
	// its own values (a page that misses one asks for /api/state).
	tick, err := json.Marshal(doc.latest())
	if err != nil {
		d.log.Error("dashboard: encode state", "err", err)
		return
	}
	d.publish(event("tick", tick))
}

// read calls the source, turning a panic in it into an empty sample: a
// dashboard must never take its end down.
func (d *Dashboard) read(now time.Time) (smp Sample) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("dashboard: source panicked", "panic", fmt.Sprint(r))
			smp = Sample{State: "unknown"}
		}
	}()
	return d.cfg.Source(now)
}

func clamp(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Drop a rune cut in two, so the text stays valid UTF-8.
	s = s[:n]
	for range utf8.UTFMax {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// finite returns v, or 0 when it is NaN or infinite (JSON has neither).
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// update folds a sample into the history; d.mu is held.
func (d *Dashboard) update(now time.Time, smp Sample) {
	tick := d.tick
	d.tick++
	d.times[tick%uint64(d.n)] = now.UnixMilli()
	d.state = clamp(smp.State, maxName)
	d.lastAt = now

	// Money of every session (bounded by the end's own session cap and
	// by maxMoney), so the totals count the sessions not shown.
	d.total = totals{}
	byTenant := map[string]*Tenant{}
	for i := range smp.Sessions {
		s := &smp.Sessions[i]
		id := clamp(s.ID, maxName)
		m, ok := d.money[id]
		if !ok && len(d.money) >= maxMoney {
			continue
		}
		cost, rev := finite(s.CostUSD), finite(s.RevenueUSD)
		if ok && m.seen+1 == tick && now.After(m.at) {
			dt := now.Sub(m.at).Seconds()
			m.costRate, m.revRate = max(0, cost-m.cost)/dt, max(0, rev-m.rev)/dt
		} else {
			// New, or back after samples without it: no rate yet.
			m.costRate, m.revRate = 0, 0
		}
		m.cost, m.rev, m.at, m.seen = cost, rev, now, tick
		d.money[id] = m
		d.total.sessions++
		d.total.costRate += m.costRate
		d.total.revRate += m.revRate

		key := clamp(s.Tenant, maxName)
		if key == "" {
			key = "tier " + clamp(s.Tier, maxName)
			if s.Tier == "" {
				key = "no tier"
			}
		}
		tn := byTenant[key]
		if tn == nil {
			if len(byTenant) >= maxTenants {
				continue
			}
			tn = &Tenant{Name: key, SLAMet: true}
			byTenant[key] = tn
		}
		tn.Sessions++
		tn.Flows += s.Flows
		tn.CostUSDPerS += m.costRate
		tn.RevenueUSDPerS += m.revRate
		if met := slaMet(s.Plans); met != nil && !*met {
			tn.SLAMet = false
		}
	}
	for id, m := range d.money {
		if m.seen != tick {
			delete(d.money, id)
		}
	}
	d.tenants = d.tenants[:0]
	for _, tn := range byTenant {
		tn.ProfitUSDPerS = tn.RevenueUSDPerS - tn.CostUSDPerS
		d.tenants = append(d.tenants, *tn)
	}
	sort.Slice(d.tenants, func(i, j int) bool { return d.tenants[i].Name < d.tenants[j].Name })

	// The shown sessions: those already shown stay while they live; new
	// ones fill free places in id order.
	live := make(map[string]*SessionSample, len(smp.Sessions))
	for i := range smp.Sessions {
		live[clamp(smp.Sessions[i].ID, maxName)] = &smp.Sessions[i]
	}
	kept := d.sessions[:0]
	shown := map[string]bool{}
	for _, tr := range d.sessions {
		if s, ok := live[tr.info.ID]; ok {
			d.fold(tr, s, tick)
			kept = append(kept, tr)
			shown[tr.info.ID] = true
		}
	}
	for i := len(kept); i < len(d.sessions); i++ {
		d.sessions[i] = nil
	}
	d.sessions = kept
	if len(d.sessions) < d.cfg.MaxSessions {
		var fresh []string
		for id := range live {
			if !shown[id] {
				fresh = append(fresh, id)
			}
		}
		slices.Sort(fresh)
		for _, id := range fresh {
			if len(d.sessions) >= d.cfg.MaxSessions {
				break
			}
			tr := &track{}
			d.fold(tr, live[id], tick)
			d.sessions = append(d.sessions, tr)
		}
	}
	sort.Slice(d.sessions, func(i, j int) bool { return d.sessions[i].info.ID < d.sessions[j].info.ID })
}

// fold adds a session's reading to its track.
func (d *Dashboard) fold(tr *track, s *SessionSample, tick uint64) {
	info := *s
	info.ID = clamp(s.ID, maxName)
	info.Tenant = clamp(s.Tenant, maxName)
	info.Tier = clamp(s.Tier, maxName)
	info.Scheduler = clamp(s.Scheduler, maxName)
	info.Paths = nil
	info.Plans = nil
	for i, p := range s.Plans {
		if i >= maxPlans {
			break
		}
		p.Class = clamp(p.Class, maxName)
		p.Tier = clamp(p.Tier, maxName)
		p.Binding = clamp(p.Binding, maxName)
		p.Text = clamp(p.Text, maxText)
		shards := make(map[string]int, min(len(p.Shards), d.cfg.MaxPaths))
		for name, n := range p.Shards {
			if len(shards) >= d.cfg.MaxPaths {
				break
			}
			shards[clamp(name, maxName)] = n
		}
		p.Shards = shards
		p.Relaxed = nil
		info.Plans = append(info.Plans, p)
	}
	tr.info = info
	tr.m = d.money[info.ID]

	byName := map[string]*pathTrack{}
	for _, pt := range tr.paths {
		byName[pt.name] = pt
	}
	got := map[string]bool{}
	for _, p := range s.Paths {
		name := clamp(p.Name, maxName)
		if got[name] {
			continue // a name given twice: the first one counts
		}
		pt := byName[name]
		if pt == nil {
			if len(tr.paths) >= d.cfg.MaxPaths {
				continue
			}
			pt = &pathTrack{name: name, first: tick, rtt: make([]float32, d.n), loss: make([]float32, d.n),
				rate: make([]float32, d.n), state: make([]byte, d.n)}
			byName[name] = pt
			tr.paths = append(tr.paths, pt)
		}
		got[name] = true
		p.Name = name
		p.State = clamp(p.State, maxName)
		p.Medium = clamp(p.Medium, maxName)
		p.Operator = clamp(p.Operator, maxName)
		p.Why = clamp(p.Why, maxText)
		p.ParityHeld = clamp(p.ParityHeld, maxName)
		p.MappedAddr = nil
		pt.last = p
		if tick > pt.seen+1 && pt.seen >= pt.first {
			// Gone for a while and back: the missing samples read gone.
			for t := pt.seen + 1; t < tick && t+uint64(d.n) > tick; t++ {
				pt.state[t%uint64(d.n)] = '-'
			}
		}
		pt.seen = tick
		i := tick % uint64(d.n)
		pt.rtt[i] = float32(finite(p.RTTMs))
		pt.loss[i] = float32(finite(p.Loss))
		pt.rate[i] = float32(finite(p.UploadBps + p.DownloadBps))
		pt.state[i] = stateCode(p.State, p.Idle)
	}
	// A path gone from the session for the whole window is dropped.
	kept := tr.paths[:0]
	for _, pt := range tr.paths {
		if pt.seen+uint64(d.n) > tick {
			kept = append(kept, pt)
		}
	}
	tr.paths = kept
	sort.Slice(tr.paths, func(i, j int) bool { return tr.paths[i].name < tr.paths[j].name })
}

// stateCode is a path state as one history letter: u up, i idle, d
// degraded, x down, - gone.
func stateCode(state string, idle bool) byte {
	switch {
	case state == "up" && idle:
		return 'i'
	case state == "up":
		return 'u'
	case state == "degraded":
		return 'd'
	}
	return 'x'
}

// slaMet says whether every plan meets its SLA; nil without plans.
func slaMet(plans []status.Plan) *bool {
	if len(plans) == 0 {
		return nil
	}
	met := true
	for _, p := range plans {
		met = met && p.SLAMet
	}
	return &met
}

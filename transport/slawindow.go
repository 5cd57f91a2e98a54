package transport

import (
	"slices"
	"strings"
	"sync"

	"braid/scheduler"
)

// SLAWindows counts, for every session that shares it, the SLA windows
// met and missed per tier and traffic class. A window is one timed
// re-plan (scheduler.PlanEvery): it is met when the plan in force then
// meets the class's SLA (Plan.Feasible), missed when it does not.
// Re-plans on events (a path up or down, new terms) are not windows, so
// the counts add up to seconds. Sessions without a tier count nothing:
// they have no SLA to meet.
//
// It is safe for concurrent use; a nil *SLAWindows counts nothing (the
// no-op default of Config.SLAWindows). Counts outlive the sessions that
// made them.
type SLAWindows struct {
	mu sync.Mutex
	m  map[slaKey]*SLACount
}

type slaKey struct{ tier, class string }

// SLACount is one (tier, class)'s windows.
type SLACount struct {
	Tier, Class string
	Met, Missed uint64
}

// maxSLAKeys bounds the (tier, class) pairs kept: tiers and classes come
// from the operator's policy file, so this is only a guard against a
// policy reloaded with ever new names.
const maxSLAKeys = 1024

// NewSLAWindows returns empty counts.
func NewSLAWindows() *SLAWindows { return &SLAWindows{m: map[slaKey]*SLACount{}} }

// note counts one timed re-plan's verdict for each class of d.
func (w *SLAWindows) note(tier string, d *scheduler.Decision) {
	if w == nil || tier == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range d.Classes {
		cd := &d.Classes[i]
		k := slaKey{tier, cd.Name}
		c := w.m[k]
		if c == nil {
			if len(w.m) >= maxSLAKeys {
				continue
			}
			c = &SLACount{Tier: tier, Class: cd.Name}
			w.m[k] = c
		}
		if cd.Plan.Feasible {
			c.Met++
		} else {
			c.Missed++
		}
	}
}

// Counts returns every (tier, class)'s windows, sorted by tier and class.
func (w *SLAWindows) Counts() []SLACount {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	out := make([]SLACount, 0, len(w.m))
	for _, c := range w.m {
		out = append(out, *c)
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b SLACount) int {
		if c := strings.Compare(a.Tier, b.Tier); c != 0 {
			return c
		}
		return strings.Compare(a.Class, b.Class)
	})
	return out
}

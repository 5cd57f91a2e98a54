// Package tier holds a concentrator's policy: the tiers users buy, each a
// revenue per GB and an SLA per class of traffic, and the tokens that pick
// a user's tier. It also carries a tier to the client in one control
// message (AppendBinary, ParseBinary).
//
// The package is pure: it reads no files and parses no file formats, so
// transport, which carries tiers, links no config parser. The policy file
// is read by internal/policyfile, at the edge.
package tier

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"braid/internal/fielderr"
	"braid/scheduler"
)

// Limits that keep a tier small enough to push to a client in one control
// message; internal/policyfile enforces them on files, AppendBinary and
// ParseBinary on the wire.
const (
	// MaxEncoded is the largest wire encoding of a Tier, in bytes; it
	// leaves room in a 1024-byte control message body.
	MaxEncoded = 1000
	// MaxClasses is the most classes a tier has, the default class
	// included.
	MaxClasses = 16
	// MaxPortRanges is the most port ranges a class lists.
	MaxPortRanges = 32
	// MaxUsers is the most SOCKS usernames a class lists.
	MaxUsers = 32
	// MaxNameLen is the longest tier or class name, in bytes.
	MaxNameLen = 64
	// MaxSurvive is the largest SLA.Survive a tier may ask for.
	MaxSurvive = 7
	// DefaultClass is the name of every tier's class 0.
	DefaultClass = "default"
)

// Class is a slice of a tier's traffic with its own SLA, picked by
// destination port or SOCKS username.
type Class struct {
	// Name is unique within the tier; class 0 is named DefaultClass.
	Name string
	// Ports are the destination ports the class matches; empty: any.
	Ports []PortRange
	// Users are the SOCKS usernames the class matches; empty: any.
	Users []string
	// SLA is what the class's traffic is promised.
	SLA scheduler.SLA
}

// PortRange is the destination ports Lo through Hi, both included.
type PortRange struct{ Lo, Hi uint16 }

// Contains reports whether port lies in the range.
func (r PortRange) Contains(port uint16) bool { return r.Lo <= port && port <= r.Hi }

// String returns "N" for a single port, else "LO-HI", as the policy file
// spells it.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Tier is what a user buys: revenue per GB and an SLA per class.
// Classes[0] is the default class (named "default", matching everything)
// and is always present; further classes are matched in file order before
// falling back to the default (see Classify).
//
// A Tier is not modified after the policy file's parser or ParseBinary
// returns it, so it may be shared between goroutines.
type Tier struct {
	// Name is the tier's key in the policy file.
	Name string
	// RevenueGB is what the user pays per delivered GB, in USD.
	RevenueGB float64
	// Classes holds the default class first, then the others in file
	// order.
	Classes []Class
}

// Classify returns the index of the first class, from 1, whose Ports (if
// any) contain port and whose Users (if any) contain user; 0 (the default
// class) when none does.
func (t *Tier) Classify(port uint16, user string) int {
	for i := 1; i < len(t.Classes); i++ {
		if c := &t.Classes[i]; c.matchesPort(port) && c.matchesUser(user) {
			return i
		}
	}
	return 0
}

func (c *Class) matchesPort(port uint16) bool {
	if len(c.Ports) == 0 {
		return true
	}
	for _, r := range c.Ports {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

func (c *Class) matchesUser(user string) bool {
	if len(c.Users) == 0 {
		return true
	}
	for _, u := range c.Users {
		if u == user {
			return true
		}
	}
	return false
}

// String returns a one-line summary, e.g.
//
//	basic $2/GB: default goodput>=5Mbit/s p99<=500ms; interactive ports=22,443 users="voip" p99<=150ms
func (t *Tier) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s $%s/GB:", t.Name, num(t.RevenueGB))
	for i := range t.Classes {
		c := &t.Classes[i]
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteByte(' ')
		b.WriteString(c.Name)
		if len(c.Ports) > 0 {
			b.WriteString(" ports=")
			for j, r := range c.Ports {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(r.String())
			}
		}
		if len(c.Users) > 0 {
			b.WriteString(" users=")
			for j, u := range c.Users {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.Quote(u))
			}
		}
		writeSLA(&b, c.SLA)
	}
	return b.String()
}

func writeSLA(b *strings.Builder, s scheduler.SLA) {
	if s == (scheduler.SLA{}) {
		b.WriteString(" best-effort")
		return
	}
	if s.MinGoodput > 0 {
		fmt.Fprintf(b, " goodput>=%sMbit/s", num(s.MinGoodput*8/1e6))
	}
	if s.P99Latency > 0 {
		fmt.Fprintf(b, " p99<=%v", s.P99Latency)
	}
	if s.ResidualLoss > 0 {
		fmt.Fprintf(b, " loss<=%s", num(s.ResidualLoss))
	}
	if s.Survive > 0 {
		fmt.Fprintf(b, " survive=%d", s.Survive)
	}
	if s.MaxCostGB > 0 {
		fmt.Fprintf(b, " cost<=$%s/GB", num(s.MaxCostGB))
	}
	if s.Deadline > 0 {
		fmt.Fprintf(b, " deadline=%v", s.Deadline)
	}
	if s.MaxJitter > 0 {
		fmt.Fprintf(b, " jitter<=%v", s.MaxJitter)
	}
}

// num formats v in at most 6 significant digits, without exponent for
// everyday magnitudes.
func num(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// ValidName reports whether s can name a tier or class: 1 to MaxNameLen
// bytes of printable ASCII without spaces, so that names read unambiguously
// in logs and in String.
func ValidName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// NameRule is the reason given for a name ValidName refuses.
const NameRule = "must be 1 to 64 bytes of printable ASCII without spaces"

// CheckFigure returns why v cannot be an SLA or price figure ("must be
// finite", "must be >= 0"), or "" when it can.
func CheckFigure(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "must be finite"
	}
	if v < 0 || math.Signbit(v) {
		return "must be >= 0"
	}
	return ""
}

// check validates a Tier as the wire carries it: an invalid Tier is a
// *fielderr.Error naming the field by its Go path (e.g.
// "Classes[1].Ports[0]"); the policy file's own validation names its keys
// instead. A Tier that passes encodes, and decodes to an equal Tier.
func (t *Tier) check() error {
	if !ValidName(t.Name) {
		return fielderr.New("Name", NameRule)
	}
	if r := CheckFigure(t.RevenueGB); r != "" {
		return fielderr.New("RevenueGB", r)
	}
	if len(t.Classes) == 0 || len(t.Classes) > MaxClasses {
		return fielderr.Errorf("Classes", "has %d classes, want 1 to %d", len(t.Classes), MaxClasses)
	}
	for i := range t.Classes {
		c := &t.Classes[i]
		at := fmt.Sprintf("Classes[%d]", i)
		if i == 0 {
			if c.Name != DefaultClass || len(c.Ports) > 0 || len(c.Users) > 0 {
				return fielderr.New(at, `must be named "default" and list no ports or users`)
			}
		} else {
			if !ValidName(c.Name) {
				return fielderr.New(at+".Name", NameRule)
			}
			for j := range i {
				if t.Classes[j].Name == c.Name {
					return fielderr.Errorf(at+".Name", "%q is used by class %d", c.Name, j)
				}
			}
			if len(c.Ports) == 0 && len(c.Users) == 0 {
				return fielderr.New(at, "needs ports or users")
			}
		}
		if len(c.Ports) > MaxPortRanges {
			return fielderr.Errorf(at+".Ports", "has %d ranges, at most %d", len(c.Ports), MaxPortRanges)
		}
		for j, r := range c.Ports {
			if r.Lo == 0 || r.Lo > r.Hi {
				return fielderr.New(fmt.Sprintf("%s.Ports[%d]", at, j), "want 1 <= Lo <= Hi")
			}
		}
		if len(c.Users) > MaxUsers {
			return fielderr.Errorf(at+".Users", "has %d users, at most %d", len(c.Users), MaxUsers)
		}
		for j, u := range c.Users {
			if u == "" || len(u) > 255 {
				return fielderr.New(fmt.Sprintf("%s.Users[%d]", at, j), "must be 1 to 255 bytes")
			}
		}
		if err := checkSLA(c.SLA, at+".SLA."); err != nil {
			return err
		}
	}
	return nil
}

func checkSLA(s scheduler.SLA, at string) error {
	if r := CheckFigure(s.MinGoodput); r != "" {
		return fielderr.New(at+"MinGoodput", r)
	}
	if s.P99Latency < 0 {
		return fielderr.New(at+"P99Latency", "must be >= 0")
	}
	if r := CheckFigure(s.ResidualLoss); r != "" {
		return fielderr.New(at+"ResidualLoss", r)
	}
	if s.ResidualLoss >= 1 {
		return fielderr.New(at+"ResidualLoss", "must be < 1")
	}
	if s.Survive < 0 || s.Survive > MaxSurvive {
		return fielderr.Errorf(at+"Survive", "must be 0 to %d", MaxSurvive)
	}
	if r := CheckFigure(s.MaxCostGB); r != "" {
		return fielderr.New(at+"MaxCostGB", r)
	}
	if s.Deadline < 0 {
		return fielderr.New(at+"Deadline", "must be >= 0")
	}
	if s.MaxJitter < 0 {
		return fielderr.New(at+"MaxJitter", "must be >= 0")
	}
	return nil
}

package tier

import (
	"errors"
	"testing"
	"time"

	"braid/internal/fielderr"
	"braid/scheduler"
)

// example is the policy in internal/policyfile's testdata/policy.toml and
// policy.yaml (whose tests hold a copy).
func example() *Policy {
	basic := &Tier{Name: "basic", RevenueGB: 2, Classes: []Class{
		{Name: "default", SLA: scheduler.SLA{MinGoodput: 5e6 / 8, P99Latency: 500 * time.Millisecond,
			ResidualLoss: 0.001, MaxCostGB: 1.5}},
		{Name: "interactive", Ports: []PortRange{{22, 22}, {443, 443}, {8000, 8100}}, Users: []string{"voip"},
			SLA: scheduler.SLA{MinGoodput: 1e6 / 8, P99Latency: 150 * time.Millisecond}},
	}}
	premium := &Tier{Name: "premium", RevenueGB: 6.5, Classes: []Class{
		{Name: "default", SLA: scheduler.SLA{MinGoodput: 20e6 / 8, P99Latency: 250 * time.Millisecond, Survive: 1}},
		{Name: "voice", Ports: []PortRange{{5060, 5061}, {10000, 20000}},
			SLA: scheduler.SLA{P99Latency: 100 * time.Millisecond, ResidualLoss: 0.0001, Survive: 1, Deadline: 150 * time.Millisecond, MaxJitter: 30 * time.Millisecond}},
		{Name: "backup", Users: []string{"nightly", "rsync"}, SLA: scheduler.SLA{MaxCostGB: 0.5}},
	}}
	return &Policy{
		Tiers:       map[string]*Tier{"basic": basic, "premium": premium},
		Tokens:      map[string]string{"secret-token-1": "basic", "secret-token-2": "premium"},
		DefaultTier: "basic",
		Prices:      map[string]float64{"cellular": 4, "satellite": 1},
		MaxSessions: map[string]int{"premium": 16},
	}
}

func TestTierFor(t *testing.T) {
	ex := example()
	withDefault := example()
	withDefault.DefaultTier = ""
	withDefault.Tiers["default"] = &Tier{Name: "default", Classes: []Class{{Name: "default"}}}
	noDefault := example()
	noDefault.DefaultTier = ""
	broken := example()
	broken.Tokens["dangling"] = "gone" // no parser makes this, but TierFor must not return nil, true
	for _, tc := range []struct {
		name  string
		p     *Policy
		token string
		want  string // "" for none
	}{
		{"listed", ex, "secret-token-2", "premium"},
		{"unlisted gets default_tier", ex, "who?", "basic"},
		{"empty token gets default_tier", ex, "", "basic"},
		{"listed beats default", withDefault, "secret-token-2", "premium"},
		{"unlisted gets tier named default", withDefault, "who?", "default"},
		{"unlisted refused without a default", noDefault, "who?", ""},
		{"listed without a default", noDefault, "secret-token-1", "basic"},
		{"dangling token falls back", broken, "dangling", "basic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tier, ok := tc.p.TierFor(tc.token)
			if ok != (tc.want != "") || (ok && tier.Name != tc.want) || (!ok && tier != nil) {
				t.Errorf("TierFor(%q) = %v, %v; want %q", tc.token, tier, ok, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	basic := example().Tiers["basic"]
	premium := example().Tiers["premium"]
	both := &Tier{Name: "both", Classes: []Class{
		{Name: "default"},
		{Name: "ssh-admin", Ports: []PortRange{{22, 22}}, Users: []string{"admin"}},
		{Name: "ssh", Ports: []PortRange{{22, 22}}},
		{Name: "admin", Users: []string{"admin", "root"}},
	}}
	for _, tc := range []struct {
		name string
		t    *Tier
		port uint16
		user string
		want int
	}{
		{"port and user match", basic, 443, "voip", 1},
		{"range low edge", basic, 8000, "voip", 1},
		{"range high edge", basic, 8100, "voip", 1},
		{"port outside range", basic, 8101, "voip", 0},
		{"port matches, user does not", basic, 22, "alice", 0},
		{"user matches, port does not", basic, 80, "voip", 0},
		{"port zero", basic, 0, "voip", 0},
		{"ports only", premium, 15000, "anyone", 1},
		{"ports only, no user", premium, 5061, "", 1},
		{"users only", premium, 80, "rsync", 2},
		{"first match wins", premium, 5060, "rsync", 1},
		{"nothing matches", premium, 80, "alice", 0},
		{"both fields before port", both, 22, "admin", 1},
		{"port class", both, 22, "alice", 2},
		{"user class", both, 443, "root", 3},
		{"default only", &Tier{Name: "x", Classes: []Class{{Name: "default"}}}, 22, "admin", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.Classify(tc.port, tc.user); got != tc.want {
				t.Errorf("Classify(%d, %q) = %d, want %d", tc.port, tc.user, got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		t    *Tier
		want string
	}{
		{example().Tiers["basic"], `basic $2/GB: default goodput>=5Mbit/s p99<=500ms loss<=0.001 cost<=$1.5/GB; ` +
			`interactive ports=22,443,8000-8100 users="voip" goodput>=1Mbit/s p99<=150ms`},
		{example().Tiers["premium"], `premium $6.5/GB: default goodput>=20Mbit/s p99<=250ms survive=1; ` +
			`voice ports=5060-5061,10000-20000 p99<=100ms loss<=0.0001 survive=1 deadline=150ms jitter<=30ms; backup users="nightly","rsync" cost<=$0.5/GB`},
		{&Tier{Name: "free", Classes: []Class{{Name: "default"}}}, `free $0/GB: default best-effort`},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("String() =\n%s\nwant\n%s", got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	ok := func() *Tier { return example().Tiers["premium"] }
	for _, tc := range []struct {
		field string
		edit  func(*Tier)
	}{
		{"Name", func(t *Tier) { t.Name = "" }},
		{"Name", func(t *Tier) { t.Name = "a b" }},
		{"RevenueGB", func(t *Tier) { t.RevenueGB = -1 }},
		{"Classes", func(t *Tier) { t.Classes = nil }},
		{"Classes[0]", func(t *Tier) { t.Classes[0].Name = "first" }},
		{"Classes[0]", func(t *Tier) { t.Classes[0].Users = []string{"x"} }},
		{"Classes[1].Name", func(t *Tier) { t.Classes[1].Name = "default" }},
		{"Classes[2].Name", func(t *Tier) { t.Classes[2].Name = "voice" }},
		{"Classes[1]", func(t *Tier) { t.Classes[1].Ports = nil }},
		{"Classes[1].Ports[1]", func(t *Tier) { t.Classes[1].Ports[1] = PortRange{9, 8} }},
		{"Classes[1].Ports[0]", func(t *Tier) { t.Classes[1].Ports[0] = PortRange{0, 8} }},
		{"Classes[2].Users[0]", func(t *Tier) { t.Classes[2].Users[0] = "" }},
		{"Classes[1].SLA.P99Latency", func(t *Tier) { t.Classes[1].SLA.P99Latency = -1 }},
		{"Classes[1].SLA.Survive", func(t *Tier) { t.Classes[1].SLA.Survive = 8 }},
		{"Classes[0].SLA.ResidualLoss", func(t *Tier) { t.Classes[0].SLA.ResidualLoss = 1 }},
	} {
		tr := ok()
		tc.edit(tr)
		err := tr.check()
		var fe *fielderr.Error
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("check() = %v, want an error on %s", err, tc.field)
		}
	}
	if err := ok().check(); err != nil {
		t.Errorf("check() on a valid tier: %v", err)
	}
}

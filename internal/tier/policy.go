package tier

// Policy is a concentrator's policy: its tiers, which token buys which,
// and default path prices. internal/policyfile reads one from a file and
// fills every map, empty when the file has none.
type Policy struct {
	// Tiers are the tiers by name.
	Tiers map[string]*Tier
	// Tokens maps a client's token to its tier's name.
	Tokens map[string]string
	// DefaultTier names the tier of tokens not listed in Tokens; "" means
	// the tier named "default" if there is one, else such tokens are
	// refused (see TierFor).
	DefaultTier string
	// Prices are path prices in USD per GB by medium ("ethernet", "wifi",
	// "cellular", "satellite", "other"), used when a client's path gives
	// no price of its own.
	Prices map[string]float64
	// MaxSessions caps the concurrent sessions of each token of a tier, by
	// tier name (max_sessions); a tier not listed leaves the cap to the
	// concentrator's own per-token default. It is the concentrator's
	// business and never goes to the client with the tier.
	MaxSessions map[string]int
}

// Media are the medium names Policy.Prices may use.
var Media = []string{"ethernet", "wifi", "cellular", "satellite", "other"}

// MaxSessionsLimit is the largest cap Policy.MaxSessions may hold.
const MaxSessionsLimit = 1 << 20

// TierFor returns the tier of token: the one Tokens names, else the
// default tier (DefaultTier, else the tier named "default"); false when
// there is none, and the caller should refuse the client.
func (p *Policy) TierFor(token string) (*Tier, bool) {
	if name, ok := p.Tokens[token]; ok {
		if t := p.Tiers[name]; t != nil {
			return t, true
		}
	}
	name := p.DefaultTier
	if name == "" {
		name = DefaultClass
	}
	t := p.Tiers[name]
	return t, t != nil
}

// MaxSessionsFor returns the cap on concurrent sessions that token's tier
// sets, or 0 when the token has no tier or its tier sets none.
func (p *Policy) MaxSessionsFor(token string) int {
	t, ok := p.TierFor(token)
	if !ok {
		return 0
	}
	return p.MaxSessions[t.Name]
}

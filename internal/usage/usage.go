// Package usage holds accounting's records: what one tenant's traffic of
// one tier and class cost and earned on one path over an interval. The
// concentrator's collector (server/account.go) makes them from sessions'
// counters; internal/accounting stores them and sums them into reports.
// Records are plain values: no I/O here.
package usage

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Record is one (tenant, tier, class, path) over [Start, End).
type Record struct {
	// Start and End bound the interval the counters were read over.
	Start, End time.Time
	// Concentrator is the id of the concentrator that counted it
	// (--accounting-id), so several may write one database.
	Concentrator string
	// Tenant is a stable id of the client's token (TenantID), never the
	// token itself.
	Tenant string
	// Tier and Class name the tier of the token and the traffic class;
	// NoTier when the token has none.
	Tier, Class string
	// Path is the client's path name.
	Path string
	// BytesUp and BytesDown are the path's bytes on the wire from the
	// client and to it: what the path's provider bills.
	BytesUp, BytesDown uint64
	// CostUSD is the bytes at the path's price; RevenueUSD the flow bytes
	// the class carried at the tier's rate; ProfitUSD their difference.
	CostUSD, RevenueUSD, ProfitUSD float64
	// SLAMetS and SLAMissedS are the seconds the class's plan met and
	// missed its SLA while it carried traffic, shared among its paths by
	// their bytes.
	SLAMetS, SLAMissedS float64
}

// NoTier is the tier name of sessions whose token maps to no tier.
const NoTier = "none"

// TenantID returns a stable, non-secret id for token: "t-" and the first
// 12 hex digits of its SHA-256. The token cannot be recovered from it.
func TenantID(token string) string {
	h := sha256.Sum256([]byte(token))
	return "t-" + hex.EncodeToString(h[:6])
}

// Bytes is BytesUp plus BytesDown.
func (r *Record) Bytes() uint64 { return r.BytesUp + r.BytesDown }

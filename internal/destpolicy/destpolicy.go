// Package destpolicy decides which destination addresses a concentrator
// may dial for its clients.
//
// A client names a destination; the concentrator resolves it and dials
// from inside its own network, so without a policy a client could reach
// what only the concentrator host can: services on loopback, on private
// networks, and any listener on the host's own addresses that a firewall
// hides from the outside. [Policy.Check] refuses, for each resolved
// address:
//
//   - special-purpose addresses ([Public]): loopback, private,
//     link-local, multicast, documentation and other ranges that are not
//     public unicast, including IPv6 addresses that embed such an IPv4
//     address (IPv4-compatible, NAT64, 6to4, Teredo; see [Embedded]),
//     unless AllowPrivate is set;
//   - the concentrator host's own addresses ([Own]), compared after
//     unmapping and by embedded IPv4 as well, unless AllowOwn is set.
//
// The package logs nothing; a refusal is a *[RefusedError] whose text is
// meant for the caller's log line.
package destpolicy

import (
	"fmt"
	"net/netip"
)

// Policy is the concentrator's destination policy. The zero Policy
// refuses special-purpose addresses and, having no Own set, only the
// implicit own addresses (loopback and unspecified).
type Policy struct {
	// AllowPrivate permits the special-purpose addresses Public refuses
	// (for a concentrator meant to reach a private network, or tests).
	// The host's own addresses stay refused unless AllowOwn is set too,
	// and loopback is one of them.
	AllowPrivate bool
	// AllowOwn permits the concentrator host's own addresses, loopback
	// included: listeners on the host become reachable by every client.
	AllowOwn bool
	// Own is the host's address set; nil holds only the implicit
	// addresses. The caller starts and closes it.
	Own *Own
}

// Check returns nil when the concentrator may dial ip, or a
// *RefusedError saying why not. It is meant for each address a
// destination resolves to, after resolution, so a name cannot later
// resolve elsewhere. It does no I/O, takes no lock and allocates only to
// refuse; it is safe for concurrent use.
func (p *Policy) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return &RefusedError{Addr: ip, Reason: reasonInvalid}
	}
	if !p.AllowPrivate {
		if err := Public(ip); err != nil {
			return err
		}
	}
	if !p.AllowOwn {
		if v4, own := p.Own.match(ip); own {
			return &RefusedError{Addr: ip, Embedded: v4, Reason: reasonOwn}
		}
	}
	return nil
}

// RefusedError is a destination address refused by the policy.
type RefusedError struct {
	// Addr is the address as it was checked.
	Addr netip.Addr
	// Embedded is the IPv4 address embedded in Addr that was refused,
	// invalid when Addr was refused in itself.
	Embedded netip.Addr
	// Reason says what the refused address is, as it reads after "is":
	// "loopback", "private", "the concentrator's own address", ...
	Reason string
}

// IsOwn reports whether the address was refused as one of the
// concentrator host's own (Policy.AllowOwn allows it).
func (e *RefusedError) IsOwn() bool { return e.Reason == reasonOwn }

// IsLoopback reports whether the address was refused as loopback or
// unspecified: allowed as special-purpose (Policy.AllowPrivate), it is
// still the host's own.
func (e *RefusedError) IsLoopback() bool {
	return e.Reason == reasonLoopback || e.Reason == reasonUnspecified
}

// Error reads "destination ADDR is REASON", or "destination ADDR:
// embedded IPv4 V4 is REASON" when an embedded address was refused.
func (e *RefusedError) Error() string {
	if e.Embedded.IsValid() {
		return fmt.Sprintf("destination %s: embedded IPv4 %s is %s", e.Addr, e.Embedded, e.Reason)
	}
	return fmt.Sprintf("destination %s is %s", e.Addr, e.Reason)
}

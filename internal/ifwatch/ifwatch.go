// Package ifwatch finds the network interfaces braid can use as paths and
// follows them as they come and go, for `braid client --path auto`.
//
// # Usable interfaces
//
// An interface is usable when all of these hold:
//
//   - it is administratively up and has carrier (IFF_UP and IFF_RUNNING;
//     a virtual device without carrier detection, such as dummy or tun,
//     reports RUNNING as soon as it is up);
//   - it is not a loopback interface;
//   - it has at least one global unicast address in the sense of
//     [netip.Addr.IsGlobalUnicast], IPv4 or IPv6 (so private RFC 1918 and
//     ULA addresses count, link-local ones do not); on Linux IPv6 addresses
//     still in duplicate address detection (tentative) or that failed it
//     are left out, since nothing can bind to them yet;
//   - some route leaves through it: on Linux a unicast route in any table
//     but "local" whose output interface (or one of whose multipath next
//     hops) is this interface, not counting link-local and multicast
//     destinations. A kernel prefix route (from an address such as
//     10.0.0.2/24) is enough; an address with no route (10.0.0.2/32 alone)
//     is not. [Interface.HasDefaultRoute] tells whether one of those routes
//     is a default route (0.0.0.0/0 or ::/0), again in any table, so
//     per-interface policy-routing tables count. Elsewhere routes are not
//     inspected: an interface with an address is assumed routed and
//     HasDefaultRoute is false.
//
// # Media
//
// [Interface.Medium] is a guess; see [List] for the Linux heuristics.
// Other systems always report [MediumOther]. [MediumSatellite] is never
// guessed: a terminal looks like any Ethernet link, so that medium only
// comes from configuration.
//
// # Watching
//
// [List] and [Watch] see the network namespace of the calling process
// (and read the /sys mounted in it, as `ip netns exec` arranges).
//
// [Watch] reports interfaces that become usable, stop being usable or
// change. On Linux it subscribes to rtnetlink (link, IPv4/IPv6 address and
// IPv4/IPv6 route groups) to wake up promptly, re-lists after a short
// debounce, and also re-lists every 10 s as a safety net; where netlink is
// unavailable (and on other systems) it polls every 2 s.
package ifwatch

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"braid/internal/notify"
)

// Media guessed or configured for an interface.
const (
	MediumEthernet  = "ethernet"
	MediumWiFi      = "wifi"
	MediumCellular  = "cellular"
	MediumSatellite = "satellite" // never guessed, only configured
	MediumOther     = "other"
)

// Interface is one usable network interface.
type Interface struct {
	Name  string
	Index int
	// Addrs are the interface's global unicast addresses with their prefix
	// lengths, IPv4 first, each family in ascending order.
	Addrs []netip.Prefix
	// Medium is the guessed medium: "ethernet", "wifi", "cellular" or
	// "other" ("satellite" is never guessed, only configured).
	Medium string
	// HasDefaultRoute is true when a default route (IPv4 or IPv6, any
	// table) leaves through this interface.
	HasDefaultRoute bool
}

// Event is one change in the set of usable interfaces. Each slice is
// sorted by name.
type Event struct {
	// Added interfaces became usable. The first event of a [Watch] lists
	// every usable interface here.
	Added []Interface
	// Removed interfaces are gone or no longer usable (down, no carrier,
	// no global address or no route). They carry their last known state.
	Removed []Interface
	// Changed interfaces kept their name and index but their addresses,
	// medium or default route changed; they carry the new state.
	Changed []Interface
}

func (e Event) empty() bool {
	return len(e.Added) == 0 && len(e.Removed) == 0 && len(e.Changed) == 0
}

// rawLink is one interface as the platform reports it, before filtering.
// The interface source is a package variable so tests can inject links.
type rawLink struct {
	Name     string
	Index    int
	Up       bool // administratively up (IFF_UP)
	Running  bool // operationally up, has carrier (IFF_RUNNING)
	Loopback bool
	// Addrs holds every usable address of any scope; build keeps the
	// global unicast ones.
	Addrs []netip.Prefix
	// HasRoute: some route leaves through the interface (including a
	// default route). HasDefaultRoute: a default route does.
	HasRoute        bool
	HasDefaultRoute bool
}

// Package variables, swapped by tests. Watch copies them when it starts.
var (
	// sysfsRoot is where sysfs is mounted; medium guessing reads
	// sysfsRoot/class/net/NAME.
	sysfsRoot = "/sys"
	// source lists the interfaces and their routes.
	source = systemLinks
	// mediumOf guesses an interface's medium from its name.
	mediumOf = platformMedium
	// newWaker opens the change notification source; an error means
	// polling.
	newWaker = platformWaker

	debounce     = 200 * time.Millisecond // netlink wake -> re-list
	slowInterval = 10 * time.Second       // safety-net re-list with netlink
	pollInterval = 2 * time.Second        // re-list without netlink
)

// List returns the usable interfaces now, sorted by name.
//
// Medium heuristics on Linux, from sysfs (/sys/class/net/NAME), first
// match wins:
//
//  1. "wifi": a wireless/ or phy80211 entry exists, or uevent says
//     DEVTYPE=wlan.
//  2. "cellular": uevent says DEVTYPE=wwan (usbnet modems flagged WWAN:
//     qmi_wwan, cdc_mbim, huawei_cdc_ncm, modem cdc_ncm/cdc_ether, ...);
//     or the name starts with wwan, rmnet or ccmni; or device/driver
//     points at a modem-only driver (qmi_wwan, cdc_mbim, huawei_cdc_ncm,
//     sierra_net, GobiNet, mhi_net, ipa, hso, ...); or the name starts
//     with usb and the driver is a phone-tethering one (rndis_host,
//     cdc_ether, cdc_ncm, cdc_eem, ipheth); or the link type is
//     ARPHRD_RAWIP (519, used only by modem drivers); or it is
//     ARPHRD_NONE (65534) with a qmi/raw_ip entry.
//  3. "ethernet": link type 1 (ARPHRD_ETHER) backed by a device (a
//     device entry exists; veth, bridges, bonds, VLANs, dummies and
//     macvlans have none).
//  4. "other": everything else, e.g. veth, tun/tap, WireGuard, bridges,
//     dummies. These are still usable when they have an address and a
//     route.
func List() ([]Interface, error) {
	return listWith(source, mediumOf)
}

func listWith(src func() ([]rawLink, error), medium func(string) string) ([]Interface, error) {
	links, err := src()
	if err != nil {
		return nil, err
	}
	return build(links, medium), nil
}

// build keeps the usable links, guesses their media and sorts them by
// name.
func build(links []rawLink, medium func(string) string) []Interface {
	var out []Interface
	for _, l := range links {
		if !l.Up || !l.Running || l.Loopback || l.Name == "" {
			continue
		}
		if !l.HasRoute && !l.HasDefaultRoute {
			continue
		}
		addrs := globalAddrs(l.Addrs)
		if len(addrs) == 0 {
			continue
		}
		out = append(out, Interface{
			Name:            l.Name,
			Index:           l.Index,
			Addrs:           addrs,
			Medium:          medium(l.Name),
			HasDefaultRoute: l.HasDefaultRoute,
		})
	}
	slices.SortFunc(out, func(a, b Interface) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// globalAddrs returns the global unicast prefixes, sorted and
// deduplicated. Each keeps the interface's own address (it is not masked);
// IPv4-mapped IPv6 addresses are turned into IPv4 ones.
func globalAddrs(in []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range in {
		if !p.IsValid() {
			continue
		}
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() {
			a = a.Unmap()
			bits = max(bits-96, 0)
		}
		a = a.WithZone("")
		if !a.IsGlobalUnicast() {
			continue
		}
		out = append(out, netip.PrefixFrom(a, bits))
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func (i Interface) clone() Interface {
	i.Addrs = slices.Clone(i.Addrs)
	return i
}

func sameState(a, b Interface) bool {
	return a.Medium == b.Medium && a.HasDefaultRoute == b.HasDefaultRoute && slices.Equal(a.Addrs, b.Addrs)
}

// diff computes the event that takes prev to cur. Interfaces are matched
// by name; a name whose index changed (deleted and re-created) is reported
// as removed and added.
func diff(prev, cur []Interface) Event {
	old := make(map[string]Interface, len(prev))
	for _, i := range prev {
		old[i.Name] = i
	}
	var ev Event
	seen := make(map[string]bool, len(cur))
	for _, c := range cur {
		seen[c.Name] = true
		o, ok := old[c.Name]
		switch {
		case !ok:
			ev.Added = append(ev.Added, c.clone())
		case o.Index != c.Index:
			ev.Removed = append(ev.Removed, o.clone())
			ev.Added = append(ev.Added, c.clone())
		case !sameState(o, c):
			ev.Changed = append(ev.Changed, c.clone())
		}
	}
	for _, o := range prev {
		if !seen[o.Name] {
			ev.Removed = append(ev.Removed, o.clone())
		}
	}
	byName := func(a, b Interface) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(ev.Removed, byName)
	return ev
}

// waker delivers change notifications: run calls wake for each batch of
// notifications until close is called (then it returns an error).
type waker interface {
	run(wake func()) error
	close() error
}

// Watch reports changes in the usable interfaces that filter accepts (a
// nil filter accepts all). The first event lists every current interface
// as Added (and is sent even when there are none); later events are sent
// only when something changed. The channel closes when ctx ends, after
// every goroutine Watch started has stopped.
//
// Events are never dropped: while the receiver is busy the watcher waits,
// and each event is computed against what the receiver last got, so a
// slow receiver sees the changes coalesced. filter is never called
// concurrently with itself.
//
// Watch fails only when ctx is already done or the first listing fails.
func Watch(ctx context.Context, filter func(Interface) bool) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &watcher{
		src:      source,
		medium:   mediumOf,
		filter:   filter,
		debounce: debounce,
		slow:     slowInterval,
		poll:     pollInterval,
	}
	// Subscribe before the first listing so no change falls in between.
	wk, err := newWaker()
	if err != nil {
		wk = nil
	}
	cur, err := w.list()
	if err != nil {
		if wk != nil {
			wk.close()
		}
		return nil, err
	}
	out := make(chan Event, 1)
	out <- Event{Added: cloneAll(cur)}
	go w.loop(ctx, wk, cur, out)
	return out, nil
}

type watcher struct {
	src                  func() ([]rawLink, error)
	medium               func(string) string
	filter               func(Interface) bool
	debounce, slow, poll time.Duration
}

func (w *watcher) list() ([]Interface, error) {
	all, err := listWith(w.src, w.medium)
	if err != nil || w.filter == nil {
		return all, err
	}
	kept := all[:0]
	for _, i := range all {
		if w.filter(i) {
			kept = append(kept, i)
		}
	}
	return kept, nil
}

func cloneAll(in []Interface) []Interface {
	if len(in) == 0 {
		return nil
	}
	out := make([]Interface, len(in))
	for i, x := range in {
		out[i] = x.clone()
	}
	return out
}

func (w *watcher) loop(ctx context.Context, wk waker, prev []Interface, out chan<- Event) {
	defer close(out)

	wakeC := make(chan struct{}, 1)
	deadC := make(chan struct{})
	interval := w.poll
	if wk != nil {
		interval = w.slow
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk.run(func() { notify.Signal(wakeC) })
			// Closed by us, or failed: either way fall back to polling.
			close(deadC)
		}()
		defer func() {
			wk.close()
			wg.Wait()
		}()
	}

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}

	for {
		select {
		case <-ctx.Done():
			return
		case <-wakeC:
			// Coalesce a burst of notifications (an interface coming up
			// brings link, address and route messages) into one listing,
			// at most debounce after the first of them.
			arm(w.debounce)
			continue
		case <-deadC:
			deadC = nil
			ticker.Reset(w.poll)
		case <-timer.C:
			armed = false
		case <-ticker.C:
		}

		cur, err := w.list()
		if err != nil {
			// Keep the last state and try again soon.
			arm(w.poll)
			continue
		}
		ev := diff(prev, cur)
		if ev.empty() {
			continue
		}
		select {
		case out <- ev:
			prev = cur
		case <-ctx.Done():
			return
		}
	}
}

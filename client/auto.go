package client

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"braid/internal/ifwatch"
	"braid/internal/netx"
	"braid/internal/notify"
	"braid/transport"
)

// autoPaths turns network interfaces into paths and follows them as they
// come and go (--path auto). It keeps the usable interfaces of the moment:
// a new session joins over them (dialers), and follow brings the session
// in use up to date as interfaces change.
type autoPaths struct {
	cfg    *Config
	events <-chan ifwatch.Event
	cancel context.CancelFunc
	done   chan struct{} // follow has returned

	mu      sync.Mutex
	ifs     map[string]autoIf // the usable interfaces, by name
	gen     uint64            // the last generation handed out
	next    pathSession       // a new session for follow to take over
	nextHas map[string]uint64
	kick    chan struct{} // cap 1: next is set
}

// autoIf is one usable interface. gen changes whenever the interface
// does: a session whose path was made at another generation reconnects it.
type autoIf struct {
	i   ifwatch.Interface
	gen uint64
}

// pathSession is what follow changes: the paths of a session.
// *transport.Client is one; tests use a fake.
type pathSession interface {
	AddPath(transport.PathDialer) error
	RemovePath(name string) error
	Done() <-chan struct{}
	Err() error
}

var _ pathSession = (*transport.Client)(nil)

// startAutoPaths lists the usable interfaces and follows them (follow)
// until stop.
func startAutoPaths(cfg *Config) (*autoPaths, error) {
	taken := map[string]bool{}
	for _, p := range cfg.Paths {
		taken[p.Name] = true
		if p.Bind.Device != "" {
			taken[p.Bind.Device] = true
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	events, err := ifwatch.Watch(ctx, func(i ifwatch.Interface) bool { return !taken[i.Name] })
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch network interfaces: %w", err)
	}
	a := &autoPaths{cfg: cfg, events: events, cancel: cancel, done: make(chan struct{}),
		ifs: map[string]autoIf{}, kick: make(chan struct{}, 1)}
	first, ok := <-events // the watcher lists every interface first
	if !ok {
		cancel()
		return nil, fmt.Errorf("watch network interfaces: stopped")
	}
	a.apply(first)
	go a.follow()
	return a, nil
}

// dialers returns a path for each usable interface, and the generation of
// each, for a new session.
func (a *autoPaths) dialers() ([]transport.PathDialer, map[string]uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	names := slices.Sorted(maps.Keys(a.ifs))
	pds := make([]transport.PathDialer, 0, len(names))
	has := make(map[string]uint64, len(names))
	for _, n := range names {
		ai := a.ifs[n]
		pds = append(pds, a.dialer(ai.i))
		has[n] = ai.gen
	}
	return pds, has
}

// use hands follow a new session, joined over the interfaces has lists.
func (a *autoPaths) use(sess pathSession, has map[string]uint64) {
	a.mu.Lock()
	a.next, a.nextHas = sess, has
	a.mu.Unlock()
	notify.Signal(a.kick)
}

// apply records an interface event.
func (a *autoPaths) apply(ev ifwatch.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, i := range ev.Removed {
		delete(a.ifs, i.Name)
	}
	for _, i := range slices.Concat(ev.Changed, ev.Added) {
		if strictRPFilter(i.Name) {
			a.cfg.Logger.Warn("strict reverse-path filtering on this interface may drop the concentrator's replies; "+
				"set net.ipv4.conf.all.rp_filter and this interface's to 2 (loose)", "path", i.Name)
		}
		a.gen++
		a.ifs[i.Name] = autoIf{i, a.gen}
	}
}

// strictRPFilter reports whether Linux's strict reverse-path filter is on
// for an interface: it drops replies that arrive on an interface other than
// the one the route back would use, which is every path but one when all
// paths reach the same concentrator address. The effective value is the
// larger of "all" and the interface's own.
func strictRPFilter(ifname string) bool {
	read := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + name + "/rp_filter")
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	return max(read("all"), read(ifname)) == 1
}

func (a *autoPaths) dialer(i ifwatch.Interface) transport.PathDialer {
	medium := i.Medium
	if _, ok := Media[medium]; !ok {
		medium = "other"
	}
	return a.cfg.pathDialer(PathConfig{Name: i.Name, Bind: netx.Bind{Device: i.Name},
		Medium: medium, Operator: "own"})
}

// follow applies interface events to the session in use, and brings each
// new session up to date with the interfaces that changed while it
// joined, until stop.
func (a *autoPaths) follow() {
	defer close(a.done)
	var sess pathSession
	var has map[string]uint64 // the generation of each of sess's automatic paths
	for {
		select {
		case ev, ok := <-a.events:
			if !ok {
				return
			}
			a.apply(ev)
			if sess != nil {
				a.reconcile(sess, has, slog.LevelInfo)
			}
		case <-a.kick:
			a.mu.Lock()
			sess, has = a.next, a.nextHas
			a.next, a.nextHas = nil, nil
			a.mu.Unlock()
			if sess != nil {
				a.reconcile(sess, has, slog.LevelDebug)
			}
		}
	}
}

// reconcile closes sess's paths over interfaces that are gone, reconnects
// those over interfaces that changed and adds the new ones; has is
// updated. Changes are logged at level.
func (a *autoPaths) reconcile(sess pathSession, has map[string]uint64, level slog.Level) {
	select {
	case <-sess.Done():
		return // the next session will join over the interfaces of its time
	default:
	}
	log := a.cfg.Logger
	a.mu.Lock()
	want := maps.Clone(a.ifs)
	a.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(has)) {
		if _, ok := want[name]; !ok {
			delete(has, name)
			if err := sess.RemovePath(name); err == nil {
				log.Log(context.Background(), level, "interface gone: path closed", "path", name)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		ai := want[name]
		gen, ok := has[name]
		if ok && gen == ai.gen {
			continue
		}
		has[name] = ai.gen
		msg := "new interface: path added"
		if ok { // new addresses: reconnect from them
			sess.RemovePath(name)
			msg = "interface changed: path reconnecting"
		}
		if err := sess.AddPath(a.dialer(ai.i)); err != nil {
			if sess.Err() == nil {
				log.Warn("path not added", "path", name, "err", err)
			}
			continue
		}
		log.Log(context.Background(), level, msg, "path", name, "medium", ai.i.Medium)
	}
}

// stop ends the watcher and waits for follow, which reads its events
// until they end.
func (a *autoPaths) stop() {
	a.cancel()
	<-a.done
}

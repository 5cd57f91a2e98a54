package client

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"braid/internal/ifwatch"
	"braid/internal/netx"
	"braid/transport"
)

// autoPaths turns network interfaces into paths and follows them as they
// come and go (--path auto).
type autoPaths struct {
	cfg     *Config
	events  <-chan ifwatch.Event
	cancel  context.CancelFunc
	initial []transport.PathDialer
}

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
	a := &autoPaths{cfg: cfg, events: events, cancel: cancel}
	first, ok := <-events // the watcher lists every interface first
	if !ok {
		cancel()
		return nil, fmt.Errorf("watch network interfaces: stopped")
	}
	for _, i := range first.Added {
		a.initial = append(a.initial, a.dialer(i))
	}
	return a, nil
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
	if strictRPFilter(i.Name) {
		a.cfg.Logger.Warn("strict reverse-path filtering on this interface may drop the concentrator's replies; "+
			"set net.ipv4.conf.all.rp_filter and this interface's to 2 (loose)", "path", i.Name)
	}
	medium := i.Medium
	if _, ok := Media[medium]; !ok {
		medium = "other"
	}
	return a.cfg.pathDialer(PathConfig{Name: i.Name, Bind: netx.Bind{Device: i.Name},
		Medium: medium, Operator: "own"})
}

// follow adds and removes paths as interfaces change, until stop.
func (a *autoPaths) follow(sess *transport.Client) {
	log := a.cfg.Logger
	for ev := range a.events {
		for _, i := range ev.Removed {
			if err := sess.RemovePath(i.Name); err == nil {
				log.Info("interface gone: path closed", "path", i.Name)
			}
		}
		for _, i := range ev.Changed {
			// New addresses: reconnect from them.
			sess.RemovePath(i.Name)
			if err := sess.AddPath(a.dialer(i)); err != nil {
				log.Warn("interface changed: path not re-added", "path", i.Name, "err", err)
			} else {
				log.Info("interface changed: path reconnecting", "path", i.Name)
			}
		}
		for _, i := range ev.Added {
			if err := sess.AddPath(a.dialer(i)); err != nil {
				log.Warn("new interface: path not added", "path", i.Name, "err", err)
			} else {
				log.Info("new interface: path added", "path", i.Name, "medium", i.Medium)
			}
		}
	}
}

func (a *autoPaths) stop() {
	a.cancel()
	for range a.events { // drain until the watcher closes it
	}
}

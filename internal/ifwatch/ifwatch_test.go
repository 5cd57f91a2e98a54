package ifwatch

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Re-executed inside a network namespace by the namespace test.
	if code, ok := helperMain(); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, pfx(s))
	}
	return out
}

func fakeMedium(name string) string {
	if name == "wlan0" {
		return MediumWiFi
	}
	return MediumOther
}

func TestBuildFilters(t *testing.T) {
	up := func(name string, index int, addrs ...string) rawLink {
		return rawLink{Name: name, Index: index, Up: true, Running: true, Addrs: pfxs(addrs...), HasRoute: true}
	}
	lo := up("lo", 1, "127.0.0.1/8", "::1/128", "203.0.113.9/32") // an anycast address on lo
	lo.Loopback = true
	down := up("eth1", 3, "192.0.2.20/24")
	down.Up = false
	down.Running = false
	noCarrier := up("eth2", 4, "192.0.2.30/24")
	noCarrier.Running = false
	noAddr := up("eth3", 5)
	linkLocal := up("eth4", 6, "fe80::1/64", "169.254.1.1/16")
	noRoute := up("eth5", 7, "192.0.2.50/32")
	noRoute.HasRoute = false
	multicastOnly := up("eth6", 8, "224.0.0.1/32")
	eth0 := up("eth0", 2, "fe80::2/64", "2001:db8::5/64", "192.0.2.10/24", "192.0.2.10/24")
	eth0.HasDefaultRoute = true
	wlan := up("wlan0", 9, "::ffff:10.1.2.3/120")
	wlan.HasRoute = false
	wlan.HasDefaultRoute = true // a default route alone is enough
	wg := up("wg0", 10, "10.9.0.2/32")

	got := build([]rawLink{wlan, lo, down, noCarrier, noAddr, linkLocal, noRoute, multicastOnly, eth0, wg}, fakeMedium)
	want := []Interface{
		{Name: "eth0", Index: 2, Addrs: pfxs("192.0.2.10/24", "2001:db8::5/64"), Medium: MediumOther, HasDefaultRoute: true},
		{Name: "wg0", Index: 10, Addrs: pfxs("10.9.0.2/32"), Medium: MediumOther},
		{Name: "wlan0", Index: 9, Addrs: pfxs("10.1.2.3/24"), Medium: MediumWiFi, HasDefaultRoute: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("build:\n got %+v\nwant %+v", got, want)
	}
}

// fakeSource is an injectable interface source whose links tests change.
type fakeSource struct {
	mu    sync.Mutex
	links []rawLink
	err   error
	calls atomic.Int64
}

func (f *fakeSource) set(links ...rawLink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links = links
}

func (f *fakeSource) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSource) list() ([]rawLink, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := make([]rawLink, len(f.links))
	for i, l := range f.links {
		l.Addrs = slices.Clone(l.Addrs)
		out[i] = l
	}
	return out, nil
}

// fakeWaker delivers a wake for each value sent on c; failing makes run
// return at once, as if the subscription broke.
type fakeWaker struct {
	c       chan struct{}
	done    chan struct{}
	once    sync.Once
	failing bool
	closed  atomic.Bool
}

func newFakeWaker() *fakeWaker {
	return &fakeWaker{c: make(chan struct{}), done: make(chan struct{})}
}

func (w *fakeWaker) run(wake func()) error {
	if w.failing {
		return errors.New("subscription broke")
	}
	for {
		select {
		case <-w.c:
			wake()
		case <-w.done:
			return errors.New("closed")
		}
	}
}

func (w *fakeWaker) close() error {
	w.closed.Store(true)
	w.once.Do(func() { close(w.done) })
	return nil
}

// setup swaps the package variables for a test and restores them after.
func setup(t *testing.T, src *fakeSource, wk *fakeWaker) {
	t.Helper()
	oldSource, oldMedium, oldWaker := source, mediumOf, newWaker
	oldDebounce, oldSlow, oldPoll := debounce, slowInterval, pollInterval
	t.Cleanup(func() {
		source, mediumOf, newWaker = oldSource, oldMedium, oldWaker
		debounce, slowInterval, pollInterval = oldDebounce, oldSlow, oldPoll
	})
	source = src.list
	mediumOf = fakeMedium
	if wk == nil {
		newWaker = func() (waker, error) { return nil, errors.New("no netlink in this test") }
	} else {
		newWaker = func() (waker, error) { return wk, nil }
	}
	debounce = 20 * time.Millisecond
	slowInterval = time.Hour
	pollInterval = 20 * time.Millisecond
}

func link(name string, index int, addrs ...string) rawLink {
	return rawLink{Name: name, Index: index, Up: true, Running: true, Addrs: pfxs(addrs...), HasRoute: true}
}

func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed early")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	panic("unreachable")
}

func names(is []Interface) []string {
	var out []string
	for _, i := range is {
		out = append(out, i.Name)
	}
	return out
}

// drain cancels the watch and waits for the channel to close.
func drain(t *testing.T, cancel context.CancelFunc, ch <-chan Event) {
	t.Helper()
	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("event channel not closed 5 s after cancel")
		}
	}
}

func TestWatchPolling(t *testing.T) {
	src := &fakeSource{}
	src.set(link("eth0", 2, "192.0.2.1/24"), link("eth1", 1, "203.0.113.1/24"))
	setup(t, src, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}

	ev := recv(t, ch)
	if got := names(ev.Added); !slices.Equal(got, []string{"eth0", "eth1"}) || ev.Removed != nil || ev.Changed != nil {
		t.Fatalf("first event: %+v", ev)
	}

	// A new interface.
	src.set(link("eth0", 2, "192.0.2.1/24"), link("eth1", 1, "203.0.113.1/24"), link("wlan0", 3, "198.51.100.7/24"))
	ev = recv(t, ch)
	if len(ev.Added) != 1 || ev.Added[0].Name != "wlan0" || ev.Added[0].Medium != MediumWiFi || ev.Removed != nil || ev.Changed != nil {
		t.Fatalf("add: %+v", ev)
	}

	// Addresses change; a default route appears elsewhere.
	eth0 := link("eth0", 2, "192.0.2.1/24", "2001:db8::1/64")
	wlan := link("wlan0", 3, "198.51.100.7/24")
	wlan.HasDefaultRoute = true
	src.set(eth0, link("eth1", 1, "203.0.113.1/24"), wlan)
	ev = recv(t, ch)
	if got := names(ev.Changed); !slices.Equal(got, []string{"eth0", "wlan0"}) || ev.Added != nil || ev.Removed != nil {
		t.Fatalf("change: %+v", ev)
	}
	if !slices.Equal(ev.Changed[0].Addrs, pfxs("192.0.2.1/24", "2001:db8::1/64")) || !ev.Changed[1].HasDefaultRoute {
		t.Fatalf("change: %+v", ev)
	}

	// eth0 re-created under a new index, eth1 vanishes, wlan0 loses carrier.
	wlan.Running = false
	src.set(link("eth0", 7, "192.0.2.1/24", "2001:db8::1/64"), wlan)
	ev = recv(t, ch)
	if got := names(ev.Removed); !slices.Equal(got, []string{"eth0", "eth1", "wlan0"}) {
		t.Fatalf("removed: %+v", ev)
	}
	if len(ev.Added) != 1 || ev.Added[0].Name != "eth0" || ev.Added[0].Index != 7 || ev.Removed[0].Index != 2 {
		t.Fatalf("re-created: %+v", ev)
	}

	// A failing listing keeps the state; recovery reports nothing new.
	src.setErr(errors.New("boom"))
	time.Sleep(100 * time.Millisecond)
	src.setErr(nil)
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event after a transient error: %+v", ev)
	case <-time.After(150 * time.Millisecond):
	}

	drain(t, cancel, ch)
}

func TestWatchFilter(t *testing.T) {
	src := &fakeSource{}
	src.set(link("eth0", 2, "192.0.2.1/24"), link("veth0", 3, "10.0.0.1/24"))
	setup(t, src, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, func(i Interface) bool { return i.Name != "veth0" })
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, ch); !slices.Equal(names(ev.Added), []string{"eth0"}) {
		t.Fatalf("first event: %+v", ev)
	}
	// Changes to a filtered-out interface are not reported.
	src.set(link("eth0", 2, "192.0.2.1/24"), link("veth0", 3, "10.0.0.2/24"), link("veth1", 4, "10.0.1.1/24"))
	if ev := recv(t, ch); !slices.Equal(names(ev.Added), []string{"veth1"}) || ev.Changed != nil {
		t.Fatalf("event: %+v", ev)
	}
	drain(t, cancel, ch)
}

func TestWatchEmptyFirstEvent(t *testing.T) {
	src := &fakeSource{}
	setup(t, src, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, ch); !ev.empty() {
		t.Fatalf("first event: %+v", ev)
	}
	drain(t, cancel, ch)
}

func TestWatchWakeDebounced(t *testing.T) {
	src := &fakeSource{}
	src.set(link("eth0", 2, "192.0.2.1/24"))
	wk := newFakeWaker()
	setup(t, src, wk)
	debounce = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ch)
	before := src.calls.Load()

	// A burst of notifications leads to one listing, about debounce later.
	src.set(link("eth0", 2, "192.0.2.1/24"), link("eth1", 3, "198.51.100.1/24"))
	start := time.Now()
	for range 20 {
		wk.c <- struct{}{}
	}
	ev := recv(t, ch)
	if el := time.Since(start); el < debounce/2 || el > 2*time.Second {
		t.Errorf("event %v after the first notification, want about %v", el, debounce)
	}
	if !slices.Equal(names(ev.Added), []string{"eth1"}) {
		t.Fatalf("event: %+v", ev)
	}
	time.Sleep(3 * debounce)
	if n := src.calls.Load() - before; n < 1 || n > 2 {
		t.Errorf("%d listings for one burst of notifications, want 1 (2 at most)", n)
	}
	drain(t, cancel, ch)
	if !wk.closed.Load() {
		t.Error("waker not closed when the watch ended")
	}
}

func TestWatchWakerBreaksFallsBackToPolling(t *testing.T) {
	src := &fakeSource{}
	src.set(link("eth0", 2, "192.0.2.1/24"))
	wk := newFakeWaker()
	wk.failing = true
	setup(t, src, wk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ch)
	src.set()
	if ev := recv(t, ch); !slices.Equal(names(ev.Removed), []string{"eth0"}) {
		t.Fatalf("event: %+v", ev)
	}
	drain(t, cancel, ch)
}

func TestWatchErrors(t *testing.T) {
	src := &fakeSource{}
	wk := newFakeWaker()
	setup(t, src, wk)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Watch(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch with a done context: %v, want context.Canceled", err)
	}

	boom := errors.New("boom")
	src.setErr(boom)
	if _, err := Watch(context.Background(), nil); !errors.Is(err, boom) {
		t.Errorf("Watch with a failing first listing: %v, want %v", err, boom)
	}
	if !wk.closed.Load() {
		t.Error("waker left open after Watch failed")
	}
}

func TestEventsDoNotAlias(t *testing.T) {
	prev := []Interface{{Name: "eth0", Index: 2, Addrs: pfxs("192.0.2.1/24")}}
	cur := []Interface{{Name: "eth0", Index: 2, Addrs: pfxs("192.0.2.2/24")}}
	ev := diff(prev, cur)
	ev.Changed[0].Addrs[0] = pfx("203.0.113.1/24")
	if cur[0].Addrs[0] != pfx("192.0.2.2/24") {
		t.Fatal("event shares its address slice with the watcher's state")
	}
}

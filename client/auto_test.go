package client

import (
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"braid/internal/ifwatch"
	"braid/transport"
)

// fakePaths records what follow does to a session.
type fakePaths struct {
	ops  chan string
	done chan struct{}
}

func newFakePaths() *fakePaths {
	return &fakePaths{ops: make(chan string, 64), done: make(chan struct{})}
}

func (f *fakePaths) AddPath(pd transport.PathDialer) error { f.ops <- "+" + pd.Info.Name; return nil }
func (f *fakePaths) RemovePath(name string) error          { f.ops <- "-" + name; return nil }
func (f *fakePaths) Done() <-chan struct{}                 { return f.done }
func (f *fakePaths) Err() error                            { return nil }

var _ pathSession = (*fakePaths)(nil)

// expect waits for exactly these operations, in this order.
func (f *fakePaths) expect(t *testing.T, ops ...string) {
	t.Helper()
	for _, want := range ops {
		select {
		case got := <-f.ops:
			if got != want {
				t.Fatalf("path operation %q, want %q (of %v)", got, want, ops)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no path operation, want %q (of %v)", want, ops)
		}
	}
	select {
	case got := <-f.ops:
		t.Fatalf("unexpected path operation %q after %v", got, ops)
	case <-time.After(50 * time.Millisecond):
	}
}

func iface(name string) ifwatch.Interface { return ifwatch.Interface{Name: name, Medium: "ethernet"} }

// TestAutoPathsFollowSessions: automatic paths follow the session in use,
// and a session that joined while interfaces changed is brought up to
// date when it is handed over.
func TestAutoPathsFollowSessions(t *testing.T) {
	events := make(chan ifwatch.Event)
	cfg := &Config{Logger: slog.New(slog.DiscardHandler)}
	var once sync.Once
	a := &autoPaths{cfg: cfg, events: events, cancel: func() { once.Do(func() { close(events) }) },
		done: make(chan struct{}), ifs: map[string]autoIf{}, kick: make(chan struct{}, 1)}
	a.apply(ifwatch.Event{Added: []ifwatch.Interface{iface("wlan0"), iface("eth0")}})
	pds, has := a.dialers()
	var names []string
	for _, pd := range pds {
		names = append(names, pd.Info.Name)
	}
	if !slices.Equal(names, []string{"eth0", "wlan0"}) || len(has) != 2 {
		t.Fatalf("first session's paths: %v %v", names, has)
	}
	go a.follow()
	defer a.stop()

	// An interface comes while no session is up: the first session, which
	// joined without it, gets it when handed over.
	events <- ifwatch.Event{Added: []ifwatch.Interface{iface("wwan0")}}
	s1 := newFakePaths()
	a.use(s1, has)
	s1.expect(t, "+wwan0")
	events <- ifwatch.Event{Changed: []ifwatch.Interface{iface("wlan0")}}
	s1.expect(t, "-wlan0", "+wlan0")
	events <- ifwatch.Event{Removed: []ifwatch.Interface{iface("eth0")}}
	s1.expect(t, "-eth0")

	// The session ends; the next joins over the interfaces of the moment,
	// one of which goes before it is handed over.
	close(s1.done)
	_, has2 := a.dialers()
	events <- ifwatch.Event{Removed: []ifwatch.Interface{iface("wwan0")}}
	s1.expect(t) // an ended session is left alone
	s2 := newFakePaths()
	a.use(s2, has2)
	s2.expect(t, "-wwan0")
	events <- ifwatch.Event{Added: []ifwatch.Interface{iface("eth1")}}
	s2.expect(t, "+eth1")
	s1.expect(t)
}

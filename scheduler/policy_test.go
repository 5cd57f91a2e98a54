package scheduler

import (
	"strings"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	for _, name := range []string{"", "weighted", "minrtt", "roundrobin", "duplicate", "single:lte"} {
		p, err := New(name, 8, 2, 1024)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if name != "" && p.Name() != name {
			t.Fatalf("New(%q).Name() = %q", name, p.Name())
		}
	}
	for _, bad := range []string{"fastest", "single:", "Weighted"} {
		if _, err := New(bad, 8, 2, 1024); err == nil || !strings.Contains(err.Error(), "unknown policy") {
			t.Fatalf("New(%q): %v, want unknown policy", bad, err)
		}
	}
}

func states() []PathState {
	ms := time.Millisecond
	return []PathState{
		{Name: "a", Up: true, SRTT: 50 * ms, Rate: 5e6, QueueLimit: 1 << 20},
		{Name: "b", Up: true, SRTT: 20 * ms, Rate: 1e6, QueueLimit: 1 << 20},
		{Name: "c", Up: false, SRTT: 5 * ms, Rate: 9e6, QueueLimit: 1 << 20},
	}
}

func TestPlacement(t *testing.T) {
	get := func(name string) Policy {
		p, err := New(name, 8, 0, 1024)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ps := states()
	if i := get("minrtt").Place(ps, 1000, 0, 0, false); i != 1 {
		t.Errorf("minrtt chose %d, want the live path with the lowest RTT (1)", i)
	}
	full := states()
	full[1].Queued = 1 << 20
	if i := get("minrtt").Place(full, 1000, 0, 0, false); i != 0 {
		t.Errorf("minrtt with a full best path chose %d, want 0", i)
	}
	var seen []int
	for seq := range uint64(4) {
		seen = append(seen, get("roundrobin").Place(ps, 1000, 0, seq, false))
	}
	if seen[0] == seen[1] || seen[0] != seen[2] || seen[1] != seen[3] {
		t.Errorf("roundrobin placed %v, want alternation over the two live paths", seen)
	}
	for _, i := range seen {
		if i == 2 {
			t.Error("roundrobin used a down path")
		}
	}
	if i := get("single:b").Place(ps, 1000, 0, 0, false); i != 1 {
		t.Errorf("single:b chose %d", i)
	}
	if i := get("single:c").Place(ps, 1000, 0, 0, false); i != -1 {
		t.Errorf("single:c chose %d although c is down", i)
	}
	d := get("duplicate")
	if k, m := d.Code(5000, ps); k != 1 || m != 1 {
		t.Errorf("duplicate codes %d+%d on two live paths, want 1+1", k, m)
	}
	if a, b := d.Place(ps, 5000, 0, 0, false), d.Place(ps, 5000, 1, 0, false); a == b || a == 2 || b == 2 {
		t.Errorf("duplicate put copies on %d and %d, want the two live paths", a, b)
	}
	if k, m := d.Code(0, ps); k != 1 || m != 0 {
		t.Errorf("duplicate codes an empty block %d+%d", k, m)
	}
}

package tier

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"braid/scheduler"
)

// maxTier is a tier with every field set and every list at its limit that
// still fits in MaxEncoded bytes.
func maxTier() *Tier {
	t := &Tier{Name: strings.Repeat("T", MaxNameLen), RevenueGB: math.MaxFloat64, Classes: []Class{
		{Name: "default", SLA: scheduler.SLA{MinGoodput: 1, P99Latency: math.MaxInt64, ResidualLoss: math.Nextafter(1, 0),
			Survive: MaxSurvive, MaxCostGB: math.SmallestNonzeroFloat64}},
	}}
	ports := make([]PortRange, MaxPortRanges)
	for i := range ports {
		ports[i] = PortRange{uint16(2*i + 1), uint16(2*i + 1 + i%2)}
	}
	ports[MaxPortRanges-1] = PortRange{65535, 65535}
	t.Classes = append(t.Classes, Class{Name: "p", Ports: ports})
	users := make([]string, MaxUsers)
	for i := range users {
		users[i] = fmt.Sprint(i)
	}
	t.Classes = append(t.Classes, Class{Name: "u", Users: users})
	for i := len(t.Classes); i < MaxClasses; i++ {
		t.Classes = append(t.Classes, Class{Name: fmt.Sprint("c", i), Users: []string{"x"}})
	}
	return t
}

func TestBinaryRoundTrip(t *testing.T) {
	tiers := []*Tier{example().Tiers["basic"], example().Tiers["premium"], maxTier(),
		{Name: "x", Classes: []Class{{Name: "default"}}}, realtimeTier()}
	for _, tr := range tiers {
		t.Run(tr.Name[:1], func(t *testing.T) {
			prefix := []byte("hdr")
			b, err := tr.AppendBinary(prefix)
			if err != nil {
				t.Fatal(err)
			}
			if string(b[:3]) != "hdr" {
				t.Fatal("AppendBinary overwrote the prefix")
			}
			b = b[3:]
			if len(b) != tr.encodedLen() || len(b) > MaxEncoded {
				t.Errorf("encoded %d bytes, encodedLen %d", len(b), tr.encodedLen())
			}
			got, err := ParseBinary(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tr) {
				t.Errorf("round trip\ngot  %+v\nwant %+v", got, tr)
			}
			if again, _ := tr.AppendBinary(nil); !reflect.DeepEqual(again, b) {
				t.Error("encoding is not deterministic")
			}
		})
	}
}

func realtimeTier() *Tier {
	return &Tier{Name: "rt", RevenueGB: 3, Classes: []Class{{Name: "default"},
		{Name: "voice", Users: []string{"voip"}, SLA: scheduler.SLA{ResidualLoss: 0.001, Survive: 1,
			Deadline: 150 * time.Millisecond, MaxJitter: 30 * time.Millisecond}}}}
}

// Version 2 carries the real-time terms after the classes; version 1,
// for an older peer, leaves them out and is otherwise the same.
func TestBinaryRealtime(t *testing.T) {
	tr := realtimeTier()
	b, err := tr.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := tr.AppendBinaryV1(nil)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 2 || v1[0] != 1 || len(b) != len(v1)+32 {
		t.Fatalf("versions %d and %d, %d and %d bytes", b[0], v1[0], len(b), len(v1))
	}
	tail := b[len(v1):]
	for i, want := range []uint64{0, 0, uint64(150 * time.Millisecond), uint64(30 * time.Millisecond)} {
		if got := binary.BigEndian.Uint64(tail[8*i:]); got != want {
			t.Errorf("term %d: %d, want %d", i, got, want)
		}
	}
	old, err := ParseBinary(v1)
	if err != nil {
		t.Fatal(err)
	}
	if s := old.Classes[1].SLA; s.Deadline != 0 || s.ResidualLoss != 0.001 {
		t.Errorf("version 1 read back as %+v", s)
	}
	if tr.Classes[1].SLA.Deadline == 0 {
		t.Error("AppendBinaryV1 changed its tier")
	}
	// Version 2 without a real-time term has a version 1 form: refused.
	z := append([]byte{2}, v1[1:]...)
	z = append(z, make([]byte, 32)...)
	if _, err := ParseBinary(z); err == nil || !strings.Contains(err.Error(), "without real-time") {
		t.Errorf("version 2 of zeros: %v", err)
	}
	if !strings.Contains(tr.String(), "deadline=150ms jitter<=30ms") {
		t.Errorf("String: %s", tr.String())
	}
}

// The layout comment in wire.go, byte by byte, for the smallest tier.
func TestBinaryLayout(t *testing.T) {
	tr := &Tier{Name: "t", RevenueGB: 2, Classes: []Class{
		{Name: "default", SLA: scheduler.SLA{P99Latency: time.Millisecond, Survive: 1}},
		{Name: "c", Ports: []PortRange{{22, 23}}, Users: []string{"u"}},
	}}
	b, err := tr.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var w []byte
	f := func(v float64) { w = binary.BigEndian.AppendUint64(w, math.Float64bits(v)) }
	w = append(w, 1, 1, 't')
	f(2)
	w = append(w, 2)
	w = append(w, 7, 'd', 'e', 'f', 'a', 'u', 'l', 't')
	f(0)
	w = binary.BigEndian.AppendUint64(w, 1e6)
	f(0)
	w = append(w, 1)
	f(0)
	w = append(w, 0, 0)
	w = append(w, 1, 'c')
	f(0)
	w = binary.BigEndian.AppendUint64(w, 0)
	f(0)
	w = append(w, 0)
	f(0)
	w = append(w, 1, 0, 22, 0, 23, 1, 1, 'u')
	if !reflect.DeepEqual(b, w) {
		t.Errorf("encoding\n% x\nwant\n% x", b, w)
	}
}

func TestParseBinaryTruncated(t *testing.T) {
	for _, tr := range []*Tier{example().Tiers["premium"], maxTier()} {
		b, err := tr.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		for n := range len(b) {
			if _, err := ParseBinary(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %d of %d bytes: got %v, want ErrMalformed", tr.Name[:1], n, len(b), err)
			}
		}
		if _, err := ParseBinary(append(b, 0)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "trailing") {
			t.Errorf("trailing byte: got %v", err)
		}
	}
}

func TestParseBinaryRejects(t *testing.T) {
	good := &Tier{Name: "t", Classes: []Class{{Name: "default"}, {Name: "c", Ports: []PortRange{{22, 23}}, Users: []string{"u"}}}}
	enc, err := good.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets into enc, by the layout in wire.go.
	const (
		revenue   = 3
		nclasses  = 11
		goodput0  = 20
		p99_0     = 28
		loss0     = 36
		survive0  = 44
		cost0     = 45
		nports0   = 53
		nusers0   = 54
		class1    = 55
		nports1   = 55 + 2 + 33
		portLo1   = nports1 + 1
		nusers1   = nports1 + 5
		userName1 = nusers1 + 2
	)
	f64 := func(off int, v float64) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], math.Float64bits(v)); return b }
	}
	set := func(off int, v ...byte) func([]byte) []byte {
		return func(b []byte) []byte { copy(b[off:], v); return b }
	}
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"empty", func([]byte) []byte { return nil }, "truncated"},
		{"version 0", set(0, 0), "version 0"},
		{"version 3", set(0, 3), "version 3"},
		{"empty name", func(b []byte) []byte { return append([]byte{1, 0}, b[3:]...) }, "Name"},
		{"name with space", set(2, ' '), "Name"},
		{"name not ascii", set(2, 0xff), "Name"},
		{"nan revenue", f64(revenue, math.NaN()), "RevenueGB"},
		{"infinite revenue", f64(revenue, math.Inf(1)), "RevenueGB"},
		{"negative revenue", f64(revenue, -1), "RevenueGB"},
		{"negative zero revenue", f64(revenue, math.Copysign(0, -1)), "RevenueGB"},
		{"no classes", set(nclasses, 0), "0 classes"},
		{"17 classes", set(nclasses, 17), "17 classes"},
		{"default renamed", set(13, 'D'), "Classes[0]"},
		{"nan goodput", f64(goodput0, math.NaN()), "MinGoodput"},
		{"negative goodput", f64(goodput0, -5), "MinGoodput"},
		{"negative p99", set(p99_0, 0x80), "P99Latency"},
		{"nan loss", f64(loss0, math.NaN()), "ResidualLoss"},
		{"loss of one", f64(loss0, 1), "ResidualLoss"},
		{"survive 8", set(survive0, 8), "Survive"},
		{"infinite cost", f64(cost0, math.Inf(1)), "MaxCostGB"},
		{"default with ports", func(b []byte) []byte {
			return append(append(append([]byte{}, b[:nports0]...), 1, 0, 1, 0, 1), b[nports0+1:]...)
		}, "Classes[0]"},
		{"class named default", func(b []byte) []byte {
			return append(append(append([]byte{}, b[:class1]...), 7, 'd', 'e', 'f', 'a', 'u', 'l', 't'), b[class1+2:]...)
		}, "Classes[1]"},
		{"class matching all", func(b []byte) []byte {
			return append(append(append([]byte{}, b[:nports1]...), 0, 0), b[userName1+1:]...)
		}, "Classes[1]"},
		{"33 port ranges", set(nports1, 33), "33 port ranges"},
		{"port zero", set(portLo1, 0, 0), "Ports[0]"},
		{"port range reversed", set(portLo1, 0, 24), "Ports[0]"},
		{"33 users", set(nusers1, 33), "33 users"},
		{"empty user", func(b []byte) []byte { return append(b[:nusers1+1], 0) }, "Users[0]"},
		{"too long", func(b []byte) []byte { return append(b, make([]byte, MaxEncoded)...) }, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(append([]byte{}, enc...))
			_, err := ParseBinary(b)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

func TestAppendBinaryRefuses(t *testing.T) {
	big := maxTier()
	big.Classes[1].Users = []string{strings.Repeat("u", 255)}
	big.Classes[2].Users = []string{strings.Repeat("u", 255), strings.Repeat("v", 255)}
	bad := maxTier()
	bad.Classes[3].SLA.MaxCostGB = math.NaN()
	for _, tc := range []struct {
		name string
		t    *Tier
		want string
	}{
		{"too big", big, "more than 1000 bytes"},
		{"invalid", bad, "Classes[3].SLA.MaxCostGB: must be finite"},
		{"17 classes", &Tier{Name: "x", Classes: make([]Class, 17)}, "Classes"},
	} {
		b, err := tc.t.AppendBinary([]byte("hdr"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
		if string(b) != "hdr" {
			t.Errorf("%s: AppendBinary changed b to %q", tc.name, b)
		}
	}
}

func FuzzParseBinary(f *testing.F) {
	for _, tr := range []*Tier{example().Tiers["basic"], example().Tiers["premium"], maxTier()} {
		b, err := tr.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ParseBinary(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := tr.AppendBinary(nil)
		if err != nil {
			t.Fatalf("parsed tier does not encode: %v", err)
		}
		if string(enc) != string(b) {
			t.Fatalf("re-encoding differs:\n% x\n% x", enc, b)
		}
		back, err := ParseBinary(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, tr) {
			t.Fatalf("re-parse differs:\n%+v\n%+v", back, tr)
		}
	})
}

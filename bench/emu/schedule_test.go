package emu

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustSchedule(t testing.TB, csv string) *Schedule {
	t.Helper()
	s, err := ParseSchedule(strings.NewReader(csv), "sched.csv")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestShaperOutages(t *testing.T) {
	outages := []Outage{
		{From: time.Second, To: 2 * time.Second},
		{From: 3 * time.Second, To: 3500 * time.Millisecond},
		{From: 4 * time.Second, To: 4 * time.Second}, // empty: no effect
	}
	s := NewShaper(Link{Delay: 10 * time.Millisecond, Outages: outages}, 1)
	dropped := 0
	for i := range 5000 {
		rel := time.Duration(i) * time.Millisecond
		_, _, ok := s.Admit(t0.Add(rel), 1200) // the first Admit is the start
		inside := (rel >= time.Second && rel < 2*time.Second) || (rel >= 3*time.Second && rel < 3500*time.Millisecond)
		if ok == inside {
			t.Fatalf("packet at +%v: ok=%v, inside an outage=%v", rel, ok, inside)
		}
		if !ok {
			dropped++
		}
	}
	if st := s.Stats(); dropped != 1500 || st.DroppedOutage != 1500 || st.Admitted != 3500 {
		t.Errorf("dropped %d, stats %+v; want 1500 dropped by outages", dropped, st)
	}

	// An explicit start moves the outages with it.
	s = NewShaper(Link{Outages: outages}, 1)
	s.Start(t0.Add(-time.Second))
	if _, _, ok := s.Admit(t0, 100); ok {
		t.Error("packet 1 s after the start passed an outage from 1 s")
	}
	if _, _, ok := s.Admit(t0.Add(time.Second), 100); !ok {
		t.Error("packet 2 s after the start dropped, after the outage")
	}

	// The caller's slice is copied.
	l := Link{Outages: []Outage{{0, time.Hour}}}
	s = NewShaper(l, 1)
	l.Outages[0].To = 0
	if _, _, ok := s.Admit(t0, 100); ok {
		t.Error("Shaper followed a mutation of the caller's Outages")
	}
	if got := s.Link().Outages; len(got) != 1 || got[0].To != time.Hour {
		t.Errorf("Link().Outages = %v", got)
	}
}

// An outage flushes the bottleneck queue: packets still queued when it
// begins are lost, and the link comes back empty.
func TestShaperOutageFlushesQueue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		link  Link
		after time.Duration // departure of a packet arriving at 200 ms
	}{
		{"rate", Link{RateBps: 1e6}, 212 * time.Millisecond},                            // 12 ms per packet
		{"trace", Link{Trace: mustTrace(t, rangeMs(1, 12)...)}, 200 * time.Millisecond}, // one a ms
	} {
		l := tc.link
		l.QueueBytes = 1 << 20
		l.Outages = []Outage{{From: 100 * time.Millisecond, To: 200 * time.Millisecond}}
		s := NewShaper(l, 1)
		s.Start(t0)
		var admitted []time.Duration
		for range 20 {
			if at, _, ok := s.Admit(t0, 1500); ok {
				admitted = append(admitted, at.Sub(t0))
			}
		}
		// Rate: departures at 12, 24, ... 96 ms; trace: one a ms, 1..20.
		for _, d := range admitted {
			if d >= 100*time.Millisecond {
				t.Errorf("%s: packet leaving the queue at %v, in the outage, was kept", tc.name, d)
			}
		}
		if st := s.Stats(); int(st.DroppedOutage) != 20-len(admitted) {
			t.Errorf("%s: %d admitted, stats %+v", tc.name, len(admitted), st)
		}
		at, _, ok := s.Admit(t0.Add(200*time.Millisecond), 1500)
		if want := tc.after; !ok || at.Sub(t0) != want {
			t.Errorf("%s: first packet after the outage: ok=%v at +%v, want +%v on an empty link", tc.name, ok, at.Sub(t0), want)
		}
	}
}

func TestShaperSchedule(t *testing.T) {
	sched := mustSchedule(t, `time_s,rate_mbps,delay_ms,loss
0.5,,10,
1,,20,
2,,,1
3,,5,0
4,1,,
`)
	s := NewShaper(Link{Delay: time.Millisecond, Schedule: sched}, 1)
	s.Start(t0)
	ms := time.Millisecond
	for _, tc := range []struct {
		at    time.Duration
		delay time.Duration // -1: dropped
	}{
		{0, ms},                         // before the first row: the Link's
		{500*ms - 1, ms},                // just before
		{500 * ms, 10 * ms},             // the row applies at its time
		{999 * ms, 10 * ms},             // until the next
		{time.Second, 20 * ms},          //
		{2*time.Second - 1, 20 * ms},    //
		{2 * time.Second, -1},           // loss 1, delay unchanged
		{3 * time.Second, 5 * ms},       // loss back to 0
		{3999 * ms, 5 * ms},             //
		{4 * time.Second, 5*ms + 12*ms}, // 1 Mbit/s: 12 ms for 1500 bytes
		{time.Hour, 5*ms + 12*ms},       // the last row stays
	} {
		now := t0.Add(tc.at)
		at, _, ok := s.Admit(now, 1500)
		switch {
		case tc.delay < 0 && ok:
			t.Errorf("+%v: packet passed, want it lost", tc.at)
		case tc.delay >= 0 && (!ok || at.Sub(now) != tc.delay):
			t.Errorf("+%v: ok=%v delay %v, want %v", tc.at, ok, at.Sub(now), tc.delay)
		}
	}
	if st := s.Stats(); st.DroppedLoss != 1 {
		t.Errorf("stats %+v, want 1 loss", st)
	}

	// The default queue follows the scheduled rate; Link() stays the
	// caller's link.
	s = NewShaper(Link{RateBps: 100e6, Schedule: mustSchedule(t, "time_s,rate_mbps\n1,1\n")}, 1)
	s.Start(t0)
	n := 0
	for range 1000 {
		if _, _, ok := s.Admit(t0.Add(time.Second), 1500); ok {
			n++
		}
	}
	if n < 43 || n > 45 { // 64 KiB / 1500
		t.Errorf("at 1 Mbit/s, a burst filled %d packets of the default queue, want 64 KiB", n)
	}
	if got := s.Link().RateBps; got != 100e6 {
		t.Errorf("Link().RateBps = %v, want the caller's 100e6", got)
	}

	// A new schedule through SetLink counts from the same start.
	s = NewShaper(Link{}, 1)
	s.Start(t0)
	s.Admit(t0.Add(2*time.Second), 100)
	s.SetLink(Link{Schedule: mustSchedule(t, "time_s,delay_ms\n1,7\n3,8\n")})
	if at, _, _ := s.Admit(t0.Add(2*time.Second), 100); at.Sub(t0) != 2*time.Second+7*ms {
		t.Errorf("schedule set at +2s: delay %v, want the row from 1 s (7ms)", at.Sub(t0.Add(2*time.Second)))
	}
	// Start restarts it.
	s.Start(t0.Add(10 * time.Second))
	if at, _, _ := s.Admit(t0.Add(10*time.Second), 100); at.Sub(t0) != 10*time.Second {
		t.Errorf("after Start: delay %v, want none before the first row", at.Sub(t0.Add(10*time.Second)))
	}
}

func TestParseSchedule(t *testing.T) {
	s := mustSchedule(t, "\ufefftime_s, loss ,delay_ms\n# comment\n0,0.5,\n 1.5 ,,3\n")
	if s.Len() != 2 || s.Name() != "sched.csv" {
		t.Fatalf("Len %d, Name %q", s.Len(), s.Name())
	}
	r := s.rows[1]
	if r.at != 1500*time.Millisecond || r.loss != 0.5 || r.delay != 3*time.Millisecond || r.set != setLoss|setDelay {
		t.Errorf("second row %+v: want the loss carried over from the first", r)
	}
	if s := mustSchedule(t, "time_s,rate_mbps,delay_ms,loss\n"); s.Len() != 0 {
		t.Errorf("header only: %d rows", s.Len())
	}
}

func TestParseScheduleErrors(t *testing.T) {
	const hdr = "time_s,rate_mbps,delay_ms,loss\n"
	for _, tc := range []struct {
		in        string
		line, col int
		msg       string
	}{
		{"", 0, 0, "empty schedule"},
		{"time_s,rate,delay_ms\n", 1, 2, `unknown column "rate"`},
		{"rate_mbps,loss\n1,0\n", 1, 0, "no time_s column"},
		{"time_s,loss,loss\n", 1, 3, "appears twice"},
		{hdr + "0,10,5,0\n1,abc,5,0\n", 3, 2, `(rate_mbps): "abc" is not a number`},
		{hdr + "0,10,5,0\n0,10,5,0\n", 3, 1, "not after the previous row"},
		{hdr + "2,10,5,0\n1,10,5,0\n", 3, 1, "not after the previous row"},
		{hdr + "0,10,5,1.5\n", 2, 4, "(loss): loss 1.5 is not a fraction"},
		{hdr + "0,10,-5,0\n", 2, 3, "(delay_ms): delay -5 ms is out of range"},
		{hdr + "0,-1,5,0\n", 2, 2, "(rate_mbps): rate -1 Mbit/s is out of range"},
		{hdr + "-1,,,\n", 2, 1, "negative"},
		{hdr + ",1,,\n", 2, 1, "(time_s): the time is required"},
		{hdr + "0,NaN,,\n", 2, 2, "is not a number"},
		{hdr + "0,1,2\n", 2, 4, "the row has 3 fields, the header 4"},
		{hdr + "0,1,2,0,9\n", 2, 5, "the row has 5 fields, the header 4"},
		{hdr + "# ok\n\n0,1,2,0\n1,\"x,2,0\n", 5, 0, "quote"},
	} {
		_, err := ParseSchedule(strings.NewReader(tc.in), "sched.csv")
		var fe *FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%q: error %v, want a *FormatError", tc.in, err)
			continue
		}
		if fe.File != "sched.csv" || fe.Line != tc.line || fe.Column != tc.col {
			t.Errorf("%q: error at %s line %d column %d, want line %d column %d (%v)", tc.in, fe.File, fe.Line, fe.Column, tc.line, tc.col, err)
		}
		if msg := err.Error(); !strings.Contains(msg, tc.msg) || !strings.Contains(msg, "sched.csv") {
			t.Errorf("%q: message %q does not name the file and %q", tc.in, msg, tc.msg)
		}
	}
}

func TestLoadSchedule(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such.csv")
	if _, err := LoadSchedule(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v, want one naming %s", err, missing)
	}
	path := filepath.Join(dir, "s.csv")
	if err := os.WriteFile(path, []byte("time_s,rate_mbps,delay_ms,loss\n0,10,20,0.01\n5,,,x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSchedule(path)
	if want := path + " line 3, column 4 (loss)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("malformed file: error %v, want one naming %q", err, want)
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, seed := range []string{
		"time_s,rate_mbps,delay_ms,loss\n0,10,20,0.01\n1.5,,,\n",
		"time_s,loss\n0,1\n",
		"time_s\n",
		"",
		"time_s,rate_mbps\n1,\"2\n",
		"time_s,rate_mbps,delay_ms,loss\n0,1e400,,\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSchedule(strings.NewReader(in), "fuzz")
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.File != "fuzz" {
				t.Fatalf("error %v is not a *FormatError naming the input", err)
			}
			return
		}
		for i, r := range s.rows {
			if r.at < 0 || (i > 0 && r.at <= s.rows[i-1].at) || r.rate < 0 || r.delay < 0 || r.loss < 0 || r.loss > 1 {
				t.Fatalf("row %d: %+v", i, r)
			}
		}
		// Any parsed schedule drives a Shaper without trouble.
		sh := NewShaper(Link{Schedule: s}, 1)
		for i := range 10 {
			sh.Admit(t0.Add(time.Duration(i)*time.Second), 1500)
		}
	})
}

package emu

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"
)

// TraceMTU is the size of one delivery opportunity of a Trace: the bytes of
// one full-size packet, as in Mahimahi.
const TraceMTU = 1500

// maxTraceMs bounds a trace timestamp (about 34 years) so that trace times
// never overflow a time.Duration, however many times the trace loops.
const maxTraceMs = 1 << 40

// Trace is a Mahimahi capacity trace: the times of the delivery
// opportunities of a link whose capacity varies, as recorded on a real
// network. Each opportunity carries up to TraceMTU bytes. The trace loops:
// its opportunities repeat every Period.
//
// A Trace is immutable, so one Trace can be shared by any number of Links,
// Shapers and Relays, in any goroutines.
type Trace struct {
	name   string
	ms     []int64 // opportunity times in ms from the trace start, non-decreasing
	period time.Duration
}

// LoadMahimahi reads a Mahimahi trace file (see ParseMahimahi). Errors name
// the file, and the line for malformed content.
func LoadMahimahi(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		// The *PathError names the file; errors.Is(err, fs.ErrNotExist)
		// still works through the wrap.
		return nil, fmt.Errorf("emu: load trace: %w", err)
	}
	defer f.Close()
	return ParseMahimahi(f, path)
}

// ParseMahimahi reads a trace in Mahimahi format from r: one integer per
// line, the time in milliseconds from the trace start of one opportunity to
// deliver one 1500-byte packet; a time repeats when several packets may go
// in the same millisecond. Times must not decrease. Blank lines are skipped.
// The trace's period is its last time, at least 1 ms. name, usually the file
// name, is used in errors and by Name. A malformed line gives a
// *FormatError with its line number.
func ParseMahimahi(r io.Reader, name string) (*Trace, error) {
	t := &Trace{name: name}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		ms, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil || ms < 0 || ms > maxTraceMs {
			return nil, &FormatError{File: name, Line: line,
				Msg: fmt.Sprintf("%q is not a time in milliseconds (an integer from 0 to %d)", text, int64(maxTraceMs))}
		}
		if n := len(t.ms); n > 0 && ms < t.ms[n-1] {
			return nil, &FormatError{File: name, Line: line,
				Msg: fmt.Sprintf("time %d ms is before the previous line's %d ms; times must not decrease", ms, t.ms[n-1])}
		}
		t.ms = append(t.ms, ms)
	}
	if err := sc.Err(); err != nil {
		return nil, &FormatError{File: name, Line: line + 1, Msg: err.Error()}
	}
	if len(t.ms) == 0 {
		return nil, &FormatError{File: name, Msg: "no delivery opportunities (empty trace)"}
	}
	t.ms = slices.Clip(t.ms)
	t.period = time.Duration(max(t.ms[len(t.ms)-1], 1)) * time.Millisecond
	return t, nil
}

// Name returns the name the trace was parsed with, usually its file name.
func (t *Trace) Name() string { return t.name }

// Opportunities returns the number of delivery opportunities in one period.
func (t *Trace) Opportunities() int { return len(t.ms) }

// Period returns the length of the trace, after which it repeats: its last
// timestamp, at least 1 ms.
func (t *Trace) Period() time.Duration { return t.period }

// MeanRateBps returns the trace's average capacity in bits/s: one full-size
// packet per opportunity over one period.
func (t *Trace) MeanRateBps() float64 {
	return TraceMTU * 8 * float64(len(t.ms)) / t.period.Seconds()
}

// at returns the trace time of opportunity k, counted from the start of the
// first period across loops (k >= 0). As in Mahimahi, the opportunities of
// one period sit at their timestamps plus whole periods, so a trace that
// starts and ends with a timestamp has two opportunities at each loop point.
func (t *Trace) at(k int64) time.Duration {
	n := int64(len(t.ms))
	return time.Duration(k/n)*t.period + time.Duration(t.ms[k%n])*time.Millisecond
}

// firstAtOrAfter returns the index (as for at) of the first opportunity at
// trace time d or later; d >= 0.
func (t *Trace) firstAtOrAfter(d time.Duration) int64 {
	loop := int64(d / t.period)
	r := d - time.Duration(loop)*t.period
	if r == 0 && loop > 0 {
		// At a loop point, the previous loop's opportunities at the
		// period's end come first.
		loop--
		r = t.period
	}
	// Timestamps are whole ms: the first one not before r is the first
	// one not before r rounded up to a ms.
	ms := int64((r + time.Millisecond - 1) / time.Millisecond)
	i, _ := slices.BinarySearch(t.ms, ms)
	// i == len(t.ms) is the first opportunity of the next loop.
	return loop*int64(len(t.ms)) + int64(i)
}

// offset returns d as a trace time within the first period.
func (t *Trace) offset(d time.Duration) time.Duration {
	d %= t.period
	if d < 0 {
		d += t.period
	}
	return d
}

// FormatError reports malformed content in a trace or schedule.
type FormatError struct {
	File   string // the name given to the parser, usually the file's path
	Line   int    // 1-based; 0 when the error concerns the whole file
	Column int    // 1-based CSV field; 0 for line-based formats
	Field  string // the column's name, when known
	Msg    string
}

func (e *FormatError) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("emu: %s: %s", e.File, e.Msg)
	case e.Column == 0:
		return fmt.Sprintf("emu: %s line %d: %s", e.File, e.Line, e.Msg)
	case e.Field == "":
		return fmt.Sprintf("emu: %s line %d, column %d: %s", e.File, e.Line, e.Column, e.Msg)
	default:
		return fmt.Sprintf("emu: %s line %d, column %d (%s): %s", e.File, e.Line, e.Column, e.Field, e.Msg)
	}
}

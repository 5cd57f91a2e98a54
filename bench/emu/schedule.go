package emu

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Outage is an interval, relative to the Shaper's start (see Shaper.Start),
// during which the link carries nothing: packets that arrive in [From, To)
// are dropped, and so are packets still waiting in the bottleneck queue at
// From (an outage flushes the queue, as Relay.SetBroken does). Packets that
// left the bottleneck before From are already on the wire and still arrive
// after their Delay. An Outage with To <= From has no effect.
type Outage struct {
	From, To time.Duration
}

// Schedule is a piecewise-constant timetable of link changes (rate, delay,
// loss) relative to the Shaper's start. Each row applies from its time until
// the next row's; the last row applies for ever (a Schedule does not loop).
// Before the first row, and for the fields a row leaves unchanged, the
// Link's own values apply.
//
// A Schedule is immutable and may be shared between Links, Shapers and
// goroutines.
type Schedule struct {
	name string
	rows []scheduleRow
}

// scheduleRow holds the values in effect from at on: the row's own values
// and, for the fields it leaves empty, those of the rows before it.
type scheduleRow struct {
	at    time.Duration
	set   uint8 // which of the fields below some row up to this one sets
	rate  float64
	delay time.Duration
	loss  float64
}

const (
	setRate uint8 = 1 << iota
	setDelay
	setLoss
)

// maxRateMbps (1 Pbit/s) keeps the derived queue limit within an int.
const maxRateMbps = 1e9

// Schedule column names.
const (
	colTime  = "time_s"
	colRate  = "rate_mbps"
	colDelay = "delay_ms"
	colLoss  = "loss"
)

// LoadSchedule reads a CSV schedule file (see ParseSchedule). Errors name
// the file, and the line and column for malformed content.
func LoadSchedule(path string) (*Schedule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("emu: load schedule: %w", err)
	}
	defer f.Close()
	return ParseSchedule(f, path)
}

// ParseSchedule reads a CSV schedule from r. The first line is a header
// naming the columns, normally
//
//	time_s,rate_mbps,delay_ms,loss
//
// (any order; every column but time_s may be left out). Each further line
// is a row: the time in seconds from the Shaper's start, strictly greater
// than the previous row's; the rate in Mbit/s (0 means unlimited, as for
// Link.RateBps); the one-way delay in ms; the random loss probability as a
// fraction 0..1. An empty field leaves that value unchanged. Lines starting
// with # are comments. name, usually the file name, is used in errors and by
// Name. Malformed content gives a *FormatError with the line and column.
//
// A rate in a Schedule replaces Link.RateBps; it has no effect on a Link
// with a Trace.
func ParseSchedule(r io.Reader, name string) (*Schedule, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1 // checked below, with a clearer message

	header, err := cr.Read()
	if err == io.EOF {
		return nil, &FormatError{File: name, Msg: "empty schedule: want a header line " + colTime + "," + colRate + "," + colDelay + "," + colLoss}
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // byte order mark of spreadsheet exports
		}
		line, _ := cr.FieldPos(i)
		switch h {
		case colTime, colRate, colDelay, colLoss:
		default:
			return nil, &FormatError{File: name, Line: line, Column: i + 1,
				Msg: fmt.Sprintf("unknown column %q: want %s, %s, %s or %s", h, colTime, colRate, colDelay, colLoss)}
		}
		if seen[h] {
			return nil, &FormatError{File: name, Line: line, Column: i + 1, Msg: fmt.Sprintf("column %q appears twice", h)}
		}
		seen[h] = true
		cols[i] = h
	}
	if !seen[colTime] {
		line, _ := cr.FieldPos(0)
		return nil, &FormatError{File: name, Line: line, Msg: "the header has no " + colTime + " column"}
	}

	s := &Schedule{name: name}
	var cur scheduleRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(name, err)
		}
		if len(rec) != len(cols) {
			line, _ := cr.FieldPos(0)
			return nil, &FormatError{File: name, Line: line, Column: min(len(rec), len(cols)) + 1,
				Msg: fmt.Sprintf("the row has %d fields, the header %d", len(rec), len(cols))}
		}
		// Every row has a time: the header has a time_s column, the row a
		// field per column, and an empty time is an error.
		for i, field := range rec {
			field = strings.TrimSpace(field)
			line, _ := cr.FieldPos(i)
			bad := func(format string, args ...any) error {
				return &FormatError{File: name, Line: line, Column: i + 1, Field: cols[i], Msg: fmt.Sprintf(format, args...)}
			}
			if field == "" {
				if cols[i] == colTime {
					return nil, bad("the time is required")
				}
				continue
			}
			v, err := strconv.ParseFloat(field, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, bad("%q is not a number", field)
			}
			switch cols[i] {
			case colTime:
				if v < 0 {
					return nil, bad("time %v s is negative", v)
				}
				if v > float64(math.MaxInt64)/1e9/2 {
					return nil, bad("time %v s is too large", v)
				}
				at := time.Duration(math.Round(v * 1e9))
				if len(s.rows) > 0 && at <= s.rows[len(s.rows)-1].at {
					return nil, bad("time %v s is not after the previous row's %v s; rows must be in increasing time", v, s.rows[len(s.rows)-1].at.Seconds())
				}
				cur.at = at
			case colRate:
				if v < 0 || v > maxRateMbps {
					return nil, bad("rate %v Mbit/s is out of range (0 to %v)", v, float64(maxRateMbps))
				}
				cur.rate = v * 1e6
				cur.set |= setRate
			case colDelay:
				if v < 0 || v > float64(math.MaxInt64)/1e6/2 {
					return nil, bad("delay %v ms is out of range", v)
				}
				cur.delay = time.Duration(math.Round(v * 1e6))
				cur.set |= setDelay
			case colLoss:
				if v < 0 || v > 1 {
					return nil, bad("loss %v is not a fraction from 0 to 1", v)
				}
				cur.loss = v
				cur.set |= setLoss
			}
		}
		s.rows = append(s.rows, cur)
	}
	return s, nil
}

// csvError turns an encoding/csv error into a *FormatError.
func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		// pe.Column counts bytes, not fields.
		return &FormatError{File: name, Line: pe.Line, Msg: fmt.Sprintf("byte %d: %v", pe.Column, pe.Err)}
	}
	return fmt.Errorf("emu: read schedule %s: %w", name, err)
}

// Name returns the name the schedule was parsed with, usually its file name.
func (s *Schedule) Name() string { return s.name }

// Len returns the number of rows.
func (s *Schedule) Len() int { return len(s.rows) }

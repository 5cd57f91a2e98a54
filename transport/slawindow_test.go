package transport

import (
	"reflect"
	"testing"

	"braid/scheduler"
)

func TestSLAWindows(t *testing.T) {
	var nilW *SLAWindows
	nilW.note("gold", &scheduler.Decision{Classes: []scheduler.ClassDecision{{Name: "default"}}})
	if nilW.Counts() != nil {
		t.Error("a nil SLAWindows counted")
	}
	w := NewSLAWindows()
	met := scheduler.ClassDecision{Name: "default", Plan: scheduler.Plan{Explain: scheduler.Explain{Feasible: true}}}
	missed := scheduler.ClassDecision{Name: "voice"}
	w.note("gold", &scheduler.Decision{Classes: []scheduler.ClassDecision{met, missed}})
	w.note("gold", &scheduler.Decision{Classes: []scheduler.ClassDecision{met, {Name: "voice", Plan: scheduler.Plan{Explain: scheduler.Explain{Feasible: true}}}}})
	w.note("", &scheduler.Decision{Classes: []scheduler.ClassDecision{met}}) // no tier: no SLA
	w.note("bronze", &scheduler.Decision{Classes: []scheduler.ClassDecision{missed}})
	want := []SLACount{
		{Tier: "bronze", Class: "voice", Missed: 1},
		{Tier: "gold", Class: "default", Met: 2},
		{Tier: "gold", Class: "voice", Met: 1, Missed: 1},
	}
	if got := w.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("counts %+v, want %+v", got, want)
	}
}

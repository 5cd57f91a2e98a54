package transport

import "testing"

func TestMedian3(t *testing.T) {
	var m median3
	for i, tc := range []struct{ x, want float64 }{
		{20, 20}, {32, 20}, {20, 20}, {20, 20}, {32, 20}, {33, 32}, {34, 33}, {0, 33}, {0, 0},
	} {
		if got := m.add(tc.x); got != tc.want {
			t.Fatalf("sample %d (%v): median %v, want %v", i, tc.x, got, tc.want)
		}
	}
}

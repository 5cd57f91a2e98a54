package bench

import (
	"bytes"
	"strings"
	"testing"
)

// A run of a minute or more reports its RSS and goroutines at the start,
// their highest and the end; shorter runs say nothing of them.
func TestWriteOverTime(t *testing.T) {
	long := SystemResult{Name: "weighted"}
	for i := range 90 {
		long.RSSOverTime = append(long.RSSOverTime, int64(40+i%7)<<20)
		long.GoroutinesOverTime = append(long.GoroutinesOverTime, 100+i%5)
	}
	long.RSSOverTime[89] = 41 << 20
	short := SystemResult{Name: "minrtt", GoroutinesOverTime: []int{1, 2, 3}}
	var b bytes.Buffer
	writeOverTime(&b, &Results{Systems: []SystemResult{long, short}})
	out := b.String()
	if !strings.Contains(out, "| weighted | 40 / 46 / 41 | 100 / 104 / 104 |") {
		t.Fatalf("no row for the long run:\n%s", out)
	}
	if strings.Contains(out, "minrtt") {
		t.Fatalf("a 3 s run reported over time:\n%s", out)
	}
	b.Reset()
	writeOverTime(&b, &Results{Systems: []SystemResult{short}})
	if b.Len() != 0 {
		t.Fatalf("a section with no long run: %q", b.String())
	}
}

//go:build !unix

package bench

import "time"

// cpuTime is 0 where getrusage does not exist (Windows): the bench then
// reports no CPU figures.
func cpuTime() time.Duration { return 0 }

// maxRSS is 0 where getrusage does not exist: no peak RSS is reported.
func maxRSS() int64 { return 0 }

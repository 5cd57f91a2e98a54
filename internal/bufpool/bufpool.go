// Package bufpool keeps byte buffers in power-of-two size classes so the
// data path reuses memory instead of allocating per block or shard.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 9  // 512 B
	maxShift = 21 // 2 MiB
)

// MaxSize is the largest buffer Get hands out from a pool.
const MaxSize = 1 << maxShift

var pools [maxShift - minShift + 1]sync.Pool

func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer of length n. Its contents are not zeroed. A buffer
// larger than MaxSize is allocated and will not be pooled by Put.
func Get(n int) []byte {
	if n > MaxSize {
		return make([]byte, n)
	}
	c := class(n)
	if p, _ := pools[c].Get().(*[]byte); p != nil {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(c+minShift))
}

// Put returns b to its pool. The caller must not use b afterwards. Buffers
// whose capacity is not a pool class are dropped.
func Put(b []byte) {
	c := cap(b)
	if c < 1<<minShift || c > MaxSize || c&(c-1) != 0 {
		return
	}
	b = b[:c]
	pools[class(c)].Put(&b)
}

package transport

import (
	"braid/transport/wire"
	"fmt"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// Coders are cached per (k, m): building one inverts matrices, and a
// reedsolomon.Encoder is safe for concurrent use once built. One goroutine
// per coder: on the 2-core machines braid is measured on, the data path's
// own goroutines already keep both cores busy.
var coders sync.Map // [2]uint8 -> reedsolomon.Encoder

func coder(k, m int) (reedsolomon.Encoder, error) {
	key := [2]uint8{uint8(k), uint8(m)}
	if c, ok := coders.Load(key); ok {
		return c.(reedsolomon.Encoder), nil
	}
	c, err := reedsolomon.New(k, m, reedsolomon.WithMaxGoroutines(1))
	if err != nil {
		return nil, fmt.Errorf("reed-solomon %d+%d: %w", k, m, err)
	}
	actual, _ := coders.LoadOrStore(key, c)
	return actual.(reedsolomon.Encoder), nil
}

// shardsPool holds the slice headers handed to the coder: passed through
// its interface they would otherwise be allocated for every block.
var shardsPool = sync.Pool{New: func() any { return new([wire.MaxShards][]byte) }}

// encodeParity fills the m parity shards of a block laid out in buf as k+m
// shards of sl bytes, the k data shards already in place.
func encodeParity(buf []byte, sl, k, m int) error {
	if m == 0 {
		return nil
	}
	c, err := coder(k, m)
	if err != nil {
		return err
	}
	arr := shardsPool.Get().(*[wire.MaxShards][]byte)
	shards := arr[:k+m]
	for i := range shards {
		shards[i] = buf[i*sl : (i+1)*sl]
	}
	err = c.Encode(shards)
	clear(shards) // do not keep the block alive from the pool
	shardsPool.Put(arr)
	return err
}

// reconstructData rebuilds the missing data shards of a block. A missing
// shard is a zero-length slice with capacity for a whole shard, so the
// coder writes into pooled memory.
func reconstructData(shards [][]byte, k, m int) error {
	c, err := coder(k, m)
	if err != nil {
		return err
	}
	return c.ReconstructData(shards)
}

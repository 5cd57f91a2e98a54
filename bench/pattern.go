package bench

import (
	"bytes"
	"math/rand/v2"
	"sync"
)

// Every byte a workload sends is from a pattern: byte o of a stream with
// key s is pat[(o+s) % patLen]. The receiver knows the key and checks each
// byte where it lands, so a byte missing, duplicated, reordered or changed
// anywhere in the chain shows up as bytes_lost. patLen is prime, so no
// run of whole blocks (powers of two) can go missing unseen, and checking
// is a memcmp, not a hash per byte.
const patLen = 1<<20 + 7 // a prime just above 1 MiB

var (
	patOnce sync.Once
	pat     []byte // two periods back to back, so any window is contiguous
)

func pattern() []byte {
	patOnce.Do(func() {
		rng := rand.New(rand.NewPCG(0x62726169, 0x64))
		p := make([]byte, 2*patLen)
		for i := 0; i < patLen; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < patLen; j++ {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		copy(p[patLen:], p[:patLen])
		pat = p
	})
	return pat
}

var (
	textOnce sync.Once
	textPat  []byte
)

// textPattern is the compressible pattern: words drawn from a small
// vocabulary, as in logs, JSON or HTML, laid out like pattern(). S2
// shrinks it to about a third.
func textPattern() []byte {
	textOnce.Do(func() {
		words := []string{"the ", "braid ", "path ", "shard ", "block ", "fiber ", "cellular ", "latency ",
			"goodput ", "{\"k\": ", "\"m\": ", "}, ", "<div> ", "</div>\n", "GET /index.html ", "200 OK\n"}
		rng := rand.New(rand.NewPCG(0x74657874, 0x64))
		p := make([]byte, 0, 2*patLen+32)
		for len(p) < patLen {
			p = append(p, words[rng.IntN(len(words))]...)
		}
		p = p[:patLen]
		textPat = append(p, p...)
	})
	return textPat
}

// patStream is one direction of one connection: the sender fills buffers
// from it, the receiver checks against it.
type patStream struct {
	key uint64
	off uint64 // bytes produced or checked so far
	pat []byte // pattern() or textPattern()
}

func newPatStream(key uint64) patStream { return patStream{key: key % patLen, pat: pattern()} }

// newTextStream is a patStream over the compressible pattern.
func newTextStream(key uint64) patStream { return patStream{key: key % patLen, pat: textPattern()} }

// fill writes the next len(b) bytes of the stream into b.
func (s *patStream) fill(b []byte) {
	p := s.pat
	for len(b) > 0 {
		i := (s.off + s.key) % patLen
		n := copy(b, p[i:i+min(uint64(len(b)), patLen)])
		b = b[n:]
		s.off += uint64(n)
	}
}

// check compares b with the next len(b) bytes of the stream and returns
// how many of them are right where they stand.
func (s *patStream) check(b []byte) (good int) {
	p := s.pat
	for len(b) > 0 {
		i := (s.off + s.key) % patLen
		n := min(len(b), patLen)
		want := p[i : i+uint64(n)]
		if bytes.Equal(b[:n], want) {
			good += n
		} else {
			// Count what is right up to the first wrong byte; the rest of
			// the read is counted wrong (a shifted stream matches a random
			// byte here and there, which must not count).
			for j := range n {
				if b[j] != want[j] {
					break
				}
				good++
			}
		}
		b = b[n:]
		s.off += uint64(n)
	}
	return good
}

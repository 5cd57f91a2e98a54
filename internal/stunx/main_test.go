package stunx

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// packet is one datagram of a fakeConn.
type packet struct {
	data []byte
	addr net.Addr
}

// fakeConn is a PacketConn whose inbound packets come from in and whose
// outbound packets go to out. It records how many goroutines read at once.
type fakeConn struct {
	in         chan packet
	out        chan packet
	closed     chan struct{}
	readers    atomic.Int32
	maxReaders atomic.Int32
}

var errFakeClosed = errors.New("fake conn closed")

func newFakeConn() *fakeConn {
	return &fakeConn{
		in:     make(chan packet, 4096),
		out:    make(chan packet, 4096),
		closed: make(chan struct{}),
	}
}

func (c *fakeConn) ReadNonQUICPacket(ctx context.Context, b []byte) (int, net.Addr, error) {
	n := c.readers.Add(1)
	defer c.readers.Add(-1)
	for {
		m := c.maxReaders.Load()
		if n <= m || c.maxReaders.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case <-c.closed:
		return 0, nil, errFakeClosed
	case p := <-c.in:
		return copy(b, p.data), p.addr, nil
	}
}

func (c *fakeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, errFakeClosed
	default:
	}
	select {
	case c.out <- packet{data: append([]byte(nil), b...), addr: addr}:
	default:
		panic("fakeConn: out is full")
	}
	return len(b), nil
}

// send queues b as if it arrived from addr.
func (c *fakeConn) send(b []byte, addr net.Addr) { c.in <- packet{data: b, addr: addr} }

func udpAddr(s string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

func newID(t testing.TB, b byte) txID {
	t.Helper()
	var id txID
	for i := range id {
		id[i] = b + byte(i)
	}
	return id
}

// decodeMsg decodes b as the package does, into a fresh message.
func decodeMsg(b []byte) (*stun.Message, error) { return new(codec).decode(b) }

// mappedOf returns the mapped address of m as the prober reads it.
func mappedOf(m *stun.Message) (netip.AddrPort, bool) { return new(codec).mappedAddress(m) }

// build returns the bytes of a message built by pion.
func build(setters ...stun.Setter) []byte { return stun.MustBuild(setters...).Raw }

// xorAddr is the XOR-MAPPED-ADDRESS setter for ap.
func xorAddr(ap netip.AddrPort) *stun.XORMappedAddress {
	return &stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
}

// successResponse builds a Binding success response like the server's.
func successResponse(id txID, mapped netip.AddrPort) []byte {
	return build(stun.NewTransactionIDSetter(id), stun.BindingSuccess, xorAddr(mapped),
		stun.NewSoftware("test"), stun.Fingerprint)
}

// eventually fails the test unless cond becomes true within 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

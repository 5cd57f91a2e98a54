package stunx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// RFC 5769 test vectors.
var (
	rfc5769Request = []byte("\x00\x01\x00\x58" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x10" +
		"STUN test client" +
		"\x00\x24\x00\x04" +
		"\x6e\x00\x01\xff" +
		"\x80\x29\x00\x08" +
		"\x93\x2f\xf9\xb1\x51\x26\x3b\x36" +
		"\x00\x06\x00\x09" +
		"\x65\x76\x74\x6a\x3a\x68\x36\x76\x59\x20\x20\x20" +
		"\x00\x08\x00\x14" +
		"\x9a\xea\xa7\x0c\xbf\xd8\xcb\x56\x78\x1e\xf2\xb5" +
		"\xb2\xd3\xf2\x49\xc1\xb5\x71\xa2" +
		"\x80\x28\x00\x04" +
		"\xe5\x7a\x3b\xcf")
	rfc5769ResponseV4 = []byte("\x01\x01\x00\x3c" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x0b" +
		"\x74\x65\x73\x74\x20\x76\x65\x63\x74\x6f\x72\x20" +
		"\x00\x20\x00\x08" +
		"\x00\x01\xa1\x47\xe1\x12\xa6\x43" +
		"\x00\x08\x00\x14" +
		"\x2b\x91\xf5\x99\xfd\x9e\x90\xc3\x8c\x74\x89\xf9" +
		"\x2a\xf9\xba\x53\xf0\x6b\xe7\xd7" +
		"\x80\x28\x00\x04" +
		"\xc0\x7d\x4c\x96")
	rfc5769ResponseV6 = []byte("\x01\x01\x00\x48" +
		"\x21\x12\xa4\x42" +
		"\xb7\xe7\xa7\x01\xbc\x34\xd6\x86\xfa\x87\xdf\xae" +
		"\x80\x22\x00\x0b" +
		"\x74\x65\x73\x74\x20\x76\x65\x63\x74\x6f\x72\x20" +
		"\x00\x20\x00\x14" +
		"\x00\x02\xa1\x47" +
		"\x01\x13\xa9\xfa\xa5\xd3\xf1\x79" +
		"\xbc\x25\xf4\xb5\xbe\xd2\xb9\xd9" +
		"\x00\x08\x00\x14" +
		"\xa3\x82\x95\x4e\x4b\xe6\x7b\xf1\x17\x84\xc9\x7c" +
		"\x82\x92\xc2\x75\xbf\xe3\xed\x41" +
		"\x80\x28\x00\x04" +
		"\xc8\xfb\x0b\x4c")
)

func TestRFC5769Vectors(t *testing.T) {
	m, err := decodeMsg(rfc5769Request)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if m.Type != stun.BindingRequest || !hasFingerprint(m) {
		t.Fatalf("request: type %v fingerprint %v", m.Type, hasFingerprint(m))
	}
	var sw stun.Software
	if err := sw.GetFrom(m); err != nil || sw.String() != "STUN test client" {
		t.Fatalf("request SOFTWARE = %q, %v", sw, err)
	}
	if !hasRequiredAttr(m) {
		t.Fatal("request: PRIORITY/USERNAME not seen as comprehension-required")
	}
	for _, tc := range []struct {
		raw  []byte
		want string
	}{
		{rfc5769ResponseV4, "192.0.2.1:32853"},
		{rfc5769ResponseV6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"},
	} {
		m, err := decodeMsg(tc.raw)
		if err != nil {
			t.Fatalf("response: %v", err)
		}
		got, ok := mappedOf(m)
		if !ok || got != netip.MustParseAddrPort(tc.want) {
			t.Fatalf("mapped = %v %v, want %s", got, ok, tc.want)
		}
		// The server's encoder produces the same XOR-MAPPED-ADDRESS bytes.
		want, _ := m.Get(stun.AttrXORMappedAddress)
		resp, err := new(codec).bindingSuccess(m, got)
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeMsg(resp)
		if err != nil {
			t.Fatalf("own response: %v", err)
		}
		if enc, _ := r.Get(stun.AttrXORMappedAddress); !bytes.Equal(enc, want) {
			t.Fatalf("encoded %x, want %x", enc, want)
		}
	}
	// Flipping any bit before the FINGERPRINT value is caught.
	bad := bytes.Clone(rfc5769ResponseV4)
	bad[30] ^= 1
	if _, err := decodeMsg(bad); !errors.Is(err, stun.ErrFingerprintMismatch) {
		t.Fatalf("corrupted message: err = %v", err)
	}
}

func TestBindingRequest(t *testing.T) {
	id := newID(t, 7)
	req := bindingRequest(id)
	if len(req) != 28 {
		t.Fatalf("request is %d bytes", len(req))
	}
	m, err := decodeMsg(req)
	if err != nil || m.Type != stun.BindingRequest || m.TransactionID != id || !hasFingerprint(m) || hasRequiredAttr(m) {
		t.Fatalf("decode(request) = %v, %v", m, err)
	}
}

// The server's responses have exactly the sizes MaxResponseGrowth is
// derived from, and one codec can be reused across families.
func TestBindingSuccess(t *testing.T) {
	c := new(codec)
	for i, tc := range []struct {
		to   string
		fp   bool
		size int
	}{
		{"192.0.2.1:1", false, 20 + 12 + 12},
		{"[2001:db8::1]:2", false, 20 + 24 + 12},
		{"[::ffff:192.0.2.3]:3", true, 20 + 12 + 12 + 8},
		{"[2001:db8::4%eth0]:4", true, 20 + 24 + 12 + 8},
		{"192.0.2.5:65535", true, 20 + 12 + 12 + 8},
	} {
		id := newID(t, byte(i))
		req := build(stun.NewTransactionIDSetter(id), stun.BindingRequest)
		if tc.fp {
			req = bindingRequest(id)
		}
		rm, err := decodeMsg(req)
		if err != nil {
			t.Fatal(err)
		}
		to := netip.MustParseAddrPort(tc.to)
		resp, err := c.bindingSuccess(rm, to)
		if err != nil || len(resp) != tc.size {
			t.Fatalf("%s: %d bytes, %v; want %d", tc.to, len(resp), err, tc.size)
		}
		if len(resp) > len(req)+MaxResponseGrowth {
			t.Fatalf("%s: %d bytes exceed MaxResponseGrowth", tc.to, len(resp))
		}
		m, err := c.decode(resp)
		if err != nil || m.Type != stun.BindingSuccess || m.TransactionID != id || hasFingerprint(m) != tc.fp {
			t.Fatalf("%s: decode = %v, %v", tc.to, m, err)
		}
		want := netip.AddrPortFrom(to.Addr().Unmap().WithZone(""), to.Port())
		if got, ok := c.mappedAddress(m); !ok || got != want {
			t.Fatalf("%s: mapped %v, %v", tc.to, got, ok)
		}
	}
}

// Once warmed up, the server's handler and the prober's decoding do not
// allocate per packet: each goroutine reuses its codec.
func TestNoPerPacketAllocs(t *testing.T) {
	s := &Server{Rate: 1e9, Burst: 1e9}
	c := new(codec)
	id := newID(t, 1)
	req, bare := bindingRequest(id), build(stun.NewTransactionIDSetter(id), stun.BindingRequest)
	from4, from6 := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("[2001:db8::1]:1")
	garbage := []byte("\x00\x01\x00\x00 not STUN, but not obviously so")
	now := time.Unix(0, 0)
	if n := testing.AllocsPerRun(100, func() {
		if s.handle(req, from4, now, c) == nil || s.handle(bare, from6, now, c) == nil ||
			s.handle(garbage, from4, now, c) != nil {
			t.Fatal("wrong answers")
		}
	}); n != 0 {
		t.Errorf("server: %v allocations per 3 packets", n)
	}
	resp4, resp6 := successResponse(id, from4), successResponse(id, from6)
	if n := testing.AllocsPerRun(100, func() {
		for _, b := range [][]byte{resp4, resp6} {
			m, err := c.decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := c.mappedAddress(m); !ok {
				t.Fatal("no address")
			}
		}
	}); n != 0 {
		t.Errorf("prober: %v allocations per 2 packets", n)
	}
}

// rawAttr is a Setter adding an attribute with an arbitrary value.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

func TestDecodeRejects(t *testing.T) {
	id := newID(t, 1)
	setID := stun.NewTransactionIDSetter(id)
	req := bindingRequest(id)
	bare := build(setID, stun.BindingRequest) // no FINGERPRINT to catch changes
	withLen := func(n uint16) []byte {
		b := bytes.Clone(req)
		binary.BigEndian.PutUint16(b[2:], n)
		return b
	}
	overrun := build(setID, stun.BindingRequest, stun.NewSoftware("abcd"))
	binary.BigEndian.PutUint16(overrun[headerSize+2:], 200) // attribute longer than the message
	cookie := bytes.Clone(req)
	cookie[4] ^= 0xff
	for name, b := range map[string][]byte{
		"empty":               nil,
		"truncated header":    req[:12],
		"header only short":   req[:19],
		"length too long":     withLen(12),
		"length too short":    withLen(4),
		"length unaligned":    withLen(7),
		"bare, length long":   append(bytes.Clone(bare), 0, 0, 0, 0),
		"truncated body":      req[:24],
		"trailing bytes":      append(bytes.Clone(req), 0, 0, 0, 0),
		"top bit 01":          append([]byte{0x40}, req[1:]...),
		"top bits 11":         append([]byte{0xC0}, bare[1:]...), // pion alone: a Binding request
		"cookie":              cookie,
		"attribute overrun":   overrun,
		"fingerprint last":    build(setID, stun.BindingRequest, stun.Fingerprint, stun.NewSoftware("x")),
		"two fingerprints":    build(setID, stun.BindingRequest, stun.Fingerprint, stun.Fingerprint),
		"fp not last, CRC ok": forgedFingerprint(t, id, stun.AttrSoftware),
		"two fp, first ok":    forgedFingerprint(t, id, stun.AttrFingerprint),
		"fingerprint size":    build(setID, stun.BindingRequest, rawAttr{stun.AttrFingerprint, []byte{1, 2, 3, 4, 5, 6, 7, 8}}),
		"huge":                make([]byte, maxPacket+1),
	} {
		if m, err := decodeMsg(b); err == nil {
			t.Errorf("%s: decoded %v", name, m)
		}
	}
}

// forgedFingerprint returns a Binding request whose first attribute is a
// FINGERPRINT that pion's Check accepts although an attribute of type last
// follows it: Check compares the first FINGERPRINT with the CRC of all but
// the message's last 8 bytes. The CRC is made to match by choosing the 4
// bytes of a SOFTWARE attribute before it (CRC-32 is affine in its input).
func forgedFingerprint(t *testing.T, id txID, last stun.AttrType) []byte {
	t.Helper()
	m := stun.MustBuild(stun.NewTransactionIDSetter(id), stun.BindingRequest)
	m.Add(stun.AttrSoftware, []byte{0, 0, 0, 0}) // the free bytes, at 24..27
	m.Add(stun.AttrFingerprint, []byte{0, 0, 0, 0})
	m.Add(last, []byte("abcd"))
	b := m.Raw
	const free, fp = 24, 32
	want := binary.BigEndian.Uint32(b[fp:]) // the FINGERPRINT value, 0
	crc := func(x uint32) uint32 {
		binary.BigEndian.PutUint32(b[free:], x)
		return stun.FingerprintValue(b[:len(b)-8])
	}
	// Solve crc(x) == want over GF(2): crc(x) = crc(0) ^ L(x), L linear.
	base := crc(0)
	var rows [32]struct{ col, x uint32 } // L(e_i), and the x giving it
	for i := range 32 {
		rows[i].col, rows[i].x = crc(1<<i)^base, 1<<i
	}
	target, x := want^base, uint32(0)
	for bit := 31; bit >= 0; bit-- {
		p := -1
		for i := 31 - bit; i < 32; i++ {
			if rows[i].col>>bit&1 == 1 {
				p = i
				break
			}
		}
		if p < 0 {
			continue
		}
		r := 31 - bit
		rows[r], rows[p] = rows[p], rows[r]
		for i := range 32 {
			if i != r && rows[i].col>>bit&1 == 1 {
				rows[i].col ^= rows[r].col
				rows[i].x ^= rows[r].x
			}
		}
		if target>>bit&1 == 1 {
			target ^= rows[r].col
			x ^= rows[r].x
		}
	}
	if target != 0 || crc(x) != want {
		t.Fatal("cannot forge the FINGERPRINT")
	}
	// pion alone accepts it.
	var pm stun.Message
	if err := stun.Decode(b, &pm); err != nil || stun.Fingerprint.Check(&pm) != nil {
		t.Fatalf("forged message: decode %v", err)
	}
	return b
}

func TestMappedAddressRejects(t *testing.T) {
	id := newID(t, 3)
	response := func(setters ...stun.Setter) *stun.Message {
		t.Helper()
		m, err := decodeMsg(build(append([]stun.Setter{stun.NewTransactionIDSetter(id), stun.BindingSuccess}, setters...)...))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	good := netip.MustParseAddrPort("192.0.2.1:1")
	plain := &stun.MappedAddress{IP: good.Addr().AsSlice(), Port: int(good.Port())}
	if got, ok := mappedOf(response(xorAddr(good))); !ok || got != good {
		t.Fatalf("good XOR-MAPPED-ADDRESS: %v %v", got, ok)
	}
	if got, ok := mappedOf(response(plain)); !ok || got != good {
		t.Fatalf("good MAPPED-ADDRESS: %v %v", got, ok)
	}
	for name, ap := range map[string]netip.AddrPort{
		"port zero":   netip.MustParseAddrPort("192.0.2.1:0"),
		"unspecified": netip.MustParseAddrPort("0.0.0.0:9"),
		"multicast":   netip.MustParseAddrPort("[ff02::1]:9"),
	} {
		if got, ok := mappedOf(response(xorAddr(ap))); ok {
			t.Errorf("%s: decoded %v", name, got)
		}
	}
	mapped4in6 := append([]byte{0, 2, 0, 1}, netip.MustParseAddr("::ffff:192.0.2.1").AsSlice()...)
	for name, v := range map[string][]byte{
		"short":         {0, 1, 2},
		"family":        {0, 3, 0, 1, 1, 2, 3, 4},
		"v4 long":       {0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}, // pion: truncated
		"v4 short":      {0, 1, 0, 1, 1, 2},                   // pion: zero-filled
		"v6 short":      {0, 2, 0, 1, 1, 2, 3, 4},
		"reserved byte": {9, 1, 0, 1, 1, 2, 3, 4}, // pion: ignored
	} {
		for _, at := range []stun.AttrType{stun.AttrXORMappedAddress, stun.AttrMappedAddress} {
			if got, ok := mappedOf(response(rawAttr{at, v})); ok {
				t.Errorf("%s in %v: decoded %v", name, at, got)
			}
		}
	}
	if got, ok := mappedOf(response(rawAttr{stun.AttrMappedAddress, mapped4in6})); ok {
		t.Errorf("IPv4-mapped IPv6 MAPPED-ADDRESS: decoded %v", got)
	}
	// A bad XOR-MAPPED-ADDRESS is not replaced by a MAPPED-ADDRESS.
	if got, ok := mappedOf(response(rawAttr{stun.AttrXORMappedAddress, []byte{0, 1, 2}}, plain)); ok {
		t.Errorf("fell back to MAPPED-ADDRESS: %v", got)
	}
	// Only the first XOR-MAPPED-ADDRESS counts.
	other := netip.MustParseAddrPort("198.51.100.7:7")
	if got, ok := mappedOf(response(xorAddr(good), xorAddr(other))); !ok || got != good {
		t.Errorf("two XOR-MAPPED-ADDRESSes: %v %v, want %v", got, ok, good)
	}
}

func TestAddrPortOf(t *testing.T) {
	for _, tc := range []struct {
		in   net.Addr
		want string
	}{
		{udpAddr("127.0.0.1:5"), "127.0.0.1:5"},
		{udpAddr("[::ffff:127.0.0.1]:5"), "127.0.0.1:5"},
		{udpAddr("[::1]:5"), "[::1]:5"},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 7}, "10.0.0.1:7"},
	} {
		if got := addrPortOf(tc.in); got != netip.MustParseAddrPort(tc.want) {
			t.Errorf("addrPortOf(%v) = %v, want %s", tc.in, got, tc.want)
		}
	}
	var nilUDP *net.UDPAddr
	for _, a := range []net.Addr{nil, nilUDP, &net.UnixAddr{Name: "/x", Net: "unixgram"}} {
		if got := addrPortOf(a); got.IsValid() {
			t.Errorf("addrPortOf(%#v) = %v", a, got)
		}
	}
}

package transport

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"braid/bench/emu"
	"braid/internal/pki"
	"braid/transport/wire"
)

// testServer is a minimal concentrator: it joins sessions and echoes every
// flow (or runs handle).
type testServer struct {
	ln       *quic.Listener
	cfg      Config
	token    string
	handle   func(f *Flow)
	mu       sync.Mutex
	sessions map[[16]byte]*Session
	wg       sync.WaitGroup
	pin      [32]byte
	// maxVersion > 0 refuses joins above it, as an older concentrator
	// does; refusedVersion counts them.
	maxVersion     uint8
	refusedVersion atomic.Int32
}

func newTestServer(t testing.TB, cfg Config, handle func(*Flow)) *testServer {
	t.Helper()
	cert, pinStr, err := pki.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	pin, _ := pki.ParsePin(pinStr)
	ln, err := quic.ListenAddr("127.0.0.1:0", pki.ServerTLS(cert, wire.ALPN), QUICConfig())
	if err != nil {
		t.Fatal(err)
	}
	if handle == nil {
		handle = echo
	}
	ts := &testServer{ln: ln, cfg: cfg, token: "tok", handle: handle, sessions: map[[16]byte]*Session{}, pin: pin}
	ts.wg.Add(1)
	go ts.serve()
	t.Cleanup(ts.close)
	return ts
}

func echo(f *Flow) {
	if err := f.Accept(); err != nil {
		return
	}
	if _, err := io.Copy(f, f); err != nil {
		f.Reset()
		return
	}
	f.CloseWrite()
}

func (ts *testServer) serve() {
	defer ts.wg.Done()
	for {
		qc, err := ts.ln.Accept(context.Background())
		if err != nil {
			return
		}
		ts.wg.Add(1)
		go func() {
			defer ts.wg.Done()
			j, err := AcceptJoin(context.Background(), qc)
			if err != nil {
				return
			}
			if ts.maxVersion > 0 && j.Msg.Version > ts.maxVersion {
				ts.refusedVersion.Add(1)
				j.Refuse(wire.JoinErrVersion, "version not supported")
				return
			}
			if j.Msg.Token != ts.token {
				j.Refuse(wire.JoinErrAuth, "bad token")
				return
			}
			ts.mu.Lock()
			defer ts.mu.Unlock()
			if j.Msg.SessionID == ([16]byte{}) {
				s, err := NewServerSession(ts.cfg, j)
				if err != nil {
					return
				}
				ts.sessions[s.ID()] = s
				ts.wg.Add(1)
				go ts.flows(s)
				return
			}
			s := ts.sessions[j.Msg.SessionID]
			if s == nil || !s.CheckSecret(j.Msg.Secret) {
				j.Refuse(wire.JoinErrSession, "unknown session")
				return
			}
			s.Attach(j)
		}()
	}
}

func (ts *testServer) flows(s *Session) {
	defer ts.wg.Done()
	for {
		f, err := s.AcceptFlow(context.Background())
		if err != nil {
			return
		}
		ts.wg.Add(1)
		go func() {
			defer ts.wg.Done()
			ts.handle(f)
		}()
	}
}

func (ts *testServer) close() {
	ts.ln.Close()
	for _, s := range ts.list() {
		s.Close()
	}
	ts.wg.Wait()
}

// list returns the sessions the server has opened.
func (ts *testServer) list() []*Session {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ss := make([]*Session, 0, len(ts.sessions))
	for _, s := range ts.sessions {
		ss = append(ss, s)
	}
	return ss
}

func (ts *testServer) addr() *net.UDPAddr { return ts.ln.Addr().(*net.UDPAddr) }

// dialerTo returns a path dialer that reaches addr on its own UDP socket.
func dialerTo(name string, addr *net.UDPAddr, pin [32]byte) PathDialer {
	return PathDialer{
		Info: wire.PathInfo{Name: name},
		Dial: func(ctx context.Context) (*quic.Conn, error) {
			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return nil, err
			}
			tr := &quic.Transport{Conn: udp}
			qc, err := tr.Dial(ctx, addr, pki.ClientTLS(pin, wire.ALPN), QUICConfig())
			if err != nil {
				tr.Close()
				return nil, err
			}
			go func() {
				<-qc.Context().Done()
				tr.Close()
			}()
			return qc, nil
		},
	}
}

var _ = tls.VersionTLS13

// relayPaths puts an emulated link in front of the server for each path.
func relayPaths(t *testing.T, ts *testServer, links ...emu.Link) ([]PathDialer, []*emu.Relay) {
	t.Helper()
	var pds []PathDialer
	var relays []*emu.Relay
	for i, l := range links {
		r, err := emu.NewRelay("127.0.0.1:0", ts.addr(), l, l, int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		relays = append(relays, r)
		pds = append(pds, dialerTo(string(rune('a'+i)), r.Addr(), ts.pin))
	}
	return pds, relays
}

// transfer writes n random bytes through an echo flow and checks that the
// same bytes come back, by hash.
// transferInBackground opens an echoed flow on c (ctx bounds the open)
// and runs transfer over it in a goroutine of its own: the channel
// closes when the transfer has ended.
func transferInBackground(t *testing.T, ctx context.Context, c *Client, n int, seed uint64) <-chan struct{} {
	t.Helper()
	f, err := c.OpenFlow(ctx, []byte{1, 127, 0, 0, 1, 0, 80})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		transfer(t, f, n, seed)
	}()
	return done
}

func transfer(t *testing.T, f *Flow, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		left := n
		for left > 0 {
			c := min(left, len(buf), 1+rng.IntN(len(buf)))
			for i := range buf[:c] {
				buf[i] = byte(rng.Uint32())
			}
			sent.Write(buf[:c])
			if _, err := f.Write(buf[:c]); err != nil {
				errc <- err
				return
			}
			left -= c
		}
		errc <- f.CloseWrite()
	}()
	got := sha256.New()
	m, err := io.Copy(got, f)
	if err != nil {
		t.Fatalf("read back: %v after %d bytes", err, m)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if m != int64(n) {
		t.Fatalf("read back %d bytes, want %d", m, n)
	}
	if string(got.Sum(nil)) != string(sent.Sum(nil)) {
		t.Fatal("bytes differ")
	}
}

func dialClient(t *testing.T, cfg Config, pds []PathDialer) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg, "tok", pds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

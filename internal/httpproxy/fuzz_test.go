package httpproxy

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"braid/internal/socks5"
)

// memConn is a client connection in memory: reads come from r until EOF,
// writes are dropped.
type memConn struct{ r *bytes.Reader }

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) CloseWrite() error                { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// memFlow answers with fixed bytes, then EOF, and swallows what it gets.
type memFlow struct{ r *bytes.Reader }

func (f *memFlow) Read(p []byte) (int, error)        { return f.r.Read(p) }
func (f *memFlow) Write(p []byte) (int, error)       { return len(p), nil }
func (f *memFlow) CloseWrite() error                 { return nil }
func (f *memFlow) Reset()                            {}
func (f *memFlow) Close() error                      { return nil }
func (f *memFlow) SetReadDeadline(t time.Time) error { return nil }

type memOpener struct {
	answer []byte
	opens  int
}

func (o *memOpener) Open(ctx context.Context, dest socks5.Addr, user string) (Flow, error) {
	if _, err := socks5.AppendAddr(nil, dest); err != nil {
		panic("Open got an address that cannot be encoded: " + err.Error())
	}
	o.opens++
	if o.opens > 64 {
		return nil, &socks5.ReplyError{Code: socks5.GeneralFailure}
	}
	return &memFlow{r: bytes.NewReader(o.answer)}, nil
}

// FuzzServeConn: whatever a client sends and whatever an origin answers,
// ServeConn returns (the input is finite), never panics and opens flows
// only to addresses braid can carry.
func FuzzServeConn(f *testing.F) {
	ok := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X\r\nX: y\r\n\r\nhi")
	for _, seed := range []struct{ req, resp string }{
		{"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", string(ok)},
		{"GET http://example.com/ HTTP/1.1\r\n\r\nGET http://other.example/x HTTP/1.1\r\n\r\n", string(ok) + string(ok)},
		{"POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: v\r\n\r\n"},
		{"GET http://e.com/ HTTP/1.0\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"},
		{"HEAD http://e.com/ HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"},
		{"CONNECT e.com:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n\x16\x03\x01", "\x16\x03\x03"},
		{"GET http://e.com/ HTTP/1.1\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\n\r\n"},
		{"GET http://e.com/ HTTP/1.1\r\n\r\n", "garbage"},
		{"GET / HTTP/1.1\r\n\r\n", ""},
		{"\x05\x01\x00", ""},
	} {
		f.Add([]byte(seed.req), []byte(seed.resp))
	}
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		s := &Server{Opener: &memOpener{answer: resp}, Creds: &socks5.Credentials{AnyUser: true}}
		c := &memConn{r: bytes.NewReader(req)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(context.Background(), c, nil)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ServeConn still running on %q / %q", req, resp)
		}
	})
}

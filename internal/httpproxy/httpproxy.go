// Package httpproxy is the HTTP side of braid's local proxy: CONNECT
// tunnels and plain (absolute-form) HTTP requests, served on the SOCKS5
// port (the client tells the two apart by the first byte: 0x05 is SOCKS5).
// Requests and responses are parsed by net/http's ReadRequest and
// ReadResponse over bufio, never by hand; flows are opened through an
// Opener, so the package knows nothing of sessions.
//
// A client connection's plain requests go over one flow at a time, kept
// from one request to the next while they name the same host, port and
// username; a request that names another, or finds its flow closed by the
// origin while idle, gets a new flow. Requests are served one after the
// other: a pipelined request waits in the socket until the response before
// it is complete. Upgrade (WebSocket over plain HTTP) is not carried: the
// header is hop-by-hop and dropped, so the origin answers without
// switching; clients tunnel it with CONNECT.
package httpproxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"braid/internal/relay"
	"braid/internal/socks5"
)

// Flow is the part of a braid flow the proxy uses: a relay.Flow whose
// reads can be bounded in time (SetReadDeadline(time.Now()) makes a read
// that would wait return a timeout at once).
type Flow interface {
	relay.Flow
	SetReadDeadline(time.Time) error
}

// Opener opens the proxy's flows. It is called from the goroutine serving
// a connection, one call at a time per connection.
type Opener interface {
	// Open opens a flow to dest for the application named user (the
	// proxy username, "" for none): the username picks the flow's class
	// as a SOCKS username does. A refusal with a SOCKS reply code is a
	// *socks5.ReplyError; the code becomes the HTTP status (StatusFor).
	Open(ctx context.Context, dest socks5.Addr, user string) (Flow, error)
}

// Defaults of Server's limits.
const (
	DefaultHeaderTimeout  = 10 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultMaxHeaderBytes = 64 << 10
)

// Server serves HTTP proxy requests on connections its caller accepted.
// Its fields must not change once ServeConn has been called; ServeConn
// may be called from many goroutines at once.
type Server struct {
	// Opener opens a flow for each tunnel and each plain request's
	// destination.
	Opener Opener
	// Creds are the proxy's credentials, as for SOCKS5: nil asks for
	// none; with User and Pass a request must carry them in
	// Proxy-Authorization: Basic, or is answered 407; with AnyUser any
	// Basic credentials pass and the username is the application's
	// label, and a request without them passes too.
	Creds *socks5.Credentials
	// HeaderTimeout bounds the reading of a request's header, from its
	// first byte (DefaultHeaderTimeout when 0).
	HeaderTimeout time.Duration
	// IdleTimeout is how long a connection may wait for its next request
	// after a response (DefaultIdleTimeout when 0).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's and a response's header: request
	// line or status line and header fields (DefaultMaxHeaderBytes when 0).
	// A larger request is answered 431, a larger response 502.
	MaxHeaderBytes int
}

func (s *Server) headerTimeout() time.Duration {
	if s.HeaderTimeout > 0 {
		return s.HeaderTimeout
	}
	return DefaultHeaderTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

// headerLimit is how many bytes a header may take from its connection:
// MaxHeaderBytes, plus what bufio may read ahead of it (as net/http's
// server allows).
func (s *Server) headerLimit() int64 {
	n := s.MaxHeaderBytes
	if n <= 0 {
		n = DefaultMaxHeaderBytes
	}
	return int64(n) + bufSize
}

// bufSize is the size of the connection's and the flow's bufio buffers.
const bufSize = 4096

// lingerTime and lingerBytes bound how long and how much of a request the
// proxy reads and discards after an error answer before it closes the
// connection: closing a socket with unread input sends RST, which can
// destroy the answer before the client reads it.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// max1xx is how many informational (1xx) responses one request may get.
const max1xx = 8

// Errors ServeConn returns (wrapped) for why a connection ended.
var (
	// ErrBadRequest: the client sent something that is not an HTTP/1.x
	// proxy request (answered 400, 431 or 505).
	ErrBadRequest = errors.New("httpproxy: bad request")
	// ErrAuth: missing or wrong Proxy-Authorization (answered 407).
	ErrAuth = errors.New("httpproxy: proxy authentication required")
	// ErrUpstream: the flow failed or the origin's response was not
	// HTTP (answered 502 when nothing of the response was sent yet).
	ErrUpstream = errors.New("httpproxy: bad response from upstream")
)

// StatusFor maps a SOCKS5 reply code (the concentrator's answer to a flow)
// to the HTTP status a proxy answers with: 403 for a destination the
// policy refuses, 504 for a timeout, 502 for every other failure (refused,
// host or network unreachable, a general failure).
func StatusFor(code socks5.Reply) int {
	switch code {
	case socks5.Succeeded:
		return http.StatusOK
	case socks5.NotAllowed:
		return http.StatusForbidden
	case socks5.TTLExpired:
		return http.StatusGatewayTimeout
	default:
		return http.StatusBadGateway
	}
}

// statusForOpen is the status for an Opener's error.
func statusForOpen(err error) int {
	var re *socks5.ReplyError
	if errors.As(err, &re) {
		return StatusFor(re.Code)
	}
	return http.StatusBadGateway
}

// ServeConn serves the proxy requests of one client connection until it
// closes, goes idle, or a request ends it (a CONNECT tunnel ends with its
// relay, an error answer ends the connection). prefix is what the caller
// has already read from conn (the first byte, to tell HTTP from SOCKS5).
// ServeConn closes conn before it returns; the error says why the
// connection ended, nil for a client that closed it between requests.
// ctx bounds the opening of flows.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn, prefix []byte) error {
	p := &proxyConn{s: s, ctx: ctx, conn: conn, in: &limitReader{r: conn, n: -1}}
	p.br = bufio.NewReaderSize(io.MultiReader(strings.NewReader(string(prefix)), p.in), bufSize)
	p.bw = bufio.NewWriterSize(conn, bufSize)
	p.out = bufWriter{p.bw}
	defer p.close()
	for {
		req, err := p.readRequest()
		if req == nil {
			return err
		}
		keep, err := p.serve(req)
		if !keep {
			return err
		}
	}
}

// proxyConn is one client connection being served.
type proxyConn struct {
	s    *Server
	ctx  context.Context
	conn net.Conn
	in   *limitReader  // conn, under br
	br   *bufio.Reader // from the client
	bw   *bufio.Writer // to the client
	out  bufWriter     // bw, for Request.Write and Response.Write

	// The upstream flow of plain requests, and whom it was opened for.
	up     Flow
	upDest socks5.Addr
	upUser string
	upIn   *limitReader
	upR    *bufio.Reader
	upW    *bufio.Writer
	upOut  bufWriter // upW

	wg sync.WaitGroup // the request writer of exchange
}

// close ends the connection: what is buffered goes out, then FIN, then
// close; and the upstream flow, once nothing uses it.
func (p *proxyConn) close() {
	p.closeWrite()
	p.conn.Close()
	if p.up != nil {
		p.up.Reset() // wakes a request writer blocked on the flow
	}
	p.wg.Wait()
	p.closeUp()
}

// closeWrite sends what is buffered for the client, then FIN.
func (p *proxyConn) closeWrite() {
	p.bw.Flush()
	if cw, ok := p.conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// closeUp drops the upstream flow of plain requests.
func (p *proxyConn) closeUp() {
	if p.up != nil {
		p.up.Close()
		p.up, p.upR, p.upW, p.upIn = nil, nil, nil, nil
	}
}

// readRequest reads the next request's header, within the header timeout
// and the header size limit. A malformed request is answered here.
func (p *proxyConn) readRequest() (*http.Request, error) {
	p.conn.SetReadDeadline(time.Now().Add(p.s.headerTimeout()))
	p.in.n, p.in.hit, p.in.err = p.s.headerLimit(), false, nil
	req, err := http.ReadRequest(p.br)
	p.in.n = -1
	switch {
	case err == nil:
		p.conn.SetReadDeadline(time.Time{})
		return req, nil
	case p.in.hit:
		p.answerError(nil, http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		return nil, fmt.Errorf("%w: header over %d bytes", ErrBadRequest, p.s.headerLimit()-bufSize)
	case isTimeout(err) || isTimeout(p.in.err): // textproto may report the cut line instead
		return nil, fmt.Errorf("%w: no complete header within %v", ErrBadRequest, p.s.headerTimeout())
	case errors.Is(err, io.EOF):
		return nil, nil // closed before a request began
	default:
		p.answerError(nil, http.StatusBadRequest, "malformed request")
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
}

// serve answers one request; keep says the connection stays for another.
func (p *proxyConn) serve(req *http.Request) (keep bool, err error) {
	if req.ProtoMajor != 1 {
		p.answerError(req, http.StatusHTTPVersionNotSupported, "HTTP/1.x only")
		return false, fmt.Errorf("%w: protocol %s", ErrBadRequest, req.Proto)
	}
	user, ok := p.s.authorize(req.Header)
	if !ok {
		p.answerError(req, http.StatusProxyAuthRequired, "proxy authentication required")
		return false, ErrAuth
	}
	connect := req.Method == http.MethodConnect
	dest, err := target(req, connect)
	if err != nil {
		p.answerError(req, http.StatusBadRequest, err.Error())
		return false, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if connect {
		return false, p.tunnel(req, dest, user)
	}
	if err := p.upstream(dest, user); err != nil {
		p.answerError(req, statusForOpen(err), "cannot reach "+dest.String())
		return false, fmt.Errorf("open flow to %s: %w", dest, err)
	}
	return p.exchange(req)
}

// tunnel answers a CONNECT: a flow to dest, 200, then bytes both ways.
func (p *proxyConn) tunnel(req *http.Request, dest socks5.Addr, user string) error {
	p.closeUp()
	f, err := p.s.Opener.Open(p.ctx, dest, user)
	if err != nil {
		p.answerError(req, statusForOpen(err), "cannot reach "+dest.String())
		return fmt.Errorf("open flow to %s: %w", dest, err)
	}
	p.conn.SetWriteDeadline(time.Now().Add(p.s.headerTimeout()))
	p.bw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	if err := p.bw.Flush(); err != nil {
		f.Reset()
		return fmt.Errorf("write 200: %w", err)
	}
	p.conn.SetWriteDeadline(time.Time{})
	// Bytes the client sent behind its request (a TLS ClientHello, say)
	// are the tunnel's first.
	if n := p.br.Buffered(); n > 0 {
		early, _ := p.br.Peek(n)
		if _, err := f.Write(early); err != nil {
			f.Reset()
			return fmt.Errorf("early tunnel bytes: %w", err)
		}
	}
	relay.Relay(p.conn, f)
	return nil
}

// upstream makes p.up a live flow to dest for user, keeping the one it has
// when it fits.
func (p *proxyConn) upstream(dest socks5.Addr, user string) error {
	if p.up != nil && p.upDest == dest && p.upUser == user && p.upAlive() {
		return nil
	}
	p.closeUp()
	f, err := p.s.Opener.Open(p.ctx, dest, user)
	if err != nil {
		return err
	}
	p.up, p.upDest, p.upUser = f, dest, user
	p.upIn = &limitReader{r: f, n: -1}
	p.upR = bufio.NewReaderSize(p.upIn, bufSize)
	p.upW = bufio.NewWriterSize(f, bufSize)
	p.upOut = bufWriter{p.upW}
	return nil
}

// upAlive reports whether the kept flow can carry another request: the
// origin has neither closed it nor sent bytes nobody asked for. It does
// not wait.
func (p *proxyConn) upAlive() bool {
	p.up.SetReadDeadline(time.Now())
	_, err := p.upR.Peek(1)
	p.up.SetReadDeadline(time.Time{})
	return err != nil && isTimeout(err)
}

// exchange sends a plain request over p.up and its response back. The
// request goes from a goroutine of its own, so a response that comes
// before the body is sent (100 Continue, an early refusal) is read while
// it goes; once it is sent, that goroutine waits for the client's next
// request, which tells a client that went away (a reset) from one that
// waits for its response.
func (p *proxyConn) exchange(req *http.Request) (keep bool, err error) {
	prepareRequest(req, p.upW)
	up, upW, upOut := p.up, p.upW, p.upOut
	wrote := make(chan error, 1)
	next := make(chan error, 1)
	var answered atomic.Bool
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := req.Write(upOut)
		if err == nil {
			err = upW.Flush()
		}
		wrote <- err
		if err != nil {
			up.Reset() // the response cannot come; wake its reader
			return
		}
		_, err = p.br.Peek(1)
		if err != nil && !errors.Is(err, io.EOF) && !answered.Load() {
			up.Reset() // the client is gone: stop waiting for the origin
		}
		next <- err
	}()

	resp, sent, err := p.readResponse(req)
	if err != nil {
		if !sent {
			p.writeError(req, http.StatusBadGateway, "bad response from upstream")
		}
		// The request writer may still read the client: let it, for a
		// moment, rather than race it for the connection's reader.
		p.closeWrite()
		p.conn.SetReadDeadline(time.Now().Add(lingerTime))
		up.Reset()
		p.wg.Wait()
		return false, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	keep = req.ProtoAtLeast(1, 1) && !req.Close && !resp.Close &&
		(resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0)
	prepareResponse(resp, req, keep, p.bw)
	err = resp.Write(p.out)
	if err == nil {
		err = p.bw.Flush()
	}
	answered.Store(true)
	resp.Body.Close()
	if err != nil {
		return false, fmt.Errorf("relay response: %w", err)
	}
	if !keep {
		return false, nil
	}
	// The body, if the origin answered before it was sent, and the next
	// request must come within the idle timeout.
	p.conn.SetReadDeadline(time.Now().Add(p.s.idleTimeout()))
	if err := <-wrote; err != nil {
		return false, fmt.Errorf("send request: %w", err)
	}
	if err := <-next; err != nil {
		if errors.Is(err, io.EOF) || isTimeout(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// readResponse reads the response to req, passing informational ones (100
// Continue, 103 Early Hints) to the client; sent says whether any was.
func (p *proxyConn) readResponse(req *http.Request) (resp *http.Response, sent bool, err error) {
	for range max1xx + 1 {
		p.upIn.n, p.upIn.hit = p.s.headerLimit(), false
		resp, err = http.ReadResponse(p.upR, req)
		hit := p.upIn.hit
		p.upIn.n = -1
		switch {
		case hit:
			return nil, sent, errors.New("response header too large")
		case err != nil:
			return nil, sent, err
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, sent, errors.New("101 Switching Protocols to a request without Upgrade")
		case resp.StatusCode >= 200:
			return resp, sent, nil
		case !req.ProtoAtLeast(1, 1):
			continue // HTTP/1.0 has no informational responses
		}
		removeHopByHop(resp.Header)
		resp.ProtoMajor, resp.ProtoMinor = 1, 1
		if err := resp.Write(p.out); err != nil {
			return nil, true, err
		}
		if err := p.bw.Flush(); err != nil {
			return nil, true, err
		}
		sent = true
	}
	return nil, sent, fmt.Errorf("more than %d informational responses", max1xx)
}

// prepareRequest turns a proxy request into the origin's: origin-form
// request line (Request.Write writes URL.RequestURI), Host from the
// absolute URL (RFC 9112 section 3.2.2), no hop-by-hop fields. Its body,
// if any, is flushed to the flow as it comes.
func prepareRequest(req *http.Request, w *bufio.Writer) {
	removeHopByHop(req.Header)
	req.Host = req.URL.Host
	req.RequestURI = ""
	if _, ok := req.Header["User-Agent"]; !ok {
		// Request.Write would add Go's own; the origin gets none.
		req.Header["User-Agent"] = []string{""}
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = flushingBody{req.Body, w}
	}
}

// prepareResponse readies the origin's response for the client: no
// hop-by-hop fields, our own HTTP version, Connection: close unless keep,
// and for an HTTP/1.0 client no chunked coding (the body then ends with
// the connection).
func prepareResponse(resp *http.Response, req *http.Request, keep bool, w *bufio.Writer) {
	removeHopByHop(resp.Header)
	resp.ProtoMajor, resp.ProtoMinor = 1, 1
	if !req.ProtoAtLeast(1, 1) {
		resp.ProtoMajor, resp.ProtoMinor = 1, 0
		if len(resp.TransferEncoding) > 0 {
			resp.TransferEncoding = nil
			resp.ContentLength = -1
			resp.Trailer = nil
		}
	}
	resp.Close = !keep
	resp.Body = flushingBody{resp.Body, w}
}

// hopByHop are the header fields that concern one connection only
// (RFC 9110 section 7.6.1, and Proxy-Connection, which some clients
// still send). Transfer-Encoding and Trailer are net/http's: ReadRequest
// and ReadResponse move them into fields, and Write writes them anew.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Upgrade"}

// removeHopByHop deletes the hop-by-hop fields from h, and those that
// Connection names.
func removeHopByHop(h http.Header) {
	for _, key := range []string{"Connection", "Proxy-Connection"} {
		for _, v := range h[key] {
			for name := range strings.SplitSeq(v, ",") {
				if name = textproto.TrimString(name); name != "" {
					h.Del(name)
				}
			}
		}
	}
	for _, key := range hopByHop {
		h.Del(key)
	}
}

// bufWriter is a bufio.Writer without its ReadFrom, which reads into the
// buffer that flushingBody flushes (and so would send stale bytes). It is
// an io.ByteWriter, so Request.Write adds no buffer of its own.
type bufWriter struct{ w *bufio.Writer }

func (b bufWriter) Write(p []byte) (int, error)       { return b.w.Write(p) }
func (b bufWriter) WriteString(s string) (int, error) { return b.w.WriteString(s) }
func (b bufWriter) WriteByte(c byte) error            { return b.w.WriteByte(c) }

// flushingBody flushes w before each read of the body: what was written
// (the header, the last piece of body) reaches its reader before the proxy
// waits for more, so a streamed body is not held in a buffer.
type flushingBody struct {
	io.ReadCloser
	w *bufio.Writer
}

func (b flushingBody) Read(p []byte) (int, error) {
	if b.w.Buffered() > 0 {
		if err := b.w.Flush(); err != nil {
			return 0, err
		}
	}
	return b.ReadCloser.Read(p)
}

// answerError answers req (nil when it could not be read) with an error
// status and a short text, then reads and discards what the client still
// sends for a moment (bounded) so that closing does not reset the answer
// away. The connection ends after it. Nothing else may read the client
// meanwhile.
func (p *proxyConn) answerError(req *http.Request, code int, msg string) {
	if p.writeError(req, code, msg) != nil {
		return
	}
	p.closeWrite()
	p.conn.SetReadDeadline(time.Now().Add(lingerTime))
	p.in.n = lingerBytes
	io.Copy(io.Discard, p.br)
}

// writeError writes an error answer that closes the connection.
func (p *proxyConn) writeError(req *http.Request, code int, msg string) error {
	body := msg + "\n"
	p.conn.SetWriteDeadline(time.Now().Add(p.s.headerTimeout()))
	fmt.Fprintf(p.bw, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	if code == http.StatusProxyAuthRequired {
		p.bw.WriteString("Proxy-Authenticate: Basic realm=\"braid\"\r\n")
	}
	fmt.Fprintf(p.bw, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	if req == nil || req.Method != http.MethodHead {
		p.bw.WriteString(body)
	}
	return p.bw.Flush()
}

// authorize checks a request's Proxy-Authorization against s.Creds and
// returns the username that names the application.
func (s *Server) authorize(h http.Header) (user string, ok bool) {
	c := s.Creds
	if c == nil {
		return "", true
	}
	v := h.Get("Proxy-Authorization")
	if v == "" {
		return "", c.AnyUser
	}
	user, pass, ok := parseBasic(v)
	if !ok || len(user) > 255 || len(pass) > 255 {
		return "", false
	}
	if c.AnyUser {
		return user, true
	}
	// Compared as hashes, so the time taken says nothing of the lengths.
	gu, gp := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	wu, wp := sha256.Sum256([]byte(c.User)), sha256.Sum256([]byte(c.Pass))
	if subtle.ConstantTimeCompare(gu[:], wu[:])&subtle.ConstantTimeCompare(gp[:], wp[:]) != 1 {
		return "", false
	}
	return c.User, true
}

// parseBasic parses "Basic base64(user:pass)" (RFC 7617); the scheme is
// case-insensitive.
func parseBasic(v string) (user, pass string, ok bool) {
	scheme, cred, ok := strings.Cut(textproto.TrimString(v), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(textproto.TrimString(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

// target is the destination a request names: a CONNECT's authority
// (host:port, the port required), or a plain request's absolute http://
// URL (port 80 by default). The host is an IP address or a name, which the
// concentrator resolves.
func target(req *http.Request, connect bool) (socks5.Addr, error) {
	u := req.URL
	switch {
	case connect && (u.Host == "" || u.Path != "" || u.RawQuery != ""):
		return socks5.Addr{}, errors.New("CONNECT needs host:port")
	case !connect && (!strings.EqualFold(u.Scheme, "http") || u.Host == ""):
		return socks5.Addr{}, errors.New("a proxy request needs an absolute http:// URL (https goes through CONNECT)")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		if connect {
			return socks5.Addr{}, fmt.Errorf("no port in %q", u.Host)
		}
		port = "80"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return socks5.Addr{}, fmt.Errorf("bad port %q", port)
	}
	a := socks5.Addr{Port: uint16(n)}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return socks5.Addr{}, fmt.Errorf("zoned address %q", host)
		}
		a.IP = ip
		return a, nil
	}
	if host == "" || len(host) > 255 || strings.ContainsAny(host, "[]%") {
		return socks5.Addr{}, fmt.Errorf("bad host %q", host)
	}
	a.Name = host
	return a, nil
}

// limitReader lets n more bytes through (n < 0: any number), then reports
// EOF and remembers that it hit the limit. err is the last error r
// returned.
type limitReader struct {
	r   io.Reader
	n   int64
	hit bool
	err error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n == 0 {
		l.hit = true
		return 0, io.EOF
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	if l.n > 0 {
		l.n -= int64(n)
	}
	if err != nil {
		l.err = err
	}
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

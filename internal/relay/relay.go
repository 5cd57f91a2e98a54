// Package relay copies bytes both ways between a TCP connection and a
// braid flow, carrying half-close and reset across, as the client (SOCKS
// side) and the concentrator (destination side) both need.
package relay

import (
	"io"
	"net"

	"golang.org/x/sync/errgroup"
)

// Flow is the part of a transport.Flow a relay uses.
type Flow interface {
	io.Reader
	io.Writer
	CloseWrite() error
	Reset()
	Close() error
}

// Relay runs until both directions have finished. A clean EOF on one side
// becomes a half-close (FIN) on the other; an error on either side resets
// both, so the application sees a reset rather than a silent truncation.
// Relay closes conn and f before it returns.
func Relay(conn net.Conn, f Flow) {
	// The two directions end together: one runs here, the other in an
	// errgroup goroutine (each handles its own error; Wait joins them).
	var g errgroup.Group
	g.Go(func() error { // conn -> flow
		_, err := io.Copy(f, conn)
		if err != nil {
			f.Reset()
			abort(conn)
		} else {
			f.CloseWrite()
		}
		return nil
	})
	// flow -> conn
	if _, err := io.Copy(conn, f); err != nil {
		f.Reset()
		abort(conn)
	} else if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	g.Wait()
	conn.Close()
	f.Close()
}

// abort closes conn so that its peer sees a reset (RST) where TCP allows.
func abort(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

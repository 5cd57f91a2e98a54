package client

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"braid/internal/stunx"
)

// stunWatch keeps each path's public (mapped) address.
type stunWatch struct {
	mu     sync.Mutex
	byPath map[string]netip.AddrPort
}

// watch probes over one connection's socket until the connection ends.
// A change of mapped address is logged; the QUIC connection itself follows
// the change (quic-go validates the new address), so flows go on.
//
// Each connection asks the concentrator (a STUN server on its QUIC
// socket) which public address it sees: that confirms the route through
// the path's provider and notices NAT rebinding.
func (w *stunWatch) watch(path string, tr *quic.Transport, qc *quic.Conn, server net.Addr, every time.Duration, log *slog.Logger) {
	p := stunx.NewProber(tr, server)
	go p.Run(qc.Context(), every, func(old, new netip.AddrPort) {
		w.mu.Lock()
		if w.byPath == nil {
			w.byPath = map[string]netip.AddrPort{}
		}
		w.byPath[path] = new
		w.mu.Unlock()
		if old.IsValid() {
			log.Warn("path's public address changed (NAT rebinding or provider handover)", "path", path, "old", old.String(), "new", new.String())
		} else {
			log.Debug("path's public address", "path", path, "mapped", new.String())
		}
	}, func(err error) {
		if qc.Context().Err() == nil { // not merely the connection ending
			log.Debug("stun probe failed", "path", path, "err", err)
		}
	})
}

// mapped returns a path's public address, or "".
func (w *stunWatch) mapped(path string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a, ok := w.byPath[path]; ok {
		return a.String()
	}
	return ""
}

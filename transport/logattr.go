package transport

import (
	"context"
	"encoding/hex"
	"log/slog"
	"sync/atomic"
)

// sessionLog adds the session's name (Session.Name) to every record of a
// logger made before the session had its id: the client's session learns
// it from the concentrator's answer to its first join, after its
// goroutines have started. Records logged before then carry none.
type sessionLog struct {
	h    slog.Handler
	name *atomic.Pointer[string]
}

var _ slog.Handler = sessionLog{}

func (l sessionLog) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l sessionLog) Handle(ctx context.Context, r slog.Record) error {
	if n := l.name.Load(); n != nil {
		r = r.Clone()
		r.AddAttrs(slog.String("session", *n))
	}
	return l.h.Handle(ctx, r)
}

func (l sessionLog) WithAttrs(as []slog.Attr) slog.Handler {
	return sessionLog{h: l.h.WithAttrs(as), name: l.name}
}

func (l sessionLog) WithGroup(g string) slog.Handler {
	return sessionLog{h: l.h.WithGroup(g), name: l.name}
}

// sessionName is how logs and status pages name a session: the first 8
// bytes of its id, in hex.
func sessionName(id [16]byte) string { return hex.EncodeToString(id[:8]) }

// Name returns the session's name in logs and status pages: the first 8
// bytes of its id, in hex.
func (s *Session) Name() string { return sessionName(s.ID()) }

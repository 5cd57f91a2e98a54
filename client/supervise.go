package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"braid/internal/pki"
	"braid/transport"
	"braid/transport/wire"
)

// The supervisor. A client outlives its sessions: one goroutine
// (supervise) joins the concentrator, waits for the session to end, and
// joins again, for as long as the client runs. Joins that fail are retried
// with backoff; a session that ends, or that the concentrator says is
// going away (it drains: the session's live flows stay on it), is replaced
// at once. Only an answer that retrying cannot change ends the client
// (fatal).
//
// While no session is up, SOCKS requests wait for one (waitSession), the
// status page says so, and Session waits for the first.

// Backoff between failed joins: from minBackoff, doubling to maxBackoff,
// each wait drawn from its upper half. The cap bounds how long a
// concentrator that comes back waits for the client's next attempt.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = time.Second
	// stableAfter is how long a session must have lasted for its end to
	// be followed by a join at once rather than after the next backoff:
	// a concentrator that takes joins and drops them is not hammered.
	stableAfter = 5 * time.Second
)

// errNoSession is what a SOCKS request gets when no session came up in
// time to carry it.
var errNoSession = errors.New("no session with the concentrator")

// errNoPaths is a join attempt with no path to try: automatic paths found
// no usable interface (yet).
var errNoPaths = errors.New("no usable network interface for automatic paths")

// fatal reports whether err, a failed join or the reason a session ended,
// is one that retrying cannot mend, so the client gives up: the
// concentrator refused the token (wire.JoinErrAuth) or the protocol
// version (wire.JoinErrVersion), or presented a key other than the
// pinned one (pki.ErrPinMismatch, which quic-go's handshake error wraps).
// Everything else (timeouts, unreachable networks, a concentrator that
// restarted and forgot the session, one shutting down or full) is the
// network or a passing state, and the client tries again.
func fatal(err error) bool {
	var je *transport.JoinError
	if errors.As(err, &je) {
		return je.Code == wire.JoinErrAuth || je.Code == wire.JoinErrVersion
	}
	return errors.Is(err, pki.ErrPinMismatch)
}

// backoff is an exponential backoff with jitter.
type backoff struct{ next time.Duration }

// wait returns how long to wait before the next attempt and doubles the
// step, up to maxBackoff.
func (b *backoff) wait() time.Duration {
	d := max(b.next, minBackoff)
	b.next = min(2*d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.next = minBackoff }

// supervise joins and rejoins until the client ends.
func (c *Client) supervise() {
	defer c.wg.Done()
	var bo backoff
	var ended time.Time // when the last session ended; zero before the first
	failures := 0       // failed joins since the last session
	for {
		pds, has := c.pathDialers()
		var sess *transport.Client
		err := errNoPaths
		if len(pds) > 0 {
			sess, err = transport.Dial(c.ctx, c.cfg.Transport, c.cfg.Token, pds)
		}
		if c.ctx.Err() != nil { // closed while joining
			if sess != nil {
				sess.Close()
			}
			return
		}
		if err != nil {
			if fatal(err) {
				c.end(fmt.Errorf("join concentrator: %w", err))
				return
			}
			c.noteErr(err)
			failures++
			c.moveOn("join failed")
			d := bo.wait()
			// One line when the client starts without a concentrator;
			// after a session ended, its line said the client is
			// rejoining. The rest are for debugging.
			if failures == 1 && ended.IsZero() {
				c.log.Warn("concentrator not reachable; retrying", "err", err)
			} else {
				c.log.Debug("join failed; retrying", "err", err, "attempt", failures, "in", d.Round(time.Millisecond))
			}
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		joined := time.Now()
		c.install(sess, has)
		if ended.IsZero() {
			c.log.Info("session up", "session", sess.Name(), "paths", len(pds), "attempts", failures+1)
		} else {
			c.log.Info("new session up", "session", sess.Name(), "paths", len(pds), "attempts", failures+1,
				"down", time.Since(ended).Round(time.Millisecond))
		}
		failures = 0
		select {
		case <-sess.Done():
		case <-sess.GoingAway():
			// The concentrator drains: the session's live flows stay on it
			// until they end, new ones wait for the next session.
			c.uninstall(sess, transport.ErrGoingAway)
			c.wg.Add(1)
			go c.retire(sess)
			c.moveOn("draining")
			ended = time.Now()
			c.log.Warn("concentrator draining; opening a new session (live flows stay on the old one)",
				"session", sess.Name(), "lasted", ended.Sub(joined).Round(time.Millisecond))
			bo.reset()
			continue
		case <-c.ctx.Done():
			sess.Close()
			c.uninstall(sess, nil)
			return
		}
		err = sess.Err()
		c.uninstall(sess, err)
		if fatal(err) {
			c.end(fmt.Errorf("session: %w", err))
			return
		}
		ended = time.Now()
		lasted := ended.Sub(joined)
		c.log.Warn("session ended; opening a new one", "session", sess.Name(), "err", err, "lasted", lasted.Round(time.Millisecond))
		if lasted >= stableAfter {
			bo.reset()
			continue
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(bo.wait()):
		}
	}
}

// moveOn makes the next concentrator of several the one new sessions
// join (Config.MoreServers).
func (c *Client) moveOn(why string) {
	if l := c.cfg.servers; len(l.addrs) > 1 {
		c.log.Info("next concentrator", "server", l.next(), "why", why)
	}
}

// retire keeps a session that is going away until it ends (the
// concentrator closes it once its flows have) or the client does.
func (c *Client) retire(sess *transport.Client) {
	defer c.wg.Done()
	select {
	case <-sess.Done():
		c.log.Debug("drained session ended", "session", sess.Name(), "err", sess.Err())
	case <-c.ctx.Done():
	}
	sess.Close()
}

// install makes sess the current session.
func (c *Client) install(sess *transport.Client, has map[string]uint64) {
	c.mu.Lock()
	c.cur, c.last = sess, sess
	c.sessions++
	c.lastErr = nil
	c.changed.Fire()
	c.mu.Unlock()
	if c.auto != nil {
		c.auto.use(sess, has)
	}
}

// uninstall records that sess, the current session, has ended with err.
func (c *Client) uninstall(sess *transport.Client, err error) {
	c.mu.Lock()
	if c.cur == sess {
		c.cur = nil
	}
	if err != nil {
		c.lastErr = err
	}
	c.changed.Fire()
	c.mu.Unlock()
}

// noteErr records why the last join failed, for the status page.
func (c *Client) noteErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// end stops the client: err says why (nil for Close). The first call wins.
func (c *Client) end(err error) {
	c.mu.Lock()
	if c.ctx.Err() == nil {
		c.err = err
		c.cancel()
	}
	c.mu.Unlock()
	c.ln.Close() // no session will come to carry new SOCKS clients
}

// current returns the session in use, or nil while none is up.
func (c *Client) current() *transport.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// waitSession returns the current session, waiting for one while none is
// up, until ctx is done or the client ends (errNoSession).
func (c *Client) waitSession(ctx context.Context) (*transport.Client, error) {
	for {
		c.mu.Lock()
		cur, changed := c.cur, c.changed.Wait()
		c.mu.Unlock()
		if cur != nil {
			select {
			case <-cur.Done(): // ended; the supervisor is about to say so
			case <-cur.GoingAway(): // likewise
			default:
				return cur, nil
			}
		}
		select {
		case <-changed:
		case <-c.ctx.Done():
			return nil, fmt.Errorf("%w: the client stopped", errNoSession)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", errNoSession, ctx.Err())
		}
	}
}

package webui

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"berth/domain"
)

// Revocation reaches live connections: every authenticated request (live
// streams and sockets included) is tracked with the credential that
// authenticated it, and RunRevocations ends those whose credential is no
// longer valid: a revoked token, a disabled user (or one whose role
// changed: it reconnects with its new rights), an ended or expired session.
// Tokens and users are followed in the log, so a revocation through any
// berth process reaches every process; sessions (a table, not the log) are
// checked every SessionCheckInterval.

// SessionCheckInterval is how often the sessions of live connections are
// checked.
const SessionCheckInterval = 500 * time.Millisecond

// liveConn is one tracked request.
type liveConn struct {
	tokenID, userID, session string
	cancel                   context.CancelFunc
	revoked                  chan struct{}
	once                     sync.Once
}

func (c *liveConn) revoke() {
	c.once.Do(func() {
		close(c.revoked)
		c.cancel()
	})
}

type revokedKey struct{}

// revokedChan returns a channel closed when the credential of the request
// whose context is ctx is revoked (nil, never closed, when not tracked). A
// hijacked connection (a WebSocket) watches it: its request context is not
// the socket's.
func revokedChan(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(revokedKey{}).(chan struct{})
	return ch
}

// track registers a request authenticated as p (with the session cookie
// value session, or "") and returns its context, cancelled on revocation,
// and the function that forgets it.
func (g *Guard) track(ctx context.Context, p Principal, session string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	c := &liveConn{cancel: cancel, revoked: make(chan struct{})}
	switch p.Actor.Kind {
	case domain.ActorToken:
		c.tokenID = p.Actor.ID
	case domain.ActorUser:
		c.userID = p.Actor.ID
	}
	if p.Session {
		c.session = session
	}
	g.liveMu.Lock()
	if g.live == nil {
		g.live = map[*liveConn]struct{}{}
	}
	g.live[c] = struct{}{}
	g.liveMu.Unlock()
	return context.WithValue(ctx, revokedKey{}, c.revoked), func() {
		g.liveMu.Lock()
		delete(g.live, c)
		g.liveMu.Unlock()
		cancel()
	}
}

// LiveConnections returns how many authenticated requests are being served.
func (g *Guard) LiveConnections() int {
	g.liveMu.Lock()
	defer g.liveMu.Unlock()
	return len(g.live)
}

// revokeWhere ends the tracked requests for which match holds and returns
// how many.
func (g *Guard) revokeWhere(match func(*liveConn) bool) int {
	g.liveMu.Lock()
	var hit []*liveConn
	for c := range g.live {
		if match(c) {
			hit = append(hit, c)
		}
	}
	g.liveMu.Unlock()
	for _, c := range hit {
		c.revoke()
	}
	return len(hit)
}

// RunRevocations ends live requests whose credential is revoked, until ctx
// ends: it follows token.revoked, user.disabled and user.role_changed in
// log from its head, and checks the sessions in use every
// SessionCheckInterval. It returns nil when ctx ends.
func (g *Guard) RunRevocations(ctx context.Context, log domain.EventStore) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { g.checkSessions(ctx) })
	for ctx.Err() == nil {
		head, err := log.Head(ctx)
		if err == nil {
			err = log.Subscribe(ctx, head, domain.Filter{Types: []string{
				domain.EventTokenRevoked, domain.EventUserDisabled, domain.EventUserRoleChanged,
			}}, func(_ context.Context, e domain.RecordedEvent) error {
				g.applyRevocation(e)
				return nil
			})
		}
		if ctx.Err() != nil {
			return nil
		}
		g.log.Warn("revocation follower failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (g *Guard) applyRevocation(e domain.RecordedEvent) {
	var v struct {
		TokenID string `json:"token_id"`
		UserID  string `json:"user_id"`
	}
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return
	}
	var n int
	switch e.Type {
	case domain.EventTokenRevoked:
		if v.TokenID != "" {
			n = g.revokeWhere(func(c *liveConn) bool { return c.tokenID == v.TokenID })
		}
	default:
		if v.UserID != "" {
			n = g.revokeWhere(func(c *liveConn) bool { return c.userID == v.UserID })
		}
	}
	if n > 0 {
		g.log.Info("live connections closed: credential revoked", "event", e.Type, "position", e.Position, "connections", n)
	}
}

// checkSessions ends the requests of sessions that ended (logout, expiry,
// a disabled user) every SessionCheckInterval.
func (g *Guard) checkSessions(ctx context.Context) {
	t := time.NewTicker(SessionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.liveMu.Lock()
		sessions := map[string]bool{}
		for c := range g.live {
			if c.session != "" {
				sessions[c.session] = true
			}
		}
		g.liveMu.Unlock()
		for s := range sessions {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, _, err := g.sessions.Session(qctx, s, g.cfg.Now(), g.cfg.IdleTimeout)
			cancel()
			if errors.Is(err, domain.ErrUnauthorized) {
				n := g.revokeWhere(func(c *liveConn) bool { return c.session == s })
				g.log.Info("live connections closed: session ended", "connections", n)
			}
		}
	}
}

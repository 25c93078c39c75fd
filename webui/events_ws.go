package webui

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"berth/domain"
	"berth/handlers/webhooks"
)

// WebSocket close codes of the event stream (4000-4999: application).
const (
	// CloseSlowConsumer: the client did not keep up; the reason carries
	// "resume_after=<position>".
	CloseSlowConsumer = 4008
)

// streamEventsWS serves the log live over a WebSocket: one text message per
// event, the CloudEvent JSON (its "position" is the resume point). Resume
// with ?after=. The server only writes; what the client sends is discarded
// (control frames are answered). Origins must match the host.
func (s *Server) streamEventsWS(w http.ResponseWriter, r *http.Request) error {
	log, err := s.eventLog()
	if err != nil {
		return err
	}
	f, after, err := eventSelection(r, "")
	if err != nil {
		return err
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return malformed("Upgrade", "this endpoint speaks WebSocket only (send Upgrade: websocket); GET /api/v1/events pages the same history and GET /api/v1/events/stream follows it as Server-Sent Events")
	}
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 64 << 10, HandshakeTimeout: 10 * time.Second, Error: upgradeError}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return nil // the upgrader answered the client
	}
	defer conn.Close()
	cfg := s.integrations().Stream.withDefaults()
	ctx := r.Context()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The reader drains control frames and notices the client leaving.
	conn.SetReadLimit(4096)
	_ = conn.SetReadDeadline(time.Now().Add(2*cfg.Heartbeat + cfg.Stall))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(2*cfg.Heartbeat + cfg.Stall))
	})
	go func() {
		defer cancel()
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()

	source := s.integrations().Source
	buf := make([]byte, 0, 4096)
	sink := streamSink{
		begin: func() { _ = conn.SetWriteDeadline(time.Now().Add(cfg.Stall)) },
		event: func(e domain.RecordedEvent) error {
			buf = webhooks.AppendCloudEvent(buf[:0], e, source)
			return conn.WriteMessage(websocket.TextMessage, buf)
		},
		flush: func() error { return nil },
		beat: func() error {
			return conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.Stall))
		},
	}
	last, err := s.pump(ctx, log, after, f, sink)
	deadline := time.Now().Add(time.Second)
	switch {
	case errors.Is(err, errSlowConsumer):
		_ = conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(CloseSlowConsumer, "slow consumer; resume_after="+strconv.FormatInt(last, 10)), deadline)
	case ctx.Err() != nil:
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), deadline)
	default:
		if err != nil {
			s.log.WarnContext(ctx, "event websocket ended", "after", last, "err", err)
		}
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "stream ended"), deadline)
	}
	return nil
}

// upgradeError answers a failed WebSocket handshake in the API's error
// shape (the upgrader's default is text/plain).
func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := CodeMalformed
	switch status {
	case http.StatusForbidden:
		code = CodeForbidden
	case http.StatusMethodNotAllowed:
		code = CodeMethod
	}
	if status >= 500 {
		code = CodeInternal
	}
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: "websocket handshake: " + reason.Error()}})
}

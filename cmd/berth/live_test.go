package main_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// liveMessage is a message of berth serve's UI socket as the tests read
// it (the "databases" topic's data).
type liveMessage struct {
	Op       string `json:"op"`
	Topic    string `json:"topic"`
	Position int64  `json:"position"`
	Snapshot bool   `json:"snapshot"`
	Error    string `json:"error"`
	Data     struct {
		Databases []dbInfo `json:"databases"`
		Storages  []struct {
			Name string `json:"name"`
		} `json:"storages"`
		Removed []string `json:"removed"`
	} `json:"data"`
}

// liveTopic is one subscription to the UI socket of a running berth serve,
// authenticated with a bearer token.
type liveTopic struct {
	t  *testing.T
	ws *websocket.Conn
}

// subscribeLive opens the socket at base and subscribes to topic.
func subscribeLive(t *testing.T, base, token, topic string) *liveTopic {
	t.Helper()
	ws, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/api/v1/ws",
		http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("dial the UI socket: %v (%v)", err, res)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if err := ws.WriteJSON(map[string]any{"op": "subscribe", "topic": topic, "after": 0}); err != nil {
		t.Fatal(err)
	}
	return &liveTopic{t: t, ws: ws}
}

// await reads messages until ok accepts one and returns it; a refusal, or
// a minute without the message, fails the test.
func (l *liveTopic) await(what string, ok func(liveMessage) bool) liveMessage {
	l.t.Helper()
	_ = l.ws.SetReadDeadline(time.Now().Add(time.Minute)) // generous: shared CI machines stall
	for {
		_, raw, err := l.ws.ReadMessage()
		if err != nil {
			l.t.Fatalf("%s: %v", what, err)
		}
		var m liveMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			l.t.Fatalf("%s: message %s: %v", what, raw, err)
		}
		if m.Op == "error" {
			l.t.Fatalf("%s: the socket refused: %s", what, m.Error)
		}
		if ok(m) {
			return m
		}
	}
}

package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/internal/testcert"
	"berth/internal/testenv"
)

// liveMessage is a message of berth serve's UI socket as the tests read
// it (the "databases", "servers" and "swarms" topics' data).
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
		Removed []string     `json:"removed"`
		Servers []serverView `json:"servers"`
		Swarms  []struct {
			Name  string `json:"name"`
			Nodes []struct {
				ID           string `json:"id"`
				Availability string `json:"availability"`
				Engine       string `json:"engine"`
			} `json:"nodes"`
		} `json:"swarms"`
		Events []struct {
			Type string `json:"type"`
		} `json:"events"`
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

// TestLiveServersThroughServe follows the "servers" topic of a real berth
// serve's UI socket: the local server in the snapshot, then a server added
// over the API (verifying), its verification (unreachable: nothing listens
// at its address, as when the background checks lose it) and its removal,
// each as it is recorded.
func TestLiveServersThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test of berth serve")
	}
	dbURL := testenv.PostgresURL(t)
	m := MustRunMain(t, func(m *main.Main) { m.Config.DatabaseURL = dbURL })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, errs := run(ctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "token", "create", "--role", "admin", "--name", "live")
	if code != main.ExitOK {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	a := api{tb: t, base: m.URL(), token: strings.TrimSpace(out)}
	live := subscribeLive(t, a.base, a.token, "servers")
	live.await("the snapshot with the local server", func(m liveMessage) bool {
		return m.Snapshot && len(m.Data.Servers) > 0 && m.Data.Servers[0].ID == domain.LocalServer
	})
	ca := testcert.MustCA(t, "berth live CA")
	cl := ca.MustClient(t, time.Hour, "berth")
	a.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{"name": "edge", "url": "tcp://127.0.0.1:1",
		"key": string(cl.KeyPEM), "ca_pem": string(ca.PEM), "cert_pem": string(cl.CertPEM)})
	added := live.await("the added server", func(m liveMessage) bool {
		return len(m.Data.Servers) == 1 && m.Data.Servers[0].Name == "edge" && m.Data.Servers[0].State == domain.ServerStateVerifying
	})
	id := added.Data.Servers[0].ID
	a.must(http.StatusOK, "POST", "/api/v1/servers/edge/verify", nil)
	live.await("the server unreachable", func(m liveMessage) bool {
		return len(m.Data.Servers) == 1 && m.Data.Servers[0].ID == id && m.Data.Servers[0].State == domain.ServerStateUnreachable &&
			strings.Contains(m.Data.Servers[0].Reason, "127.0.0.1:1")
	})
	a.must(http.StatusOK, "DELETE", "/api/v1/servers/edge", nil)
	live.await("the server removed", func(m liveMessage) bool { return len(m.Data.Removed) == 1 && m.Data.Removed[0] == id })
}

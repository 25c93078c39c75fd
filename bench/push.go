package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/migrations"
	"berth/projections"
	"berth/webui"
)

// PushOptions tunes RunPushWith. Zero fields take defaults.
type PushOptions struct {
	Clients int // WebSocket clients (default 1000)
	Rounds  int // events appended, one at a time (default 200)
}

// RunPush measures the live UI's push latency:
//
//	BENCH push.p99.1000 value=<ms> unit=ms baseline=<ms> ratio=<x>
//
// value is the p99, over Rounds appended events, of the time from calling
// the command that appends an event to the moment all Clients WebSocket
// clients subscribed to "apps" have received the projection update that
// event caused (append, projection runner, hub, 1000 sockets). baseline is
// the p99 of broadcasting the same message bytes to the same number of
// clients through a bare gorilla/websocket hub (a writer goroutine per
// connection) in the same run.
func RunPush(ctx context.Context, dbURL string, out io.Writer) error {
	return RunPushWith(ctx, dbURL, out, PushOptions{})
}

// RunPushWith is RunPush with options.
func RunPushWith(ctx context.Context, dbURL string, out io.Writer, opt PushOptions) (err error) {
	if opt.Clients == 0 {
		opt.Clients = 1000
	}
	if opt.Rounds == 0 {
		opt.Rounds = 200
	}
	freshURL, drop, err := freshDatabase(ctx, dbURL)
	if err != nil {
		return err
	}
	defer func() {
		if derr := drop(context.WithoutCancel(ctx)); err == nil {
			err = derr
		}
	}()
	pool, err := pgxpool.New(ctx, freshURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("bench: %w", err)
	}

	lat, sample, err := measureBerthPush(ctx, pool, opt)
	if err != nil {
		return err
	}
	base, err := measureBareHub(ctx, sample, opt)
	if err != nil {
		return fmt.Errorf("bare hub: %w", err)
	}
	p99, b99 := pushPercentile(lat, 0.99), pushPercentile(base, 0.99)
	_, err = fmt.Fprintf(out, "BENCH push.p99.%d value=%.3f unit=ms baseline=%.3f ratio=%.2f\n", opt.Clients, msOf(p99), msOf(b99), msOf(p99)/msOf(b99))
	if err == nil {
		_, err = fmt.Fprintf(out, "# push: berth p50 %.2f ms p99 %.2f ms max %.2f ms; bare hub p50 %.2f ms p99 %.2f ms; %d clients, %d events, message %d bytes\n",
			msOf(pushPercentile(lat, 0.5)), msOf(p99), msOf(pushPercentile(lat, 1)), msOf(pushPercentile(base, 0.5)), msOf(b99), opt.Clients, opt.Rounds, len(sample))
	}
	return err
}

func pushPercentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// arrivals counts, per position, how many clients received it, and when
// the last one did.
type arrivals struct {
	clients int
	mu      sync.Mutex
	rounds  map[int64]*arrival
}

type arrival struct {
	n    atomic.Int64
	last atomic.Int64 // unix nanoseconds of the last client's receipt
	done chan struct{}
}

func (a *arrivals) get(pos int64) *arrival {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rounds[pos]
	if r == nil {
		r = &arrival{done: make(chan struct{})}
		a.rounds[pos] = r
	}
	return r
}

func (a *arrivals) received(pos int64, at time.Time) {
	r := a.get(pos)
	if r.n.Add(1) == int64(a.clients) {
		r.last.Store(at.UnixNano())
		close(r.done)
	}
}

// wsClients dials n clients to url, each reading messages in its own
// goroutine and reporting the position of every data message.
func wsClients(ctx context.Context, url string, header http.Header, n int, subscribe []byte, onMessage func(raw []byte, at time.Time)) ([]*websocket.Conn, error) {
	d := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024}
	conns := make([]*websocket.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, _, err := d.DialContext(ctx, url, header)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("dial client %d: %w", i, err)
		}
		conns = append(conns, c)
		if subscribe != nil {
			if err := c.WriteMessage(websocket.TextMessage, subscribe); err != nil {
				return nil, err
			}
		}
		go func() {
			for {
				_, raw, err := c.ReadMessage()
				if err != nil {
					return
				}
				onMessage(raw, time.Now())
			}
		}()
	}
	return conns, nil
}

// measureBerthPush runs the event store, the projection runner, the hub and
// the HTTP server in this process, connects the clients and times Rounds
// application updates; it returns the latencies and one pushed message.
func measureBerthPush(ctx context.Context, pool *pgxpool.Pool, opt PushOptions) ([]time.Duration, []byte, error) {
	log := slog.New(slog.DiscardHandler)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: log}, pool)
	if err != nil {
		return nil, nil, err
	}
	defer store.Close()
	cmds, err := commands.New(commands.Config{Logger: log}, store, nil)
	if err != nil {
		return nil, nil, err
	}
	runner, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, Log: store, Logger: log}, projections.NewReadModel(), projections.NewAudit())
	if err != nil {
		return nil, nil, err
	}
	reads := &webui.ProjectionReads{Queries: projections.NewQueries(pool), Runner: runner, Log: store}
	hub, err := webui.NewHub(webui.HubConfig{Logger: log}, webui.HubDeps{Log: store, Reads: reads, Notify: runner.Notify})
	if err != nil {
		return nil, nil, err
	}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Commands: cmds, Reads: reads, Hub: hub, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, r := range []func(context.Context) error{runner.Run, hub.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r(runCtx) }()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(runCtx, ln) }()

	meta := commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "bench"}}
	if _, err := cmds.CreateProject(ctx, meta, commands.CreateProject{Name: "bench"}); err != nil {
		return nil, nil, err
	}
	res, err := cmds.CreateApp(ctx, meta, commands.CreateApp{Project: "bench", Name: "web",
		Source: domain.Source{Image: "registry.example/web:1"}, Runtime: domain.Runtime{Port: 8080}})
	if err != nil {
		return nil, nil, err
	}
	if err := waitPosition(ctx, hub, res.Position); err != nil {
		return nil, nil, err
	}

	arr := &arrivals{clients: opt.Clients, rounds: map[int64]*arrival{}}
	var snapshots atomic.Int64
	var sample atomic.Pointer[[]byte]
	sub, _ := json.Marshal(webui.ClientMessage{Op: "subscribe", Topic: webui.TopicApps})
	conns, err := wsClients(ctx, "ws://"+ln.Addr().String()+"/api/v1/ws", nil, opt.Clients, sub, func(raw []byte, at time.Time) {
		var m struct {
			Op       string `json:"op"`
			Position int64  `json:"position"`
			Snapshot bool   `json:"snapshot"`
		}
		if json.Unmarshal(raw, &m) != nil || m.Op != "" {
			return
		}
		if m.Snapshot {
			snapshots.Add(1)
			return
		}
		if sample.Load() == nil {
			b := slices.Clone(raw)
			sample.Store(&b)
		}
		arr.received(m.Position, at)
	})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	if err := waitCount(ctx, &snapshots, int64(opt.Clients)); err != nil {
		return nil, nil, fmt.Errorf("snapshots: %w", err)
	}

	lat := make([]time.Duration, 0, opt.Rounds)
	for i := 0; i < opt.Rounds; i++ {
		port := 8081 + i%1000
		t0 := time.Now()
		res, err := cmds.UpdateApp(ctx, meta, commands.UpdateApp{App: "web", Patch: domain.AppPatch{Port: &port}})
		if err != nil {
			return nil, nil, fmt.Errorf("update %d: %w", i, err)
		}
		r := arr.get(res.Position)
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			return nil, nil, fmt.Errorf("round %d: %d of %d clients received position %d", i, r.n.Load(), opt.Clients, res.Position)
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		lat = append(lat, time.Unix(0, r.last.Load()).Sub(t0))
	}
	if st := hub.Stats(); st.Resyncs > 0 {
		return nil, nil, fmt.Errorf("%d clients fell behind and were told to resync", st.Resyncs)
	}
	s := sample.Load()
	if s == nil {
		return nil, nil, errors.New("no message was pushed")
	}
	return lat, *s, nil
}

func waitPosition(ctx context.Context, hub *webui.Hub, pos int64) error {
	deadline := time.Now().Add(30 * time.Second)
	for hub.Position() < pos {
		if time.Now().After(deadline) {
			return fmt.Errorf("the hub did not reach position %d", pos)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func waitCount(ctx context.Context, n *atomic.Int64, want int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("got %d of %d", n.Load(), want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// measureBareHub broadcasts msg (with a position of its own) to the
// clients through the simplest gorilla/websocket hub: a slice of
// connections, each with a buffered channel drained by its writer
// goroutine.
func measureBareHub(ctx context.Context, msg []byte, opt PushOptions) ([]time.Duration, error) {
	type client struct{ send chan []byte }
	var (
		mu      sync.Mutex
		clients []*client
	)
	up := websocket.Upgrader{}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		cl := &client{send: make(chan []byte, 256)}
		mu.Lock()
		clients = append(clients, cl)
		mu.Unlock()
		for b := range cl.send {
			if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
				break
			}
		}
		_ = c.Close()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = hs.Serve(ln) }()
	defer func() {
		mu.Lock()
		for _, c := range clients {
			close(c.send)
		}
		mu.Unlock()
		_ = hs.Close()
	}()

	var tmpl map[string]json.RawMessage
	if err := json.Unmarshal(msg, &tmpl); err != nil {
		return nil, err
	}
	arr := &arrivals{clients: opt.Clients, rounds: map[int64]*arrival{}}
	conns, err := wsClients(ctx, "ws://"+ln.Addr().String()+"/", nil, opt.Clients, nil, func(raw []byte, at time.Time) {
		var m struct {
			Position int64 `json:"position"`
		}
		if json.Unmarshal(raw, &m) == nil {
			arr.received(m.Position, at)
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for {
		mu.Lock()
		n := len(clients)
		mu.Unlock()
		if n == opt.Clients {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	lat := make([]time.Duration, 0, opt.Rounds)
	for i := 0; i < opt.Rounds; i++ {
		pos := int64(1_000_000 + i)
		tmpl["position"] = json.RawMessage(fmt.Sprint(pos))
		b, err := json.Marshal(tmpl)
		if err != nil {
			return nil, err
		}
		r := arr.get(pos)
		t0 := time.Now()
		mu.Lock()
		for _, c := range clients {
			c.send <- b
		}
		mu.Unlock()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("round %d: %d of %d clients received", i, r.n.Load(), opt.Clients)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		lat = append(lat, time.Unix(0, r.last.Load()).Sub(t0))
	}
	return lat, nil
}

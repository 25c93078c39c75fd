package projections

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Projection is a named consumer of the log. The Runner reads batches of
// events after the projection's checkpoint and, in one transaction, calls
// Apply and saves the checkpoint, so an event is applied exactly once to
// what the transaction writes.
//
// WARNING: a projection's name is its checkpoint's key: renaming one makes
// it consume the whole log again.
type Projection interface {
	// Name is the projection's stable name.
	Name() string
	// IsReadModel reports whether WaitFor waits for the projection.
	IsReadModel() bool
	// Start prepares the projection and returns the position to resume
	// after (normally its checkpoint). The runner calls it again after a
	// failed batch, so it must discard any in-memory state Apply built.
	Start(ctx context.Context, pool *pgxpool.Pool) (int64, error)
	// Apply applies a batch of consecutive events within tx. An error (or a
	// panic) rolls the batch back, checkpoint included.
	Apply(ctx context.Context, tx pgx.Tx, events []domain.RecordedEvent) error
}

// Rebuilder is a projection that can be rebuilt from position 0 into fresh
// tables swapped in while the live ones keep serving.
type Rebuilder interface {
	Projection
	// Rebuild builds the projection's state afresh and swaps it in
	// atomically together with its checkpoint. It returns the number of
	// events it consumed.
	Rebuild(ctx context.Context, pool *pgxpool.Pool) (int64, error)
}

// Projection states reported by Status.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateFailed   = "failed"
	StateStopped  = "stopped"
)

// Status is one projection's progress.
type Status struct {
	Name       string `json:"name"`
	Position   int64  `json:"position"`
	Head       int64  `json:"head"`
	Lag        int64  `json:"lag"`
	State      string `json:"state"`
	LastError  string `json:"last_error,omitempty"`
	Failures   int    `json:"failures,omitempty"`
	Rebuilding bool   `json:"rebuilding,omitempty"`
	ReadModel  bool   `json:"read_model"`
	// Processes is how many berth processes apply the projection (from
	// their liveness locks in PostgreSQL); 0 when none does.
	Processes int `json:"processes"`
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	// Pool is the database of the read models and checkpoints; required.
	Pool *pgxpool.Pool
	// Log is where events are read; nil reads the events table of Pool.
	Log LogReader
	// BatchSize is the most events applied in one transaction (500).
	BatchSize int
	// PollInterval is how often the head is polled for new events and
	// WaitFor polls checkpoints (200ms). Notify wakes the runner sooner.
	PollInterval time.Duration
	// RetryMin and RetryMax bound the backoff after a failed batch
	// (100ms, 30s).
	RetryMin, RetryMax time.Duration
	// Logger receives failures (slog.Default()).
	Logger *slog.Logger
	// BulkCatchUp is how far behind the log's head (in events) a
	// projection that can be rebuilt must start for the runner to catch it
	// up with Rebuild, the bulk path, rather than batch by batch: a
	// restored database or a projection added by an upgrade starts with
	// empty read models. The lag must also be at least a twentieth of the
	// head, since a rebuild reads the whole log (50,000; negative: never).
	BulkCatchUp int64
}

func (c RunnerConfig) withDefaults() (RunnerConfig, error) {
	if c.Pool == nil {
		return c, domain.Invalid("pool", "is required")
	}
	if c.Log == nil {
		c.Log = NewTableReader(c.Pool)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		return c, domain.Invalid("retry_max", "must be at least retry_min")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.BulkCatchUp == 0 {
		c.BulkCatchUp = 50_000
	}
	return c, nil
}

type projState struct {
	p          Projection
	pos        int64
	state      string
	lastErr    string
	failures   int
	rebuilding bool
}

// Runner drives projections concurrently. Its methods are safe for
// concurrent use; Run may be called once.
type Runner struct {
	cfg    RunnerConfig
	states []*projState

	mu       sync.Mutex
	head     int64
	progress chan struct{} // closed and replaced when a checkpoint moves
	wake     chan struct{} // closed and replaced when new events may exist
}

// NewRunner returns a Runner for projections, whose names must be unique.
func NewRunner(cfg RunnerConfig, projections ...Projection) (*Runner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("projections: runner: %w", err)
	}
	r := &Runner{cfg: cfg, progress: make(chan struct{}), wake: make(chan struct{})}
	seen := map[string]bool{}
	for _, p := range projections {
		if p == nil || p.Name() == "" || seen[p.Name()] {
			return nil, fmt.Errorf("projections: runner: %w", domain.Invalid("projections", "names must be unique and not empty"))
		}
		seen[p.Name()] = true
		r.states = append(r.states, &projState{p: p, state: StateStopped})
	}
	return r, nil
}

// Run runs every projection until ctx ends and returns ctx's error. A
// failing projection is retried with backoff; it never stops the others.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range r.states {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runOne(ctx, s)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.pollHead(ctx)
	}()
	go func() {
		defer wg.Done()
		r.holdLiveness(ctx)
	}()
	wg.Wait()
	return ctx.Err()
}

// Notify tells the runner that events up to position exist (appenders in
// this process call it after a commit), waking idle projections at once.
func (r *Runner) Notify(position int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if position > r.head {
		r.head = position
	}
	close(r.wake)
	r.wake = make(chan struct{})
}

func (r *Runner) pollHead(ctx context.Context) {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		if h, err := r.cfg.Log.Head(ctx); err == nil {
			r.mu.Lock()
			grew := h > r.head
			if grew {
				r.head = h
				close(r.wake)
				r.wake = make(chan struct{})
			}
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runner) set(s *projState, f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	close(r.progress)
	r.progress = make(chan struct{})
}

func (r *Runner) runOne(ctx context.Context, s *projState) {
	log := r.cfg.Logger.With("projection", s.p.Name())
	backoff := r.cfg.RetryMin
	for ctx.Err() == nil {
		err := r.follow(ctx, s)
		if ctx.Err() != nil {
			break
		}
		r.set(s, func() {
			s.state, s.lastErr = StateFailed, err.Error()
			s.failures++
		})
		log.Error("projection failed; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, r.cfg.RetryMax)
	}
	r.set(s, func() { s.state = StateStopped })
}

// follow starts the projection and applies batches until ctx ends or a
// batch fails.
func (r *Runner) follow(ctx context.Context, s *projState) error {
	r.set(s, func() {
		if s.state != StateFailed {
			s.state = StateStarting
		}
	})
	if _, err := loadCheckpoint(ctx, r.cfg.Pool, s.p.Name()); err != nil {
		return err
	}
	pos, err := safeStart(ctx, s.p, r.cfg.Pool)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if pos, err = r.bulkCatchUp(ctx, s, pos); err != nil {
		return err
	}
	r.set(s, func() {
		s.pos = pos
		if s.state != StateFailed {
			s.state = StateRunning
		}
	})
	for {
		r.mu.Lock()
		wake := r.wake
		r.mu.Unlock()
		events, err := r.cfg.Log.ReadAll(ctx, domain.ReadAllQuery{After: pos, Limit: r.cfg.BatchSize})
		if err != nil {
			return err
		}
		if len(events) == 0 {
			r.set(s, func() {
				if s.state == StateFailed {
					s.state = StateRunning
				}
			})
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
			case <-time.After(r.cfg.PollInterval):
			}
			continue
		}
		next, err := r.applyBatch(ctx, s.p, pos, events)
		if err != nil {
			return err
		}
		pos = next
		r.set(s, func() {
			s.pos, s.state, s.lastErr, s.failures = pos, StateRunning, "", 0
		})
	}
}

// bulkCatchUp rebuilds s's projection when it starts far behind the head
// (see RunnerConfig.BulkCatchUp) and returns the position to follow from.
func (r *Runner) bulkCatchUp(ctx context.Context, s *projState, pos int64) (int64, error) {
	if _, ok := s.p.(Rebuilder); !ok || r.cfg.BulkCatchUp < 0 {
		return pos, nil
	}
	head, err := r.cfg.Log.Head(ctx)
	if err != nil {
		return pos, err
	}
	lag := head - pos
	if lag < r.cfg.BulkCatchUp || lag < head/20 {
		return pos, nil
	}
	r.mu.Lock()
	r.head = max(r.head, head)
	r.mu.Unlock()
	log := r.cfg.Logger.With("projection", s.p.Name())
	log.Info("projection far behind the log; catching up with a rebuild", "position", pos, "head", head)
	start := time.Now()
	n, err := r.Rebuild(ctx, s.p.Name())
	if err != nil {
		return pos, fmt.Errorf("catch up: %w", err)
	}
	log.Info("projection caught up", "events", n, "took", time.Since(start).Round(time.Millisecond))
	return loadCheckpoint(ctx, r.cfg.Pool, s.p.Name())
}

// Lagging returns the status of every read-model projection more than
// bound events behind the head: what readiness reports.
func (r *Runner) Lagging(ctx context.Context, bound int64) []Status {
	var out []Status
	for _, s := range r.Status(ctx) {
		if s.ReadModel && s.Lag > bound {
			out = append(out, s)
		}
	}
	return out
}

func safeStart(ctx context.Context, p Projection, pool *pgxpool.Pool) (pos int64, err error) {
	defer func() {
		if v := recover(); v != nil {
			slog.Error("projection panicked", "projection", p.Name(), "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return p.Start(ctx, pool)
}

// applyBatch applies events (which follow pos) and moves the checkpoint in
// one transaction. When the checkpoint is not at pos any more (a rebuild
// swapped in newer state) nothing is applied and the stored position is
// returned.
func (r *Runner) applyBatch(ctx context.Context, p Projection, pos int64, events []domain.RecordedEvent) (next int64, err error) {
	tx, err := r.cfg.Pool.Begin(ctx)
	if err != nil {
		return pos, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	var stored int64
	if err := tx.QueryRow(ctx, "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE", p.Name()).Scan(&stored); err != nil {
		return pos, fmt.Errorf("lock checkpoint: %w", err)
	}
	if stored != pos {
		return stored, tx.Rollback(ctx)
	}
	last := events[len(events)-1].Position
	if err := safeApply(ctx, p, tx, events); err != nil {
		return pos, fmt.Errorf("apply events %d..%d: %w", events[0].Position, last, err)
	}
	if _, err := tx.Exec(ctx, "UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1", p.Name(), last); err != nil {
		return pos, fmt.Errorf("save checkpoint: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return pos, fmt.Errorf("commit: %w", err)
	}
	return last, nil
}

func safeApply(ctx context.Context, p Projection, tx pgx.Tx, events []domain.RecordedEvent) (err error) {
	defer func() {
		if v := recover(); v != nil {
			slog.Error("projection panicked", "projection", p.Name(), "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return p.Apply(ctx, tx, events)
}

// loadCheckpoint returns name's checkpoint, creating it at 0.
func loadCheckpoint(ctx context.Context, pool *pgxpool.Pool, name string) (int64, error) {
	if _, err := pool.Exec(ctx, "INSERT INTO checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", name); err != nil {
		return 0, fmt.Errorf("create checkpoint %s: %w", name, err)
	}
	var pos int64
	if err := pool.QueryRow(ctx, "SELECT position FROM checkpoints WHERE name = $1", name).Scan(&pos); err != nil {
		return 0, fmt.Errorf("load checkpoint %s: %w", name, err)
	}
	return pos, nil
}

// Status reports every projection's position, the log's head and the lag
// between them. When the head cannot be read the last known one is used.
//
// Projections this runner is not running (a CLI's runner that never calls
// Run) report their stored checkpoint, as another process advanced it, and
// are running when another process holds their liveness lock.
func (r *Runner) Status(ctx context.Context) []Status {
	if h, err := r.cfg.Log.Head(ctx); err == nil {
		r.mu.Lock()
		r.head = max(r.head, h)
		r.mu.Unlock()
	}
	st := r.snapshot()
	for i, s := range st {
		if s.State != StateStopped {
			st[i].Processes = max(r.liveProcesses(ctx, s.Name), 1)
			continue
		}
		var pos int64
		if err := r.cfg.Pool.QueryRow(ctx, "SELECT position FROM checkpoints WHERE name = $1", s.Name).Scan(&pos); err == nil {
			st[i].Position, st[i].Lag = pos, max(s.Head-pos, 0)
		}
		// Stopped here: running when another process holds its
		// liveness lock.
		if n := r.liveProcesses(ctx, s.Name); n > 0 {
			st[i].State, st[i].Processes = StateRunning, n
		}
	}
	return st
}

func (r *Runner) snapshot() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, 0, len(r.states))
	for _, s := range r.states {
		out = append(out, Status{
			Name: s.p.Name(), Position: s.pos, Head: r.head, Lag: max(r.head-s.pos, 0),
			State: s.state, LastError: s.lastErr, Failures: s.failures,
			Rebuilding: s.rebuilding, ReadModel: s.p.IsReadModel(),
		})
	}
	return out
}

// WriteMetrics writes the projections' positions, lags and health in the
// Prometheus text exposition format (version 0.0.4), from the last
// observed head.
func (r *Runner) WriteMetrics(w io.Writer) error {
	st := r.snapshot()
	var b []byte
	metric := func(name, help, typ string, value func(Status) int64) {
		b = append(b, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n"...)
		for _, s := range st {
			b = append(b, name+`{projection="`...)
			b = append(b, escapeLabel(s.Name)...)
			b = append(b, `"} `...)
			b = strconv.AppendInt(b, value(s), 10)
			b = append(b, '\n')
		}
	}
	metric("berth_projection_position", "Last log position applied by the projection.", "gauge", func(s Status) int64 { return s.Position })
	metric("berth_projection_lag_events", "Events in the log the projection has not applied yet.", "gauge", func(s Status) int64 { return s.Lag })
	metric("berth_projection_up", "1 when the projection is running, 0 when it failed or stopped.", "gauge", func(s Status) int64 {
		if s.State == StateRunning {
			return 1
		}
		return 0
	})
	metric("berth_projection_failures", "Consecutive failed attempts of the projection.", "gauge", func(s Status) int64 { return int64(s.Failures) })
	var head int64
	if len(st) > 0 {
		head = st[0].Head
	}
	b = append(b, "# HELP berth_event_head Last committed log position.\n# TYPE berth_event_head gauge\nberth_event_head "...)
	b = strconv.AppendInt(b, head, 10)
	b = append(b, '\n')
	_, err := w.Write(b)
	return err
}

func escapeLabel(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			out = append(out, `\\`...)
		case '"':
			out = append(out, `\"`...)
		case '\n':
			out = append(out, `\n`...)
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// ErrNotRebuildable is returned by Rebuild for a projection that cannot be
// rebuilt into fresh tables.
var ErrNotRebuildable = fmt.Errorf("projection cannot be rebuilt: %w", domain.ErrInvalid)

// WaitFor blocks until every read-model projection has applied position,
// or ctx ends (then it returns ctx's error). A projection this runner
// applies counts once this runner has taken the position in (what Status
// and the metrics report): its stored checkpoint commits a moment before,
// and answering from it would let a caller see this process's status
// behind what it waited for. A projection this runner does not apply now
// (stopped here, or failed and retrying) counts by its stored checkpoint,
// which another process may advance.
func (r *Runner) WaitFor(ctx context.Context, position int64) error {
	if !slices.ContainsFunc(r.states, func(s *projState) bool { return s.p.IsReadModel() }) {
		return nil
	}
	t := time.NewTicker(r.cfg.PollInterval / 4)
	defer t.Stop()
	for {
		r.mu.Lock()
		progress := r.progress
		var behind, elsewhere []string
		for _, s := range r.states {
			if !s.p.IsReadModel() || s.pos >= position {
				continue
			}
			behind = append(behind, s.p.Name())
			if s.state != StateRunning && s.state != StateStarting {
				elsewhere = append(elsewhere, s.p.Name())
			}
		}
		r.mu.Unlock()
		if len(behind) == 0 {
			return nil
		}
		if len(elsewhere) == len(behind) {
			var least int64
			var n int
			err := r.cfg.Pool.QueryRow(ctx, "SELECT coalesce(min(position), 0), count(*) FROM checkpoints WHERE name = ANY($1)", elsewhere).Scan(&least, &n)
			if err == nil && n == len(elsewhere) && least >= position {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for position %d: %w", position, ctx.Err())
		case <-progress:
		case <-t.C:
		}
	}
}

// WaitApplied blocks until the projection called name, running in this
// runner, has applied position, or ctx ends (then it returns ctx's error).
// It waits on the runner's own progress, never polling the database: an
// appender in this process learns when what it appended took effect here
// (the routing projection's files, which this process's Traefik reads).
// Errors: ErrNotFound for a name this runner does not run.
func (r *Runner) WaitApplied(ctx context.Context, name string, position int64) error {
	var st *projState
	for _, s := range r.states {
		if s.p.Name() == name {
			st = s
		}
	}
	if st == nil {
		return fmt.Errorf("projection %q: %w", name, domain.ErrNotFound)
	}
	r.Notify(position) // the caller just appended it: wake the projections now
	for {
		r.mu.Lock()
		progress, done := r.progress, st.pos >= position
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to apply position %d: %w", name, position, ctx.Err())
		case <-progress:
		}
	}
}

// Rebuild rebuilds the projection called name from position 0 into fresh
// tables and swaps them in while the live ones keep serving; the running
// projection then continues from the rebuilt position. It returns the
// number of events consumed. Errors: ErrNotFound for an unknown name,
// ErrNotRebuildable for a projection without tables.
func (r *Runner) Rebuild(ctx context.Context, name string) (int64, error) {
	i := slices.IndexFunc(r.states, func(s *projState) bool { return s.p.Name() == name })
	if i < 0 {
		return 0, fmt.Errorf("projection %q: %w", name, domain.ErrNotFound)
	}
	s := r.states[i]
	rb, ok := s.p.(Rebuilder)
	if !ok {
		return 0, fmt.Errorf("projection %q: %w", name, ErrNotRebuildable)
	}
	r.set(s, func() { s.rebuilding = true })
	defer r.set(s, func() { s.rebuilding = false })
	n, err := rb.Rebuild(ctx, r.cfg.Pool)
	if err != nil {
		return n, fmt.Errorf("rebuild %s: %w", name, err)
	}
	if pos, err := loadCheckpoint(ctx, r.cfg.Pool, name); err == nil {
		r.set(s, func() { s.pos = max(s.pos, pos) })
	}
	r.Notify(0)
	return n, nil
}

// Names lists the projections in the order they were given.
func (r *Runner) Names() []string {
	out := make([]string, 0, len(r.states))
	for _, s := range r.states {
		out = append(out, s.p.Name())
	}
	return out
}

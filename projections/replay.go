package projections

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/projections/traefik"
)

// ReplayName is the checkpoint name of the replay snapshots.
const ReplayName = "replay"

// snapshotFormat identifies what a snapshot holds and the fold that made
// it. Snapshots of another format are deleted when Replay starts.
//
// WARNING: change it whenever Model.Apply computes something else from the
// same events, or time travel would answer from snapshots of the old fold.
const snapshotFormat = 2

// ReplayConfig configures NewReplay.
type ReplayConfig struct {
	// Every is how many positions apart snapshots are taken (32768). A
	// state as of a position folds at most Every-1 events after the
	// snapshot before it.
	Every int64
	// Logger receives snapshots found stale (slog.Default()).
	Logger *slog.Logger
}

// Replay computes berth's state as of a point of the log (time travel)
// from periodic snapshots of the Model, folding forward from the nearest
// snapshot at or before the point. It is also the projection that takes
// those snapshots, one every Every positions, as the log grows.
//
// A snapshot is a cache, never a source of truth: it holds the hash of the
// event it was folded up to, and one whose event no longer has that hash
// (the database was restored from another history) or that another
// version of berth made is ignored and deleted. Snapshots hold what the
// state of applications depends on: projects, applications, and of each
// deployment its application, image and container; the deployments' own
// histories (steps, times) are not part of a State. Safe for concurrent
// use.
type Replay struct {
	pool  *pgxpool.Pool
	every int64
	log   *slog.Logger
}

var _ Projection = (*Replay)(nil)

// NewReplay returns the Replay of the events table of pool.
func NewReplay(cfg ReplayConfig, pool *pgxpool.Pool) (*Replay, error) {
	if pool == nil {
		return nil, fmt.Errorf("projections: replay: %w", domain.Invalid("pool", "is required"))
	}
	if cfg.Every < 0 {
		return nil, fmt.Errorf("projections: replay: %w", domain.Invalid("every", "must not be negative"))
	}
	if cfg.Every == 0 {
		cfg.Every = 32768
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Replay{pool: pool, every: cfg.Every, log: cfg.Logger}, nil
}

// Name returns ReplayName.
func (*Replay) Name() string { return ReplayName }

// IsReadModel is false: nothing waits for snapshots.
func (*Replay) IsReadModel() bool { return false }

// Start deletes snapshots of another format, takes the snapshots missing
// up to the head and returns the head.
func (r *Replay) Start(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	pos, err := loadCheckpoint(ctx, pool, ReplayName)
	if err != nil {
		return 0, err
	}
	if _, err := pool.Exec(ctx, "DELETE FROM replay_snapshots WHERE format <> $1", snapshotFormat); err != nil {
		return 0, fmt.Errorf("replay: drop old snapshots: %w", err)
	}
	head, err := readHead(ctx, pool)
	if err != nil {
		return 0, err
	}
	if err := r.takeUpTo(ctx, head); err != nil {
		return 0, err
	}
	if _, err := pool.Exec(ctx, "UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1 AND position < $2", ReplayName, head); err != nil {
		return 0, fmt.Errorf("replay: save checkpoint: %w", err)
	}
	return max(pos, head), nil
}

// Apply takes a snapshot when the batch reaches a multiple of Every.
func (r *Replay) Apply(ctx context.Context, _ pgx.Tx, events []domain.RecordedEvent) error {
	first, last := events[0].Position, events[len(events)-1].Position
	if (first-1)/r.every == last/r.every {
		return nil
	}
	return r.takeUpTo(ctx, last)
}

// takeUpTo takes a snapshot at every multiple of Every up to upto that
// has none after the last valid snapshot.
func (r *Replay) takeUpTo(ctx context.Context, upto int64) error {
	target := upto / r.every * r.every
	if target == 0 {
		return nil
	}
	var latest int64
	if err := r.pool.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM replay_snapshots WHERE position <= $1", target).Scan(&latest); err != nil {
		return fmt.Errorf("replay: snapshots: %w", err)
	}
	if latest == target {
		return nil
	}
	m, at, err := r.load(ctx, target)
	if err != nil {
		return err
	}
	for b := (at/r.every + 1) * r.every; b <= target; b += r.every {
		start := time.Now()
		if err := foldPool(ctx, r.pool, m, at, b, nil); err != nil {
			return fmt.Errorf("replay: fold to %d: %w", b, err)
		}
		m.leanDeployments()
		if err := r.save(ctx, m, b); err != nil {
			return err
		}
		r.log.Debug("replay: snapshot taken", "position", b, "took", time.Since(start))
		at = b
	}
	return nil
}

// AsOf returns the state as of at, with application files rendered with
// cfg's names (zero: traefik.DefaultConfig), folded from the nearest valid
// snapshot. A position past the head is the head.
func (r *Replay) AsOf(ctx context.Context, at Point, cfg traefik.Config) (State, error) {
	target, err := r.resolve(ctx, at)
	if err != nil {
		return State{}, err
	}
	if target == 0 {
		return stateOf(NewModel(), cfg), nil
	}
	m, from, err := r.load(ctx, target)
	if err != nil {
		return State{}, err
	}
	if err := foldPool(ctx, r.pool, m, from, target, nil); err != nil {
		return State{}, fmt.Errorf("as of: %w", err)
	}
	// The fold reads only the events it applies; the state is as of the
	// target, whatever its event.
	m.Position = target
	if err := r.pool.QueryRow(ctx, "SELECT recorded_at FROM events WHERE position = $1", target).Scan(&m.At); err != nil {
		return State{}, fmt.Errorf("as of: read event %d: %w", target, err)
	}
	m.At = m.At.UTC()
	return stateOf(m, cfg), nil
}

// resolve returns the position at stands for: a position (at most the
// head), or the last position before the first event recorded after a
// time.
func (r *Replay) resolve(ctx context.Context, at Point) (int64, error) {
	head, err := readHead(ctx, r.pool)
	if err != nil {
		return 0, err
	}
	if at.Time.IsZero() {
		return min(at.Position, head), nil
	}
	var after *int64
	if err := r.pool.QueryRow(ctx, "SELECT min(position) FROM events WHERE recorded_at > $1", at.Time).Scan(&after); err != nil {
		return 0, fmt.Errorf("as of %s: %w", at.Time.Format(time.RFC3339Nano), err)
	}
	if after == nil {
		return head, nil
	}
	return min(*after-1, head), nil
}

// load returns the Model of the latest valid snapshot at or before pos and
// its position, or an empty Model at 0. Invalid snapshots are deleted.
func (r *Replay) load(ctx context.Context, pos int64) (*Model, int64, error) {
	for {
		var at int64
		var hash, current, data []byte
		var format int
		err := r.pool.QueryRow(ctx, `SELECT s.position, s.hash, s.format, s.model, e.hash
  FROM replay_snapshots s LEFT JOIN events e ON e.position = s.position
 WHERE s.position <= $1 ORDER BY s.position DESC LIMIT 1`, pos).Scan(&at, &hash, &format, &data, &current)
		if errors.Is(err, pgx.ErrNoRows) {
			return NewModel(), 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("replay: load snapshot: %w", err)
		}
		var m *Model
		if format == snapshotFormat && bytes.Equal(hash, current) {
			if m, err = decodeSnapshot(data); err == nil {
				return m, at, nil
			}
		}
		r.log.Warn("replay: snapshot does not match the log or this version; deleting it", "position", at, "err", err)
		if _, err := r.pool.Exec(ctx, "DELETE FROM replay_snapshots WHERE position = $1", at); err != nil {
			return nil, 0, fmt.Errorf("replay: delete snapshot %d: %w", at, err)
		}
	}
}

// save stores m as the snapshot at pos.
func (r *Replay) save(ctx context.Context, m *Model, pos int64) error {
	data, err := encodeSnapshot(m)
	if err != nil {
		return err
	}
	if _, err := r.pool.Exec(ctx, `INSERT INTO replay_snapshots (position, hash, format, model)
SELECT position, hash, $2, $3 FROM events WHERE position = $1
ON CONFLICT (position) DO UPDATE SET hash = EXCLUDED.hash, format = EXCLUDED.format, model = EXCLUDED.model, created_at = now()`,
		pos, snapshotFormat, data); err != nil {
		return fmt.Errorf("replay: save snapshot %d: %w", pos, err)
	}
	return nil
}

// leanDeployments keeps of each deployment what the state of its
// application depends on (see Replay).
func (m *Model) leanDeployments() {
	for id, d := range m.Deployments {
		m.Deployments[id] = &Deployment{ID: d.ID, App: d.App, Incarnation: d.Incarnation, ImageID: d.ImageID, ContainerID: d.ContainerID, ContainerName: d.ContainerName}
	}
}

// snapshotHeader is the part of a snapshot encoded as JSON.
type snapshotHeader struct {
	Position int64     `json:"position"`
	At       time.Time `json:"at"`
	Projects []Project `json:"projects"`
	Apps     []App     `json:"apps"`
}

// encodeSnapshot writes m gzip-compressed: a JSON header line with the
// projects and applications, then the number of deployments and, for
// each, its id, application, image, container id and container name as
// length-prefixed strings and its incarnation as a varint.
func encodeSnapshot(m *Model) ([]byte, error) {
	h := snapshotHeader{Position: m.Position, At: m.At, Projects: make([]Project, 0, len(m.Projects)), Apps: make([]App, 0, len(m.Apps))}
	for _, p := range m.Projects {
		h.Projects = append(h.Projects, *p)
	}
	for _, a := range m.Apps {
		h.Apps = append(h.Apps, *a)
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(zw)
	if err := json.NewEncoder(w).Encode(h); err != nil {
		return nil, fmt.Errorf("replay: encode snapshot: %w", err)
	}
	var n [binary.MaxVarintLen64]byte
	put := func(s string) {
		_, _ = w.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		_, _ = w.WriteString(s)
	}
	_, _ = w.Write(n[:binary.PutUvarint(n[:], uint64(len(m.Deployments)))])
	for _, d := range m.Deployments {
		put(d.ID)
		put(d.App)
		put(d.ImageID)
		put(d.ContainerID)
		put(d.ContainerName)
		_, _ = w.Write(n[:binary.PutUvarint(n[:], uint64(max(d.Incarnation, 0)))])
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("replay: encode snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("replay: encode snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

func decodeSnapshot(data []byte) (*Model, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("replay: decode snapshot: %w", err)
	}
	r := bufio.NewReaderSize(zr, 64<<10)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("replay: decode snapshot: %w", err)
	}
	var h snapshotHeader
	if err := jsonv2.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("replay: decode snapshot: %w", err)
	}
	m := NewModel()
	m.Position, m.At = h.Position, h.At
	for i := range h.Projects {
		m.Projects[h.Projects[i].Name] = &h.Projects[i]
	}
	for i := range h.Apps {
		a := &h.Apps[i]
		if a.Config.Env == nil {
			a.Config.Env = []EnvVar{}
		}
		if a.Config.Domains == nil {
			a.Config.Domains = []domain.Route{}
		}
		m.Apps[a.Name] = a
	}
	// The deployments' strings are substrings of one string, and the
	// deployments elements of one slice: two allocations for all of them.
	rest, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("replay: decode snapshot: %w", err)
	}
	all := string(rest)
	pos := 0
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(rest[pos:])
		if n <= 0 {
			return 0, false
		}
		pos += n
		return v, true
	}
	count, ok := next()
	if !ok || count > uint64(len(rest)) {
		return nil, errors.New("replay: decode snapshot: bad deployment count")
	}
	deps := make([]Deployment, count)
	m.Deployments = make(map[string]*Deployment, count)
	for i := range deps {
		d := &deps[i]
		for _, p := range []*string{&d.ID, &d.App, &d.ImageID, &d.ContainerID, &d.ContainerName} {
			n, ok := next()
			if !ok || n > uint64(len(rest)-pos) {
				return nil, errors.New("replay: decode snapshot: truncated")
			}
			*p = all[pos : pos+int(n)]
			pos += int(n)
		}
		inc, ok := next()
		if !ok || inc > math.MaxInt32 {
			return nil, errors.New("replay: decode snapshot: truncated")
		}
		d.Incarnation = int(inc)
		m.Deployments[d.ID] = d
	}
	return m, nil
}

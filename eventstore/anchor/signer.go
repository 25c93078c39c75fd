package anchor

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"berth/domain"
	"berth/eventstore"
)

// signerLock is the advisory lock that makes one process sign at a time
// ("berth-cpt" as an integer).
const signerLock int64 = 0x6265727468_637074

// Signer signs the head of the log at least every Every events or every
// Interval while it moves, writes each checkpoint into Dir and appends it
// to the log as domain.EventCheckpointSigned.
type Signer struct {
	Store    *eventstore.Postgres
	Key      ed25519.PrivateKey
	Dir      string        // the anchor directory; empty: none
	Every    int64         // sign once the head moved this many events (default 1000)
	Interval time.Duration // sign at least this often while the head moves (default 1 min)
	Logger   *slog.Logger

	signed  int64 // the position the last checkpoint covers
	ownedAt int64 // the position of the last checkpoint's own event
	at      time.Time
	loaded  bool
}

func (s *Signer) defaults() {
	if s.Every <= 0 {
		s.Every = 1000
	}
	if s.Interval <= 0 {
		s.Interval = time.Minute
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
}

// Run signs checkpoints until ctx ends. It looks at the head every second
// (or every Interval, if shorter).
func (s *Signer) Run(ctx context.Context) error {
	s.defaults()
	tick := min(time.Second, s.Interval)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if _, _, err := s.Tick(ctx, false); err != nil && ctx.Err() == nil {
			s.Logger.Error("signing a checkpoint failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Tick signs the head when it is due (or, with force, whenever events came
// since the last checkpoint) and returns the checkpoint and whether one
// was signed.
func (s *Signer) Tick(ctx context.Context, force bool) (Checkpoint, bool, error) {
	s.defaults()
	// One signer at a time across processes; each reads the last
	// checkpoint from the log, whoever signed it.
	tx, err := s.Store.Pool().Begin(ctx)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("anchor: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var mine bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, signerLock).Scan(&mine); err != nil {
		return Checkpoint{}, false, fmt.Errorf("anchor: %w", err)
	}
	if !mine {
		return Checkpoint{}, false, nil
	}
	if err := s.load(ctx); err != nil {
		return Checkpoint{}, false, err
	}
	pos, hash, err := s.Store.HeadHash(ctx)
	if err != nil {
		return Checkpoint{}, false, err
	}
	if pos <= s.signed || pos == s.ownedAt {
		return Checkpoint{}, false, nil
	}
	if !force && pos-s.signed < s.Every && time.Since(s.at) < s.Interval {
		return Checkpoint{}, false, nil
	}
	now := time.Now()
	c := Sign(s.Key, pos, hash, now)
	if s.Dir != "" {
		if err := WriteFile(s.Dir, c); err != nil {
			return Checkpoint{}, false, err
		}
	}
	ev, err := checkpointEvent(c).Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "checkpoint-signer"}})
	if err != nil {
		return Checkpoint{}, false, err
	}
	res, err := s.Store.Append(ctx, domain.StreamAppend{StreamID: domain.CheckpointStream, Expected: domain.ExpectAny, Events: []domain.EventData{ev}})
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("anchor: append checkpoint: %w", err)
	}
	s.signed, s.ownedAt, s.at = pos, res.LastPosition(), now
	c.EventPosition = s.ownedAt
	s.Logger.Debug("signed a checkpoint", "position", pos)
	return c, true, nil
}

// load finds the last checkpoint on the log.
func (s *Signer) load(ctx context.Context) error {
	var pos int64
	var data []byte
	err := s.Store.Pool().QueryRow(ctx, `SELECT position, data FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1`,
		domain.CheckpointStream).Scan(&pos, &data)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if !s.loaded {
			// The first checkpoint comes after Every events or Interval.
			s.at = time.Now()
		}
	case err != nil:
		return fmt.Errorf("anchor: read the last checkpoint: %w", err)
	default:
		var c domain.CheckpointSigned
		if err := json.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("anchor: read the last checkpoint: %w", err)
		}
		s.signed, s.ownedAt, s.at = c.Position, pos, c.SignedAt
	}
	s.loaded = true
	return nil
}

// List returns the checkpoints on the log after position after (of their
// own events), at most limit, in position order.
func List(ctx context.Context, store domain.EventStore, after int64, limit int) ([]Checkpoint, error) {
	evs, err := store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: limit,
		Filter: domain.Filter{Streams: []string{domain.CheckpointStream}, Types: []string{domain.EventCheckpointSigned}}})
	if err != nil {
		return nil, err
	}
	out := make([]Checkpoint, 0, len(evs))
	for _, e := range evs {
		var c domain.CheckpointSigned
		if err := json.Unmarshal(e.Data, &c); err != nil {
			return nil, fmt.Errorf("anchor: checkpoint event %d: %w", e.Position, err)
		}
		out = append(out, Checkpoint{Position: c.Position, Hash: c.Hash, Key: c.Key, Signature: c.Signature, SignedAt: c.SignedAt, EventPosition: e.Position})
	}
	return out, nil
}

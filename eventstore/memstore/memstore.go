// Package memstore is an in-memory domain.EventStore and
// domain.CheckpointStore for unit tests. It has the PostgreSQL store's
// semantics (validation, expected versions, idempotent re-appends, the hash
// chain, filters, Subscribe) without persistence. Data and metadata are
// stored compacted (json.Compact) and hashed in that form.
package memstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore/internal/core"
)

// Store is the in-memory event store. It is safe for concurrent use.
type Store struct {
	mu          sync.RWMutex
	events      []stored // events[i] has position i+1
	streams     map[string][]int64
	ids         map[uuid.UUID]int64
	checkpoints map[string]int64
	changed     chan struct{} // closed and replaced on every append
	hasher      *core.Hasher
}

type stored struct {
	e    domain.RecordedEvent
	meta []byte
	id   uuid.UUID
}

var (
	_ domain.EventStore      = (*Store)(nil)
	_ domain.CheckpointStore = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		streams:     map[string][]int64{},
		ids:         map[uuid.UUID]int64{},
		checkpoints: map[string]int64{},
		changed:     make(chan struct{}),
		hasher:      core.NewHasher(),
	}
}

// Append implements domain.EventStore.
func (s *Store) Append(ctx context.Context, appends ...domain.StreamAppend) (domain.AppendResult, error) {
	streams, total, err := core.Prepare(appends)
	if err != nil {
		return domain.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return domain.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	found := 0
	for _, st := range streams {
		for _, e := range st.Events {
			if pos, ok := s.ids[e.ID]; ok {
				if s.events[pos-1].e.StreamID != st.StreamID {
					return domain.AppendResult{}, fmt.Errorf("memstore: event id %s already used in another stream: %w", e.ID, domain.ErrConflict)
				}
				found++
			}
		}
	}
	if found == total {
		res := domain.AppendResult{Duplicate: true}
		for _, st := range streams {
			var v int64
			for _, e := range st.Events {
				ev := s.events[s.ids[e.ID]-1].e
				res.Positions = append(res.Positions, ev.Position)
				v = max(v, ev.StreamVersion)
			}
			res.Streams = append(res.Streams, domain.StreamVersion{StreamID: st.StreamID, Version: v})
		}
		return res, nil
	}
	if found > 0 {
		return domain.AppendResult{}, fmt.Errorf("memstore: %d of %d event ids already exist: %w", found, total, domain.ErrConflict)
	}
	for _, st := range streams {
		cur := int64(len(s.streams[st.StreamID]))
		if st.Expected != domain.ExpectAny && int64(st.Expected) != cur {
			return domain.AppendResult{}, &domain.ConcurrencyError{StreamID: st.StreamID, Expected: st.Expected, Actual: cur}
		}
	}
	now := core.Now()
	prev := core.ZeroHash
	if n := len(s.events); n > 0 {
		prev = s.events[n-1].e.Hash
	}
	var res domain.AppendResult
	for _, st := range streams {
		for _, e := range st.Events {
			var data, meta bytes.Buffer
			_ = json.Compact(&data, e.Data)
			_ = json.Compact(&meta, e.Metadata)
			pos := int64(len(s.events)) + 1
			ver := int64(len(s.streams[st.StreamID])) + 1
			f := core.Fields{Position: pos, StreamID: st.StreamID, StreamVersion: ver, EventID: e.ID, Type: e.Type,
				SchemaVersion: e.SchemaVersion, Data: data.Bytes(), Metadata: meta.Bytes(), RecordedAt: now}
			h := s.hasher.Hash(prev, &f)
			rec := domain.RecordedEvent{Position: pos, StreamID: st.StreamID, StreamVersion: ver, EventID: e.ID.String(),
				Type: e.Type, SchemaVersion: e.SchemaVersion, Data: data.Bytes(), RecordedAt: now, TxID: uint64(pos), PrevHash: prev, Hash: h}
			if err := json.Unmarshal(meta.Bytes(), &rec.Metadata); err != nil {
				return domain.AppendResult{}, fmt.Errorf("memstore: metadata: %w", err)
			}
			s.events = append(s.events, stored{e: rec, meta: meta.Bytes(), id: e.ID})
			s.streams[st.StreamID] = append(s.streams[st.StreamID], pos)
			s.ids[e.ID] = pos
			res.Positions = append(res.Positions, pos)
			prev = h
		}
		res.Streams = append(res.Streams, domain.StreamVersion{StreamID: st.StreamID, Version: int64(len(s.streams[st.StreamID]))})
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return res, nil
}

// ReadStream implements domain.EventStore.
func (s *Store) ReadStream(_ context.Context, streamID string, fromVersion int64, limit int) ([]domain.RecordedEvent, error) {
	if err := core.ValidateStreamID(streamID); err != nil {
		return nil, domain.Invalid("stream_id", err.Error())
	}
	if limit < 0 {
		return nil, domain.Invalid("limit", "must not be negative")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []domain.RecordedEvent
	for _, pos := range s.streams[streamID] {
		e := s.events[pos-1].e
		if e.StreamVersion < fromVersion {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, e)
	}
	return out, nil
}

// ReadAll implements domain.EventStore.
func (s *Store) ReadAll(_ context.Context, q domain.ReadAllQuery) ([]domain.RecordedEvent, error) {
	if q.After < 0 {
		return nil, domain.Invalid("after", "must not be negative")
	}
	if q.Limit < 0 || q.Limit > 10000 {
		return nil, domain.Invalid("limit", "must be between 0 and 10000")
	}
	if q.Limit == 0 {
		q.Limit = 1000
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.read(q.After, int64(len(s.events)), q.Filter, q.Limit), nil
}

func (s *Store) read(after, until int64, f domain.Filter, limit int) []domain.RecordedEvent {
	var out []domain.RecordedEvent
	for p := after + 1; p <= until && p <= int64(len(s.events)); p++ {
		e := s.events[p-1].e
		if !matches(e, f) {
			continue
		}
		out = append(out, e)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}

func matches(e domain.RecordedEvent, f domain.Filter) bool {
	switch {
	case len(f.Streams) > 0 && !slices.Contains(f.Streams, e.StreamID),
		len(f.Categories) > 0 && !slices.Contains(f.Categories, e.Category()),
		len(f.Types) > 0 && !slices.Contains(f.Types, e.Type),
		!f.Since.IsZero() && e.RecordedAt.Before(f.Since),
		!f.Until.IsZero() && !e.RecordedAt.Before(f.Until):
		return false
	}
	return true
}

// Head implements domain.EventStore.
func (s *Store) Head(context.Context) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(len(s.events)), nil
}

// Subscribe implements domain.EventStore.
func (s *Store) Subscribe(ctx context.Context, after int64, f domain.Filter, fn func(context.Context, domain.RecordedEvent) error) error {
	if after < 0 {
		return domain.Invalid("after", "must not be negative")
	}
	last := after
	for {
		s.mu.RLock()
		head := int64(len(s.events))
		events := s.read(last, head, f, 1000)
		changed := s.changed
		s.mu.RUnlock()
		for _, e := range events {
			if err := fn(ctx, e); err != nil {
				return err
			}
			last = e.Position
		}
		if len(events) == 1000 {
			continue
		}
		last = max(last, head)
		s.mu.RLock()
		newer := int64(len(s.events)) > last
		s.mu.RUnlock()
		if newer {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Verify implements domain.EventStore.
func (s *Store) Verify(_ context.Context, from int64) (domain.VerifyResult, error) {
	if from < 0 {
		return domain.VerifyResult{}, domain.Invalid("from", "must not be negative")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if from > int64(len(s.events)) {
		return domain.VerifyResult{BrokenAt: from, BrokenCause: "the starting position is missing"}, nil
	}
	prev := core.ZeroHash
	if from > 0 {
		prev = s.events[from-1].e.Hash
	}
	res := domain.VerifyResult{Head: from, HeadHash: prev}
	h := core.NewHasher()
	for p := from + 1; p <= int64(len(s.events)); p++ {
		st := s.events[p-1]
		e := st.e
		if e.Position != p {
			return domain.VerifyResult{Verified: res.Verified, Head: res.Head, HeadHash: res.HeadHash, BrokenAt: p, BrokenCause: "position out of sequence"}, nil
		}
		if !bytes.Equal(e.PrevHash, prev) {
			res.BrokenAt, res.BrokenCause = p, "prev_hash does not match the hash of the previous position"
			return res, nil
		}
		f := core.Fields{Position: p, StreamID: e.StreamID, StreamVersion: e.StreamVersion, EventID: st.id, Type: e.Type,
			SchemaVersion: e.SchemaVersion, Data: e.Data, Metadata: st.meta, RecordedAt: e.RecordedAt}
		sum := h.Hash(prev, &f)
		if !bytes.Equal(sum, e.Hash) {
			res.BrokenAt, res.BrokenCause = p, "hash does not match the event's contents"
			return res, nil
		}
		prev = sum
		res.Verified++
		res.Head, res.HeadHash = p, sum
	}
	return res, nil
}

// LoadCheckpoint implements domain.CheckpointStore.
func (s *Store) LoadCheckpoint(_ context.Context, name string) (int64, error) {
	if err := core.ValidateStreamID(name); err != nil {
		return 0, domain.Invalid("checkpoint name", err.Error())
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkpoints[name], nil
}

// SaveCheckpoint implements domain.CheckpointStore.
func (s *Store) SaveCheckpoint(_ context.Context, name string, position int64) error {
	if err := core.ValidateStreamID(name); err != nil {
		return domain.Invalid("checkpoint name", err.Error())
	}
	if position < 0 {
		return domain.Invalid("checkpoint position", "must not be negative")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoints[name] = position
	return nil
}

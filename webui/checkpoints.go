package webui

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"berth/domain"
)

// Checkpoint is one signed checkpoint of the log, as the anchor directory
// holds it: berth signed (Position, Hash) with the Ed25519 key Key.
type Checkpoint struct {
	Position      int64     `json:"position"`
	Hash          string    `json:"hash"`
	Key           string    `json:"key"`
	Signature     string    `json:"signature"`
	SignedAt      time.Time `json:"signed_at"`
	EventPosition int64     `json:"event_position"`
}

// CheckpointsResponse is the body of GET /api/v1/audit/checkpoints.
type CheckpointsResponse struct {
	// Key is the public key this berth signs checkpoints with now.
	Key         string       `json:"key"`
	Checkpoints []Checkpoint `json:"checkpoints"`
	// NextAfter continues the listing (?after=); 0 when it is complete.
	NextAfter int64 `json:"next_after"`
}

// listCheckpoints pages the checkpoints on the log by the position of their
// events (after, limit).
func (s *Server) listCheckpoints(w http.ResponseWriter, r *http.Request) error {
	log, err := s.eventLog()
	if err != nil {
		return err
	}
	q := r.URL.Query()
	after, err := parseAfter(q.Get("after"))
	if err != nil {
		return err
	}
	limit := defaultEventsPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventsPage {
			return malformed("limit", "limit must be an integer from 1 to %d", maxEventsPage)
		}
		limit = n
	}
	evs, err := log.ReadAll(r.Context(), domain.ReadAllQuery{After: after, Limit: limit, Filter: domain.Filter{
		Streams: []string{domain.CheckpointStream}, Types: []string{domain.EventCheckpointSigned}}})
	if err != nil {
		return err
	}
	resp := CheckpointsResponse{Key: s.integrations().CheckpointKey, Checkpoints: make([]Checkpoint, 0, len(evs))}
	for _, e := range evs {
		var c domain.CheckpointSigned
		if err := json.Unmarshal(e.Data, &c); err != nil {
			return err
		}
		resp.Checkpoints = append(resp.Checkpoints, Checkpoint{Position: c.Position, Hash: c.Hash, Key: c.Key,
			Signature: c.Signature, SignedAt: c.SignedAt, EventPosition: e.Position})
	}
	if len(evs) == limit {
		resp.NextAfter = evs[len(evs)-1].Position
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

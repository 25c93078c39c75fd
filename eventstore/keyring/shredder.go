package keyring

import (
	"context"
	"fmt"
	"log/slog"

	"berth/domain"
)

// ShredderName is the Shredder's checkpoint name. Never rename it: a new
// name would replay every app.deleted event (harmless, Destroy is
// idempotent, but slow).
const ShredderName = "keyring-shredder"

// Shredder destroys the data key of every application the log says was
// deleted (the key of the deleted incarnation, domain.AppKeyOwner). It follows the log from its checkpoint, so a deletion recorded
// while berth was down is shredded at the next start.
type Shredder struct {
	Keyring     *Keyring
	Log         domain.EventStore
	Checkpoints domain.CheckpointStore
	Logger      *slog.Logger
}

// Run follows the log until ctx ends, returning ctx's error.
func (s *Shredder) Run(ctx context.Context) error {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	from, err := s.Checkpoints.LoadCheckpoint(ctx, ShredderName)
	if err != nil {
		return fmt.Errorf("shredder: %w", err)
	}
	return s.Log.Subscribe(ctx, from, domain.Filter{Types: []string{domain.EventAppDeleted}}, func(ctx context.Context, e domain.RecordedEvent) error {
		data, err := domain.DecodeEvent(e)
		if err != nil {
			return fmt.Errorf("shredder: %w", err)
		}
		d, ok := data.(domain.AppDeleted)
		if !ok {
			return nil
		}
		owner := domain.AppKeyOwner(d.App, d.Incarnation)
		if err := s.Keyring.Destroy(ctx, owner); err != nil {
			return fmt.Errorf("shredder at position %d: %w", e.Position, err)
		}
		log.InfoContext(ctx, "secrets shredded", slog.String("app", d.App), slog.String("key_owner", owner), slog.Int64("position", e.Position))
		return s.Checkpoints.SaveCheckpoint(ctx, ShredderName, e.Position)
	})
}

package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"berth/domain"
	"berth/eventstore/internal/core"
)

const sqlSaveCheckpoint = `INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`

func validateCheckpoint(name string, position int64) error {
	if err := core.ValidateStreamID(name); err != nil {
		return domain.Invalid("checkpoint name", err.Error())
	}
	if position < 0 {
		return domain.Invalid("checkpoint position", "must not be negative")
	}
	return nil
}

// LoadCheckpoint implements domain.CheckpointStore.
func (s *Postgres) LoadCheckpoint(ctx context.Context, name string) (int64, error) {
	if err := validateCheckpoint(name, 0); err != nil {
		return 0, err
	}
	var pos int64
	err := s.pool.QueryRow(ctx, `SELECT position FROM checkpoints WHERE name = $1`, name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: load checkpoint %q: %w", name, err)
	}
	return pos, nil
}

// SaveCheckpoint implements domain.CheckpointStore.
func (s *Postgres) SaveCheckpoint(ctx context.Context, name string, position int64) error {
	if err := validateCheckpoint(name, position); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, sqlSaveCheckpoint, name, position); err != nil {
		return fmt.Errorf("eventstore: save checkpoint %q: %w", name, err)
	}
	return nil
}

// SaveCheckpointTx saves a checkpoint inside tx, so a projection commits its
// read-model writes and its checkpoint together.
func (s *Postgres) SaveCheckpointTx(ctx context.Context, tx pgx.Tx, name string, position int64) error {
	if err := validateCheckpoint(name, position); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, sqlSaveCheckpoint, name, position); err != nil {
		return fmt.Errorf("eventstore: save checkpoint %q: %w", name, err)
	}
	return nil
}

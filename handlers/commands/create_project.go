package commands

import (
	"context"
	"errors"
	"fmt"

	"berth/domain"
)

// CreateProject creates a project.
type CreateProject struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// CreateProject creates a project; ErrProjectExists when the name is taken
// (by a project that is not deleted).
func (h *Handler) CreateProject(ctx context.Context, meta Meta, cmd CreateProject) (Result, error) {
	c, err := h.newCall("CreateProject", meta)
	if err != nil {
		return Result{}, err
	}
	events, err := domain.CreateProject(cmd.Name, cmd.Description)
	if err != nil {
		return Result{}, err
	}
	stream := domain.ProjectStream(cmd.Name)
	res, err := h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		old, err := domain.LoadProject(recs)
		if err != nil {
			return plan{}, err
		}
		expected := domain.ExpectNoStream
		if old != nil {
			if !old.Deleted() {
				return plan{}, fmt.Errorf("%s: %w", cmd.Name, domain.ErrProjectExists)
			}
			// The name of a deleted project is free again.
			expected = domain.ExpectVersion(old.Version())
		}
		return plan{primary: stream, events: events, expected: map[string]domain.ExpectedVersion{stream: expected}}, nil
	})
	if errors.Is(err, domain.ErrConcurrency) {
		return Result{}, fmt.Errorf("%s: %w (%w)", cmd.Name, domain.ErrProjectExists, err)
	}
	return res, err
}

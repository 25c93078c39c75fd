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

// CreateProject creates a project; ErrProjectExists when the name is taken.
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
		if len(recs) > 0 {
			return plan{}, fmt.Errorf("%s: %w", cmd.Name, domain.ErrProjectExists)
		}
		return plan{primary: stream, events: events, expected: map[string]domain.ExpectedVersion{stream: domain.ExpectNoStream}}, nil
	})
	if errors.Is(err, domain.ErrConcurrency) {
		return Result{}, fmt.Errorf("%s: %w (%w)", cmd.Name, domain.ErrProjectExists, err)
	}
	return res, err
}

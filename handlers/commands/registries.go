package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"berth/domain"
)

// AddRegistry gives berth an image registry to pull from and push to, with
// optional credentials. The password is sealed before it is recorded and
// never returned.
type AddRegistry struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// AddRegistry records registry.added. Errors: ErrInvalid naming the field,
// ErrConflict when a registry of that name exists.
func (h *Handler) AddRegistry(ctx context.Context, meta Meta, cmd AddRegistry) (Result, error) {
	c, err := h.newCall("AddRegistry", meta)
	if err != nil {
		return Result{}, err
	}
	spec := domain.RegistrySpec{Name: cmd.Name, Address: cmd.Address, Username: cmd.Username, Password: cmd.Password}
	if err := spec.Validate(); err != nil {
		return Result{}, err
	}
	if cmd.Password != "" && h.sealer == nil {
		return Result{}, errors.New("commands: AddRegistry with credentials needs a secret sealer")
	}
	stream := domain.RegistryStream(cmd.Name)
	return h.execute(ctx, c, false, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		r, err := domain.LoadRegistry(cmd.Name, recs)
		if err != nil {
			return plan{}, err
		}
		var sealed []byte
		if cmd.Password != "" {
			if sealed, err = h.sealer.Seal(ctx, domain.RegistryKeyOwner(cmd.Name), []byte(cmd.Password)); err != nil {
				return plan{}, fmt.Errorf("seal registry password: %w", err)
			}
		}
		events, err := domain.AddRegistry(r, spec, sealed)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: r.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(r.Version())}}, nil
	})
}

// ChangeRegistry changes a registry's address or credentials; nil fields
// stay. The new password is sealed before it is recorded and never
// returned.
type ChangeRegistry struct {
	Name  string `json:"-"`
	Patch domain.RegistryPatch
}

// ChangeRegistry records registry.changed (nothing when the patch changes
// nothing). Errors: ErrInvalid naming the field, ErrNotFound.
func (h *Handler) ChangeRegistry(ctx context.Context, meta Meta, cmd ChangeRegistry) (Result, error) {
	c, err := h.newCall("ChangeRegistry", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Name); err != nil {
		return Result{}, err
	}
	newPassword := cmd.Patch.Password != nil && *cmd.Patch.Password != ""
	if newPassword && h.sealer == nil {
		return Result{}, errors.New("commands: ChangeRegistry with a password needs a secret sealer")
	}
	stream := domain.RegistryStream(cmd.Name)
	return h.execute(ctx, c, false, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		r, err := domain.LoadRegistry(cmd.Name, recs)
		if err != nil {
			return plan{}, err
		}
		// Decide first without the ciphertext: nothing is sealed for a
		// patch the domain refuses.
		var sealed []byte
		if newPassword {
			if _, err := r.Change(cmd.Patch, []byte("unsealed")); err != nil {
				return plan{}, err
			}
			if sealed, err = h.sealer.Seal(ctx, domain.RegistryKeyOwner(cmd.Name), []byte(*cmd.Patch.Password)); err != nil {
				return plan{}, fmt.Errorf("seal registry password: %w", err)
			}
		}
		events, err := r.Change(cmd.Patch, sealed)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: r.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(r.Version())}}, nil
	})
}

// RemoveRegistry removes a registry.
type RemoveRegistry struct {
	Name string `json:"name"`
}

// RemoveRegistry records registry.removed. Errors: ErrInvalid, ErrNotFound.
func (h *Handler) RemoveRegistry(ctx context.Context, meta Meta, cmd RemoveRegistry) (Result, error) {
	c, err := h.newCall("RemoveRegistry", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Name); err != nil {
		return Result{}, err
	}
	stream := domain.RegistryStream(cmd.Name)
	return h.execute(ctx, c, false, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		r, err := domain.LoadRegistry(cmd.Name, recs)
		if err != nil {
			return plan{}, err
		}
		events, err := r.Remove()
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: r.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(r.Version())}}, nil
	})
}

// RegistryInfo is a registry as the API shows it: never its password.
type RegistryInfo struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	Username    string `json:"username,omitempty"`
	HasPassword bool   `json:"has_password"`
	Position    int64  `json:"position"`
}

// Registries returns the registries that exist, by name, folded from the
// log (there are few).
func (h *Handler) Registries(ctx context.Context) ([]RegistryInfo, error) {
	return ListRegistries(ctx, h.store)
}

// ListRegistries folds the registries of store's log.
func ListRegistries(ctx context.Context, store domain.EventStore) ([]RegistryInfo, error) {
	byName := map[string]RegistryInfo{}
	var after int64
	for {
		page, err := store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{Categories: []string{domain.CategoryRegistry}}})
		if err != nil {
			return nil, fmt.Errorf("read registries: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			switch e.Type {
			case domain.EventRegistryAdded:
				var a domain.RegistryAdded
				if json.Unmarshal(e.Data, &a) == nil {
					byName[a.Registry] = RegistryInfo{Name: a.Registry, Address: a.Address, Username: a.Username, HasPassword: len(a.SealedPassword) > 0, Position: e.Position}
				}
			case domain.EventRegistryChanged:
				var c domain.RegistryChanged
				if json.Unmarshal(e.Data, &c) == nil {
					byName[c.Registry] = RegistryInfo{Name: c.Registry, Address: c.Address, Username: c.Username, HasPassword: len(c.SealedPassword) > 0, Position: e.Position}
				}
			case domain.EventRegistryRemoved:
				var r domain.RegistryRemoved
				if json.Unmarshal(e.Data, &r) == nil {
					delete(byName, r.Registry)
				}
			}
		}
		after = page[len(page)-1].Position
	}
	out := make([]RegistryInfo, 0, len(byName))
	for _, r := range byName {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b RegistryInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

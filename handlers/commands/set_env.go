package commands

import (
	"context"
	"fmt"
	"strings"

	"berth/domain"
)

// EnvInput is one environment variable as a client submits it. A secret's
// Value is plain text here and is sealed before it reaches the domain.
type EnvInput struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Secret bool   `json:"secret"`
	// Keep, for a secret, keeps the currently sealed value of Key so clients
	// never need to see a secret to resubmit the set. Value must be empty.
	Keep bool `json:"keep,omitempty"`
	// From is a reference resolved at deploy time ("database:<name>": the
	// managed database's connection URL); Value must be empty.
	From string `json:"from,omitempty"`
}

// SetEnv replaces an application's whole environment.
type SetEnv struct {
	App string `json:"app"`
	// ExpectedVersion, when not 0, must be the application's current version
	// (an If-Match precondition).
	ExpectedVersion int64      `json:"expected_version,omitempty"`
	Env             []EnvInput `json:"env"`
}

// checkEnvInput validates client input before anything is sealed or read.
// It returns the set with secrets stood in by a placeholder ciphertext, for
// validation only. allowKeep says whether Keep is meaningful.
func checkEnvInput(env []EnvInput, allowKeep bool) ([]domain.EnvVar, error) {
	out := make([]domain.EnvVar, 0, len(env))
	for i, e := range env {
		f := fmt.Sprintf("env[%d]", i)
		if e.Keep && (!allowKeep || !e.Secret) {
			return nil, domain.Invalid(f+".keep", "applies only to a secret of an existing application")
		}
		if e.Keep && e.Value != "" {
			return nil, domain.Invalid(f+".value", "must be empty when keeping the current secret")
		}
		if err := domain.ValidateEnvValue(f+".value", e.Value); err != nil {
			return nil, err
		}
		v := domain.EnvVar{Key: e.Key, Value: e.Value, From: e.From}
		if e.Secret {
			v = domain.EnvVar{Key: e.Key, Secret: true, Sealed: []byte{0}}
		}
		out = append(out, v)
	}
	if err := domain.ValidateEnv("env", out); err != nil {
		return nil, err
	}
	return out, nil
}

// sealEnv turns client input into the domain's environment, sealing secrets
// for app. current is the application's present environment (for Keep).
func (h *Handler) sealEnv(ctx context.Context, owner string, env []EnvInput, current []domain.EnvVar) ([]domain.EnvVar, error) {
	out := make([]domain.EnvVar, 0, len(env))
	for i, e := range env {
		if !e.Secret {
			out = append(out, domain.EnvVar{Key: e.Key, Value: e.Value, From: e.From})
			continue
		}
		if e.Keep {
			found := false
			for _, cur := range current {
				if cur.Key == e.Key && cur.Secret {
					out = append(out, domain.EnvVar{Key: e.Key, Secret: true, Sealed: cur.Sealed})
					found = true
				}
			}
			if !found {
				return nil, domain.Invalid(fmt.Sprintf("env[%d].keep", i), "the application has no secret of that name to keep")
			}
			continue
		}
		if h.sealer == nil {
			return nil, domain.Invalid(fmt.Sprintf("env[%d].secret", i), "secrets are not available: no secret sealer is configured")
		}
		sealed, err := h.sealer.Seal(ctx, owner, []byte(e.Value))
		if err != nil {
			return nil, fmt.Errorf("seal env[%d]: %w", i, err)
		}
		out = append(out, domain.EnvVar{Key: e.Key, Secret: true, Sealed: sealed})
	}
	return out, nil
}

// SetEnv replaces an application's environment, sealing secret values. It is
// idempotent by nature and retried once on a concurrency conflict unless
// ExpectedVersion is set.
func (h *Handler) SetEnv(ctx context.Context, meta Meta, cmd SetEnv) (Result, error) {
	c, err := h.newCall("SetEnv", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	if _, err := checkEnvInput(cmd.Env, true); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, cmd.ExpectedVersion == 0, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.AppStream(cmd.App), ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		if err := checkExpected(domain.AppStream(cmd.App), cmd.ExpectedVersion, app.Version()); err != nil {
			return plan{}, err
		}
		if app.Status() == domain.AppStatusDeleted {
			_, err := app.SetEnv(nil)
			return plan{}, err
		}
		env, err := h.sealEnv(ctx, app.KeyOwner(), cmd.Env, app.Config().Env)
		if err != nil {
			return plan{}, err
		}
		if err := h.checkEnvRefs(ctx, env, app.Config().Runtime); err != nil {
			return plan{}, err
		}
		events, err := app.SetEnv(env)
		if err != nil {
			return plan{}, err
		}
		return appPlan(app, events), nil
	})
}

// appPlan is the plan of a command that appends to one application's stream
// only.
func appPlan(app *domain.Application, events []domain.Event) plan {
	s := domain.AppStream(app.Name())
	return plan{primary: s, version: app.Version(), events: events, expected: map[string]domain.ExpectedVersion{s: domain.ExpectVersion(app.Version())}}
}

// checkEnvRefs refuses, naming the variable, a reference to a managed
// database that an application running as rt cannot reach by its name: a
// database on another server (each server has its own network), or any
// database for a swarm service. A reference to a database that does not
// exist (yet) is resolved, or refused, when the application deploys.
func (h *Handler) checkEnvRefs(ctx context.Context, env []domain.EnvVar, rt domain.Runtime) error {
	for i, v := range env {
		name, ok := strings.CutPrefix(v.From, domain.EnvRefDatabase)
		if !ok || domain.ValidateName("from", name) != nil {
			continue
		}
		recs, err := h.read(ctx, domain.DatabaseStream(name), 1)
		if err != nil {
			return err
		}
		d, err := domain.LoadDatabase(name, recs)
		if err != nil {
			return err
		}
		if !d.Exists() || d.Created().ReachableFrom(rt) {
			continue
		}
		field := fmt.Sprintf("env[%d].from", i)
		if d.Created().OnSwarm() {
			return domain.Invalid(field, fmt.Sprintf("database %s runs on swarm %s: only that swarm's services reach it", name, d.Created().Swarm))
		}
		dbServer := h.serverNameOf(ctx, d.Created().ServerID())
		if rt.OnSwarm() {
			return domain.Invalid(field, fmt.Sprintf("database %s runs on server %s; a service of swarm %s does not reach it", name, dbServer, rt.Placement.Swarm))
		}
		return domain.Invalid(field, fmt.Sprintf("database %s runs on server %s and the application on server %s: only applications on server %s reach it "+
			"(place the application there, or publish the database's port and set its address as a plain value)",
			name, dbServer, h.serverNameOf(ctx, rt.ServerID()), dbServer))
	}
	return nil
}

// serverNameOf is the name of server id (its id when it cannot be read).
func (h *Handler) serverNameOf(ctx context.Context, id string) string {
	if id == domain.LocalServer {
		return id
	}
	if s, err := h.loadServer(ctx, id); err == nil && s.Name() != "" {
		return s.Name()
	}
	return id
}

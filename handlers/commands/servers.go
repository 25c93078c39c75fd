package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"berth/domain"
)

// AddServer gives berth a remote Docker Engine: over SSH
// ("ssh://user@host[:port]", Key the SSH private key, HostKey the pinned
// host key or empty to trust the first verification's) or TCP with TLS
// ("tcp://host:port", CAPEM, CertPEM and Key the client key). The key is
// sealed before it is recorded and never returned.
type AddServer struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	HostKey     string `json:"host_key,omitempty"`
	Key         string `json:"key"`
	CAPEM       string `json:"ca_pem,omitempty"`
	CertPEM     string `json:"cert_pem,omitempty"`
	Concurrency int    `json:"concurrency,omitempty"`
}

// validateServerSpec checks spec in the domain and, for SSH, that the
// private key parses.
func validateServerSpec(spec domain.ServerSpec) (domain.ServerSpec, error) {
	spec, err := spec.Validate()
	if err != nil {
		return spec, err
	}
	if strings.HasPrefix(spec.URL, "ssh://") {
		if _, err := ssh.ParsePrivateKey([]byte(spec.Key)); err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return spec, domain.Invalid("key", "must not be encrypted with a passphrase")
			}
			return spec, domain.Invalid("key", "must be an SSH private key in PEM (OPENSSH, RSA, EC or PKCS#8)")
		}
	}
	return spec, nil
}

// AddServer records server.added and the claim of its name; Result.ServerID
// names the new server. Errors: ErrInvalid naming the field, ErrConflict
// when the name is taken.
func (h *Handler) AddServer(ctx context.Context, meta Meta, cmd AddServer) (Result, error) {
	c, err := h.newCall("AddServer", meta)
	if err != nil {
		return Result{}, err
	}
	spec, err := validateServerSpec(domain.ServerSpec{Name: cmd.Name, URL: cmd.URL, HostKey: cmd.HostKey, Key: cmd.Key, CAPEM: cmd.CAPEM, CertPEM: cmd.CertPEM, Concurrency: cmd.Concurrency})
	if err != nil {
		return Result{}, err
	}
	if h.sealer == nil {
		return Result{}, errors.New("commands: AddServer needs a secret sealer")
	}
	id := c.newID("server")
	stream := domain.ServerStream(id)
	nameStream := domain.ServerNameStream(spec.Name)
	res, err := h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		name, err := h.loadServerName(ctx, spec.Name)
		if err != nil {
			return plan{}, err
		}
		sealed, err := h.sealer.Seal(ctx, domain.ServerKeyOwner(id), []byte(spec.Key))
		if err != nil {
			return plan{}, fmt.Errorf("seal server key: %w", err)
		}
		events, err := domain.AddServer(id, spec, sealed, name)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, events: events, expected: map[string]domain.ExpectedVersion{
			stream: domain.ExpectNoStream, nameStream: domain.ExpectVersion(name.Version()),
		}}, nil
	})
	if err == nil {
		res.ServerID = id
	}
	return res, err
}

// loadServerName rebuilds the claim of a server name.
func (h *Handler) loadServerName(ctx context.Context, name string) (*domain.ServerName, error) {
	recs, err := h.read(ctx, domain.ServerNameStream(name), 1)
	if err != nil {
		return nil, err
	}
	return domain.LoadServerName(name, recs)
}

// loadServer rebuilds the server of id.
func (h *Handler) loadServer(ctx context.Context, id string) (*domain.Server, error) {
	recs, err := h.read(ctx, domain.ServerStream(id), 1)
	if err != nil {
		return nil, err
	}
	return domain.LoadServer(id, recs)
}

// ResolveServer returns the id of the server called name ("local" or ""
// for the local server). Errors: ErrInvalid, ErrNotFound.
func (h *Handler) ResolveServer(ctx context.Context, field, name string) (string, error) {
	if name == "" || name == domain.LocalServer {
		return domain.LocalServer, nil
	}
	if err := domain.ValidateName(field, name); err != nil {
		return "", err
	}
	n, err := h.loadServerName(ctx, name)
	if err != nil {
		return "", err
	}
	if n.Owner() == "" {
		return "", fmt.Errorf("%s: %w", name, domain.ErrServerNotFound)
	}
	return n.Owner(), nil
}

// loadNamedServer resolves name and loads that server.
func (h *Handler) loadNamedServer(ctx context.Context, name string) (*domain.Server, error) {
	id, err := h.ResolveServer(ctx, "name", name)
	if err != nil {
		return nil, err
	}
	s, err := h.loadServer(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, fmt.Errorf("%s: %w", name, domain.ErrServerNotFound)
	}
	return s, nil
}

// RenameServer renames a server; its id, and so its queue and its
// applications' placement, stay.
type RenameServer struct {
	Name    string `json:"name"`
	NewName string `json:"new_name"`
}

// RenameServer records server.renamed with the release of the old name and
// the claim of the new one. Errors: ErrInvalid, ErrNotFound, ErrConflict.
func (h *Handler) RenameServer(ctx context.Context, meta Meta, cmd RenameServer) (Result, error) {
	c, err := h.newCall("RenameServer", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Name); err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("new_name", cmd.NewName); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		s, err := h.loadNamedServer(ctx, cmd.Name)
		if err != nil {
			return plan{}, err
		}
		stream := domain.ServerStream(s.ID())
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		to, err := h.loadServerName(ctx, cmd.NewName)
		if err != nil {
			return plan{}, err
		}
		from, err := h.loadServerName(ctx, s.Name())
		if err != nil {
			return plan{}, err
		}
		events, err := s.Rename(cmd.NewName, to)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: events, expected: map[string]domain.ExpectedVersion{
			stream:                               domain.ExpectVersion(s.Version()),
			domain.ServerNameStream(s.Name()):    domain.ExpectVersion(from.Version()),
			domain.ServerNameStream(cmd.NewName): domain.ExpectVersion(to.Version()),
		}}, nil
	})
}

// SetServerConcurrency sets how many deployments run at once on a server.
type SetServerConcurrency struct {
	Name        string `json:"name"`
	Concurrency int    `json:"concurrency"`
}

// SetServerConcurrency records server.concurrency_set (nothing when
// unchanged). Errors: ErrInvalid, ErrNotFound.
func (h *Handler) SetServerConcurrency(ctx context.Context, meta Meta, cmd SetServerConcurrency) (Result, error) {
	c, err := h.newCall("SetServerConcurrency", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateServerConcurrency("concurrency", cmd.Concurrency); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		s, err := h.loadNamedServer(ctx, cmd.Name)
		if err != nil {
			return plan{}, err
		}
		stream := domain.ServerStream(s.ID())
		events, err := s.SetConcurrency(cmd.Concurrency)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: events, expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version())}}, nil
	})
}

// RemoveServer removes a server that no application is placed on.
type RemoveServer struct {
	Name string `json:"name"`
}

// RemoveServer records server.removed and the release of its name. Errors:
// ErrInvalid, ErrNotFound, ErrConflict (ErrServerInUse, ErrLocalServer).
func (h *Handler) RemoveServer(ctx context.Context, meta Meta, cmd RemoveServer) (Result, error) {
	c, err := h.newCall("RemoveServer", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Name); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		s, err := h.loadNamedServer(ctx, cmd.Name)
		if err != nil {
			return plan{}, err
		}
		stream := domain.ServerStream(s.ID())
		name, err := h.loadServerName(ctx, s.Name())
		if err != nil {
			return plan{}, err
		}
		events, err := s.Remove()
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: events, expected: map[string]domain.ExpectedVersion{
			stream: domain.ExpectVersion(s.Version()), domain.ServerNameStream(s.Name()): domain.ExpectVersion(name.Version()),
		}}, nil
	})
}

// RecordServerCheck records the outcome of reaching a server: Err empty
// means it answered with Facts (and, over SSH, presented HostKey). Force
// records it even when the reachability did not change (an explicit
// verification).
type RecordServerCheck struct {
	ServerID string             `json:"server_id"`
	Facts    domain.ServerFacts `json:"facts"`
	HostKey  string             `json:"host_key,omitempty"`
	Err      string             `json:"err,omitempty"`
	Force    bool               `json:"force,omitempty"`
}

// RecordServerCheck records server.verified (with the host key pinned on
// the first verification of an SSH server without one) or
// server.unreachable, only on a change unless forced.
func (h *Handler) RecordServerCheck(ctx context.Context, meta Meta, cmd RecordServerCheck) (Result, error) {
	c, err := h.newCall("RecordServerCheck", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("server_id", cmd.ServerID); err != nil {
		return Result{}, err
	}
	stream := domain.ServerStream(cmd.ServerID)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		s, err := h.loadServer(ctx, cmd.ServerID)
		if err != nil {
			return plan{}, err
		}
		var events []domain.Event
		if cmd.Err != "" {
			events, err = s.RecordUnreachable(cmd.Err, cmd.Force)
		} else {
			events, err = s.RecordVerified(cmd.Facts, cmd.HostKey, cmd.Force)
		}
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: events, expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version())}}, nil
	})
}

// placeApp resolves the server named in patch (a name, turned into its
// id) and returns the events placing app there and releasing it from its
// previous server, with their expected versions added to expected.
func (h *Handler) placeApp(ctx context.Context, app *domain.Application, patch *domain.AppPatch) ([]domain.Event, map[string]domain.ExpectedVersion, error) {
	if patch.Server == nil {
		return nil, nil, nil
	}
	id, err := h.ResolveServer(ctx, "server", *patch.Server)
	if err != nil {
		return nil, nil, err
	}
	target := id
	patch.Server = &target
	old := app.Config().Runtime.ServerID()
	if old == id {
		return nil, nil, nil
	}
	expected := map[string]domain.ExpectedVersion{}
	var events []domain.Event
	to, err := h.loadServer(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if !to.Exists() {
		return nil, nil, domain.Invalid("server", "names no server")
	}
	if id != domain.LocalServer {
		placed, err := to.Place(app.Name())
		if err != nil {
			return nil, nil, err
		}
		events = append(events, placed...)
	}
	expected[domain.ServerStream(id)] = domain.ExpectVersion(to.Version())
	if old != domain.LocalServer {
		from, err := h.loadServer(ctx, old)
		if err != nil {
			return nil, nil, err
		}
		events = append(events, from.Release(app.Name())...)
		expected[domain.ServerStream(old)] = domain.ExpectVersion(from.Version())
	}
	return events, expected, nil
}

// releaseServer returns the event releasing a deleted app from its server.
func (h *Handler) releaseServer(ctx context.Context, app *domain.Application) ([]domain.Event, string, int64, error) {
	id := app.Config().Runtime.ServerID()
	if id == domain.LocalServer {
		return nil, "", 0, nil
	}
	s, err := h.loadServer(ctx, id)
	if err != nil {
		return nil, "", 0, err
	}
	return s.Release(app.Name()), domain.ServerStream(id), s.Version(), nil
}

// ServerInfo is a server as the API shows it: never its key.
type ServerInfo struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	Kind        string             `json:"kind"`
	URL         string             `json:"url,omitempty"`
	HostKey     string             `json:"host_key,omitempty"`
	Concurrency int                `json:"concurrency"`
	State       string             `json:"state"`
	Reason      string             `json:"reason,omitempty"`
	Facts       domain.ServerFacts `json:"facts"`
	VerifiedAt  *time.Time         `json:"verified_at,omitempty"`
	Apps        []string           `json:"apps"`
	// Databases are the managed databases on the server.
	Databases []string `json:"databases,omitempty"`
	Position  int64    `json:"position"`
}

// Servers returns every server (the local one first, then by name), folded
// from the log.
func (h *Handler) Servers(ctx context.Context) ([]ServerInfo, error) {
	return ListServers(ctx, h.store)
}

// ListServers folds the servers of store's log.
func ListServers(ctx context.Context, store domain.EventStore) ([]ServerInfo, error) {
	byID := map[string][]domain.RecordedEvent{domain.LocalServer: nil}
	var after int64
	for {
		page, err := store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{Categories: []string{domain.CategoryServer}}})
		if err != nil {
			return nil, fmt.Errorf("read servers: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			var v struct {
				ServerID string `json:"server_id"`
			}
			if json.Unmarshal(e.Data, &v) == nil && v.ServerID != "" {
				byID[v.ServerID] = append(byID[v.ServerID], e)
			}
		}
		after = page[len(page)-1].Position
	}
	out := make([]ServerInfo, 0, len(byID))
	for id, recs := range byID {
		s, err := domain.LoadServer(id, recs)
		if err != nil {
			return nil, err
		}
		if !s.Exists() {
			continue
		}
		out = append(out, ServerOf(s, recs))
	}
	slices.SortFunc(out, func(a, b ServerInfo) int {
		switch {
		case a.ID == domain.LocalServer:
			return -1
		case b.ID == domain.LocalServer:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// ServerOf describes s, rebuilt from recs.
func ServerOf(s *domain.Server, recs []domain.RecordedEvent) ServerInfo {
	info := ServerInfo{
		ID: s.ID(), Name: s.Name(), Kind: s.Kind(), URL: s.URL(), HostKey: s.HostKey(), Concurrency: s.Concurrency(),
		State: s.State(), Reason: s.Reason(), Facts: s.Facts(), Apps: s.Apps(), Databases: s.Databases(),
	}
	if info.Apps == nil {
		info.Apps = []string{}
	}
	if t := s.VerifiedAt(); !t.IsZero() {
		info.VerifiedAt = &t
	}
	if len(recs) > 0 {
		info.Position = recs[len(recs)-1].Position
	}
	return info
}

// Server returns the server called name. Errors: ErrInvalid, ErrNotFound.
func (h *Handler) Server(ctx context.Context, name string) (ServerInfo, error) {
	id, err := h.ResolveServer(ctx, "name", name)
	if err != nil {
		return ServerInfo{}, err
	}
	recs, err := h.read(ctx, domain.ServerStream(id), 1)
	if err != nil {
		return ServerInfo{}, err
	}
	s, err := domain.LoadServer(id, recs)
	if err != nil {
		return ServerInfo{}, err
	}
	if !s.Exists() {
		return ServerInfo{}, fmt.Errorf("%s: %w", name, domain.ErrServerNotFound)
	}
	return ServerOf(s, recs), nil
}

// resolveBuildServer returns the id of the build server called name, for
// an application with source src: it must exist, and only a git source
// (an application's, or a compose stack's build sections) is built. Errors: ErrInvalid naming build.server.
func (h *Handler) resolveBuildServer(ctx context.Context, src domain.Source, name string) (string, error) {
	if !src.IsGit() {
		return "", domain.Invalid("build.server", "applies to a git source only (an image or a pasted compose file is not built by berth)")
	}
	id, err := h.ResolveServer(ctx, "build.server", name)
	if errors.Is(err, domain.ErrServerNotFound) {
		return "", domain.Invalid("build.server", "names no server")
	}
	if err != nil {
		return "", err
	}
	if id == domain.LocalServer {
		return id, nil
	}
	s, err := h.loadServer(ctx, id)
	if err != nil {
		return "", err
	}
	if !s.Exists() {
		return "", domain.Invalid("build.server", "names no server")
	}
	return id, nil
}

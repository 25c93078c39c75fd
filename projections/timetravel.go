package projections

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/projections/traefik"
)

// Point is a moment of the log: a position, or a time (the last position
// recorded at or before it). Exactly one is set.
type Point struct {
	Position int64
	Time     time.Time
}

// ParsePoint parses "<position>" (a non-negative integer) or an RFC 3339
// time. Anything else is an error wrapping domain.ErrInvalid.
func ParsePoint(s string) (Point, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return Point{}, domain.Invalid("at", "position must not be negative")
		}
		return Point{Position: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Point{}, domain.Invalid("at", "must be a log position or an RFC 3339 time")
	}
	return Point{Time: t}, nil
}

// State is the routing-relevant state of berth as of one point of the log.
type State struct {
	// Position is the last event folded (0: none); At its recorded time.
	Position int64     `json:"position"`
	At       time.Time `json:"at"`
	Projects []Project `json:"projects"`
	Apps     []App     `json:"apps"`
	Routes   []Route   `json:"routes"`
	// Files maps Traefik file names ("berth-<app>.yml") to their contents
	// as the routing projection would have written them.
	Files map[string]string `json:"files"`
	// Errors lists applications whose routes the Traefik builder rejects.
	Errors []string `json:"errors,omitempty"`
}

// App returns the application called name as of the state's point.
func (s State) App(name string) (App, bool) {
	i := slices.IndexFunc(s.Apps, func(a App) bool { return a.Name == name })
	if i < 0 {
		return App{}, false
	}
	return s.Apps[i], true
}

// AsOf folds the log up to at, in memory, from position 0, with the same
// fold as the live read models, and renders each application's Traefik
// file with cfg's names (zero: traefik.DefaultConfig). store is any
// domain.EventStore. Replay.AsOf gives the same state from snapshots.
func AsOf(ctx context.Context, store LogReader, at Point, cfg traefik.Config) (State, error) {
	m := NewModel()
	var after int64
	limit := at.Position
	byTime := limit == 0 && !at.Time.IsZero()
	if limit == 0 && !byTime {
		return stateOf(m, cfg), nil
	}
	for {
		page, err := store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000})
		if err != nil {
			return State{}, fmt.Errorf("as of: read log: %w", err)
		}
		for _, e := range page {
			if (!byTime && e.Position > limit) || (byTime && e.RecordedAt.After(at.Time)) {
				return stateOf(m, cfg), nil
			}
			m.Apply(e)
		}
		if len(page) == 0 {
			return stateOf(m, cfg), nil
		}
		after = page[len(page)-1].Position
	}
}

func stateOf(m *Model, cfg traefik.Config) State {
	s := State{Position: m.Position, At: m.At, Files: map[string]string{}, Routes: m.Routes()}
	for _, p := range m.Projects {
		s.Projects = append(s.Projects, *p)
	}
	slices.SortFunc(s.Projects, func(a, b Project) int { return compareStrings(a.Name, b.Name) })
	for _, a := range m.Apps {
		s.Apps = append(s.Apps, *a)
	}
	slices.SortFunc(s.Apps, func(a, b App) int { return compareStrings(a.Name, b.Name) })
	for _, name := range slices.Sorted(maps.Keys(m.Apps)) {
		a := m.Apps[name]
		if a.Status == AppDeleted {
			continue
		}
		t, errs := routable(a)
		for _, err := range errs {
			s.Errors = append(s.Errors, err.Error())
		}
		data, err := traefik.Render(cfg, t)
		if err != nil {
			s.Errors = append(s.Errors, err.Error())
			continue
		}
		if data != nil {
			s.Files[traefik.FileName(t.Name)] = string(data)
		}
	}
	return s
}

// WriteReplay prints s for humans: the point, every application with its
// status, upstream and configuration, and the Traefik files. app, when not
// empty, limits the output to that application.
func WriteReplay(w io.Writer, s State, app string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# berth state as of position %d", s.Position)
	if !s.At.IsZero() {
		fmt.Fprintf(&b, " (%s)", s.At.UTC().Format(time.RFC3339Nano))
	}
	b.WriteString("\n")
	if app == "" {
		fmt.Fprintf(&b, "\nprojects: %d, applications: %d, routes: %d\n", len(s.Projects), len(s.Apps), len(s.Routes))
	}
	found := false
	for _, a := range s.Apps {
		if app != "" && a.Name != app {
			continue
		}
		found = true
		fmt.Fprintf(&b, "\n## application %s (project %s)\n", strconv.Quote(a.Name), strconv.Quote(a.Project))
		fmt.Fprintf(&b, "status:      %s (desired %s)\n", a.Status, a.DesiredStatus)
		fmt.Fprintf(&b, "version:     %d (position %d)\n", a.StreamVersion, a.Position)
		if a.ServingDeploymentID != "" {
			fmt.Fprintf(&b, "serving:     deployment %s, image %s\n", strconv.Quote(a.ServingDeploymentID), strconv.Quote(a.ServingImage))
		}
		if a.UpstreamHost != "" {
			fmt.Fprintf(&b, "upstream:    %s:%d\n", strconv.Quote(a.UpstreamHost), a.UpstreamPort)
		}
		src := a.Config.Source
		if src.Image != "" {
			fmt.Fprintf(&b, "source:      image %s\n", strconv.Quote(src.Image))
		} else {
			fmt.Fprintf(&b, "source:      git %s ref %s\n", strconv.Quote(src.GitURL), strconv.Quote(src.GitRef))
		}
		fmt.Fprintf(&b, "runtime:     port %d, replicas %d, restart %s\n", a.Config.Runtime.Port, a.Config.Runtime.Replicas, strconv.Quote(a.Config.Runtime.RestartPolicy))
		for _, e := range a.Config.Env {
			if e.Secret {
				fmt.Fprintf(&b, "env:         %s (secret)\n", strconv.Quote(e.Key))
			} else {
				fmt.Fprintf(&b, "env:         %s=%s\n", strconv.Quote(e.Key), strconv.Quote(e.Value))
			}
		}
		for _, r := range a.Config.Domains {
			scheme := "http"
			if r.HTTPS {
				scheme = "https"
			}
			fmt.Fprintf(&b, "domain:      %s\n", strconv.Quote(scheme+"://"+r.Host+r.PathPrefix))
		}
		if f, ok := s.Files[traefik.FileName(a.Name)]; ok {
			fmt.Fprintf(&b, "--- %s\n%s", traefik.FileName(a.Name), f)
		}
	}
	if app != "" && !found {
		fmt.Fprintf(&b, "\napplication %s did not exist at that point\n", strconv.Quote(app))
	}
	for _, e := range s.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Package historytest generates long, plausible, deterministic histories of
// berth events (projects, applications with domains, environments and
// secrets, deployments that succeed, fail or are cancelled, stops, starts
// and deletions) for the projections' tests and benchmarks. Payloads are the
// domain's own event structs.
package historytest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"berth/domain"
)

// Config shapes a history.
type Config struct {
	Seed     uint64
	Projects int // 3 by default
	Apps     int // applications created over time, 20 by default
	// HostileHosts adds domains whose host would break a Traefik rule
	// (bypassing the domain's validation), which projections must reject.
	HostileHosts bool
	// MaxInFlight bounds the deployments requested and not yet finished,
	// as deployers working through their queues do (16 by default).
	MaxInFlight int
}

type app struct {
	name, project string
	hosts         []string
	port          int
	deleted       bool
	stopped       bool
	// incarnation counts the applications that had the name: a deleted
	// name is sometimes created again.
	incarnation int
}

type deployment struct {
	id, app string
	step    int
	fail    int // step index at which it fails, -1 never
	cancel  bool
}

// Generator produces appends one after another. Not safe for concurrent
// use.
type Generator struct {
	cfg      Config
	rng      *rand.Rand
	apps     []*app
	inflight []*deployment
	n        int
	projects int
}

// New returns a Generator for cfg.
func New(cfg Config) *Generator {
	if cfg.Projects <= 0 {
		cfg.Projects = 3
	}
	if cfg.Apps <= 0 {
		cfg.Apps = 20
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	return &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// Event is one generated event with its stream.
type Event struct {
	StreamID string
	Data     domain.EventData
}

func (g *Generator) id() string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(g.rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (g *Generator) event(stream, typ string, data any, md domain.Metadata) Event {
	raw, err := json.Marshal(data)
	if err != nil {
		panic(err) // the payloads are plain structs
	}
	return Event{StreamID: stream, Data: domain.EventData{ID: g.id(), Type: typ, SchemaVersion: 1, Data: raw, Metadata: md}}
}

func (g *Generator) meta() domain.Metadata {
	actors := []domain.Actor{
		{Kind: domain.ActorUser, ID: "u1", Name: "alice"},
		{Kind: domain.ActorToken, ID: "t7", Name: "ci"},
		{Kind: domain.ActorWebhook, ID: "w3", Name: "github"},
	}
	return domain.Metadata{Actor: actors[g.rng.IntN(len(actors))], CorrelationID: g.id(), CommandID: g.id(), Origin: "10.0.0.9"}
}

func system(corr string) domain.Metadata {
	return domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "deployer"}, CorrelationID: corr}
}

// Next returns the events of one command or deployer step, to append
// atomically.
func (g *Generator) Next() []Event {
	g.n++
	if g.projects < g.cfg.Projects {
		g.projects++
		name := fmt.Sprintf("proj%d", g.projects)
		return []Event{g.event(domain.ProjectStream(name), domain.EventProjectCreated, domain.ProjectCreated{Project: name, Description: "project " + name}, g.meta())}
	}
	live := g.live()
	if len(g.apps) < g.cfg.Apps && (len(live) < 3 || g.rng.IntN(10) == 0) {
		return g.createApp()
	}
	if len(live) < len(g.apps) && g.rng.IntN(40) == 0 {
		for _, a := range g.apps {
			if a.deleted {
				return g.recreate(a)
			}
		}
	}
	if len(g.inflight) >= g.cfg.MaxInFlight || len(g.inflight) > 0 && g.rng.IntN(2) == 0 {
		return g.advance()
	}
	a := live[g.rng.IntN(len(live))]
	switch r := g.rng.IntN(100); {
	case r < 45:
		return g.deploy(a)
	case r < 55:
		return g.update(a)
	case r < 65:
		return g.setEnv(a)
	case r < 75:
		return g.addDomain(a)
	case r < 82:
		return g.removeDomain(a)
	case r < 90:
		return g.stopStart(a)
	case r < 92 && len(live) > 3:
		return g.delete(a)
	default:
		return g.deploy(a)
	}
}

func (g *Generator) live() []*app {
	var out []*app
	for _, a := range g.apps {
		if !a.deleted {
			out = append(out, a)
		}
	}
	return out
}

func (g *Generator) createApp() []Event {
	a := &app{name: fmt.Sprintf("app-%d", len(g.apps)+1)}
	g.apps = append(g.apps, a)
	return g.recreate(a)
}

// recreate creates a's next incarnation (its first when new).
func (g *Generator) recreate(a *app) []Event {
	a.project, a.port = fmt.Sprintf("proj%d", 1+g.rng.IntN(g.cfg.Projects)), 8080
	a.deleted, a.stopped = false, false
	a.incarnation++
	md := g.meta()
	s := domain.AppStream(a.name)
	src := domain.Source{GitURL: "https://git.example.com/" + a.name + ".git", GitRef: "main"}
	if g.rng.IntN(3) == 0 {
		src = domain.Source{Image: "registry.example.com/" + a.name + ":1"}
	}
	out := []Event{
		g.event(s, domain.EventAppCreated, domain.AppCreated{App: a.name, Project: a.project, Incarnation: a.incarnation, Source: src,
			Build: domain.Build{}.WithDefaults(), Runtime: domain.Runtime{}.WithDefaults()}, md),
		g.event(s, domain.EventAppEnvSet, domain.AppEnvSet{App: a.name, Env: []domain.EnvVar{
			{Key: "MODE", Value: "production"}, {Key: "TOKEN", Secret: true, Sealed: []byte("ciphertext-" + a.name)}}}, md),
	}
	return append(out, g.domainEvents(a, md)...)
}

func (g *Generator) domainEvents(a *app, md domain.Metadata) []Event {
	host := fmt.Sprintf("%s-%d.example.com", a.name, g.n)
	if g.cfg.HostileHosts && g.rng.IntN(8) == 0 {
		host = "evil.example.com`) || Host(`" + a.name + ".victim.example.com"
	}
	a.hosts = append(a.hosts, host)
	r := domain.Route{Host: host, HTTPS: g.rng.IntN(2) == 0}
	if g.rng.IntN(4) == 0 {
		r.PathPrefix = "/api"
	}
	return []Event{
		g.event(domain.AppStream(a.name), domain.EventAppDomainAdded, domain.AppDomainAdded{App: a.name, Route: r}, md),
		g.event(domain.HostStream(host), domain.EventHostClaimed, domain.HostClaimed{Host: host, App: a.name}, md),
	}
}

func (g *Generator) addDomain(a *app) []Event { return g.domainEvents(a, g.meta()) }

func (g *Generator) removeDomain(a *app) []Event {
	if len(a.hosts) == 0 {
		return g.addDomain(a)
	}
	i := g.rng.IntN(len(a.hosts))
	host := a.hosts[i]
	a.hosts = append(a.hosts[:i:i], a.hosts[i+1:]...)
	md := g.meta()
	return []Event{
		g.event(domain.AppStream(a.name), domain.EventAppDomainRemoved, domain.AppDomainRemoved{App: a.name, Host: host}, md),
		g.event(domain.HostStream(host), domain.EventHostReleased, domain.HostReleased{Host: host, App: a.name}, md),
	}
}

func (g *Generator) update(a *app) []Event {
	a.port = 3000 + g.rng.IntN(6000)
	rt := domain.Runtime{Port: a.port}.WithDefaults()
	return []Event{g.event(domain.AppStream(a.name), domain.EventAppUpdated, domain.AppUpdated{App: a.name,
		Source: domain.Source{GitURL: "https://git.example.com/" + a.name + ".git", GitRef: fmt.Sprintf("release-%d", g.n)},
		Build:  domain.Build{}.WithDefaults(), Runtime: rt, Changed: []string{"source.git_ref", "runtime.port"}}, g.meta())}
}

func (g *Generator) setEnv(a *app) []Event {
	return []Event{g.event(domain.AppStream(a.name), domain.EventAppEnvSet, domain.AppEnvSet{App: a.name, Env: []domain.EnvVar{
		{Key: "MODE", Value: fmt.Sprintf("v%d", g.n)},
		{Key: "DB_PASSWORD", Secret: true, Sealed: []byte(fmt.Sprintf("sealed-%d", g.n))}}}, g.meta())}
}

func (g *Generator) stopStart(a *app) []Event {
	s := domain.AppStream(a.name)
	md := g.meta()
	if a.stopped {
		a.stopped = false
		return []Event{g.event(s, domain.EventAppStartRequested, domain.AppStartRequested{App: a.name}, md),
			g.event(s, domain.EventAppStarted, domain.AppStarted{App: a.name, ContainerID: "c-" + a.name}, system(md.CorrelationID))}
	}
	a.stopped = true
	return []Event{g.event(s, domain.EventAppStopRequested, domain.AppStopRequested{App: a.name}, md),
		g.event(s, domain.EventAppStopped, domain.AppStopped{App: a.name, ContainerID: "c-" + a.name}, system(md.CorrelationID))}
}

func (g *Generator) delete(a *app) []Event {
	a.deleted = true
	md := g.meta()
	out := []Event{g.event(domain.AppStream(a.name), domain.EventAppDeleted, domain.AppDeleted{App: a.name, Incarnation: a.incarnation, ReleasedHosts: a.hosts}, md)}
	for _, h := range a.hosts {
		out = append(out, g.event(domain.HostStream(h), domain.EventHostReleased, domain.HostReleased{Host: h, App: a.name}, md))
	}
	a.hosts = nil
	return out
}

func (g *Generator) deploy(a *app) []Event {
	d := &deployment{id: fmt.Sprintf("dep%07d", g.n), app: a.name, fail: -1}
	switch r := g.rng.IntN(10); {
	case r < 2:
		d.fail = 2 + g.rng.IntN(6)
	case r == 2:
		d.cancel = true
	}
	g.inflight = append(g.inflight, d)
	md := g.meta()
	return []Event{g.event(domain.DeploymentStream(d.id), domain.EventDeploymentRequested, domain.DeploymentRequested{
		DeploymentID: d.id, App: a.name, AppVersion: int64(g.n), Incarnation: a.incarnation, Trigger: domain.Trigger{Kind: domain.TriggerManual, Detail: "push"}}, md)}
}

var steps = []string{domain.StepQueue, domain.StepStart, domain.StepFetchSource, domain.StepBuildImage,
	domain.StepStartContainer, domain.StepHealthCheck, domain.StepSwitchTraffic, domain.StepStopPrevious}

func (g *Generator) advance() []Event {
	i := g.rng.IntN(len(g.inflight))
	d := g.inflight[i]
	s := domain.DeploymentStream(d.id)
	md := system("corr-" + d.id)
	ms := int64(g.rng.IntN(5000))
	done := func(e Event) []Event {
		g.inflight = append(g.inflight[:i:i], g.inflight[i+1:]...)
		return []Event{e}
	}
	if d.cancel && d.step == 1 {
		return done(g.event(s, domain.EventDeploymentCancelled, domain.DeploymentCancelled{DeploymentID: d.id, App: d.app, Step: domain.StepQueue}, md))
	}
	if d.fail == d.step {
		return done(g.event(s, domain.EventDeploymentFailed, domain.DeploymentFailed{DeploymentID: d.id, App: d.app,
			Step: steps[min(d.step, len(steps)-1)], Reason: "exit status 1", DurationMS: ms}, md))
	}
	d.step++
	var typ string
	var data any
	switch d.step {
	case 1:
		typ, data = domain.EventDeploymentQueued, domain.DeploymentQueued{DeploymentID: d.id, App: d.app}
	case 2:
		typ, data = domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: d.id, App: d.app, Worker: "deployer-1"}
	case 3:
		typ, data = domain.EventDeploymentSourceFetched, domain.DeploymentSourceFetched{DeploymentID: d.id, App: d.app, CommitSHA: fmt.Sprintf("%040x", g.rng.Uint64()), DurationMS: ms}
	case 4:
		typ, data = domain.EventDeploymentImageBuilt, domain.DeploymentImageBuilt{DeploymentID: d.id, App: d.app, ImageID: "sha256:" + d.id, DurationMS: ms}
	case 5:
		typ, data = domain.EventDeploymentContainerStarted, domain.DeploymentContainerStarted{DeploymentID: d.id, App: d.app, ContainerID: "cid" + d.id, ContainerName: "berth-" + d.app + "-" + d.id, DurationMS: ms}
	case 6:
		typ, data = domain.EventDeploymentHealthPassed, domain.DeploymentHealthPassed{DeploymentID: d.id, App: d.app, DurationMS: ms}
	case 7:
		typ, data = domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: d.id, App: d.app, ContainerID: "cid" + d.id, DurationMS: ms}
	case 8:
		typ, data = domain.EventDeploymentPreviousStopped, domain.DeploymentPreviousStopped{DeploymentID: d.id, App: d.app, DurationMS: ms}
	default:
		return done(g.event(s, domain.EventDeploymentSucceeded, domain.DeploymentSucceeded{DeploymentID: d.id, App: d.app, ImageID: "sha256:" + d.id, DurationMS: ms}, md))
	}
	return []Event{g.event(s, typ, data, md)}
}

// Appends groups events by stream, in order, as one atomic append with
// no version check.
func Appends(events []Event) []domain.StreamAppend {
	var out []domain.StreamAppend
	for _, e := range events {
		if n := len(out); n > 0 && out[n-1].StreamID == e.StreamID {
			out[n-1].Events = append(out[n-1].Events, e.Data)
			continue
		}
		out = append(out, domain.StreamAppend{StreamID: e.StreamID, Expected: domain.ExpectAny, Events: []domain.EventData{e.Data}})
	}
	return out
}

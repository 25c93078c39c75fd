package projections_test

import (
	"encoding/json"
	"testing"
	"time"

	"berth/domain"
	"berth/projections"
)

// TestModelKeepsIncarnationsApart folds a name deleted and created again
// while a deployment of the deleted application still finishes: the new
// application's row never takes the old deployment's container.
func TestModelKeepsIncarnationsApart(t *testing.T) {
	m := projections.NewModel()
	pos := int64(0)
	apply := func(stream, typ string, data any) {
		t.Helper()
		b, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		pos++
		m.Apply(domain.RecordedEvent{Position: pos, StreamID: stream, StreamVersion: pos, Type: typ, Data: b, RecordedAt: time.Unix(pos, 0)})
	}
	app, old, cur := domain.AppStream("web"), domain.DeploymentStream("d1"), domain.DeploymentStream("d2")
	apply(app, domain.EventAppCreated, domain.AppCreated{App: "web", Project: "p", Source: domain.Source{Image: "nginx:1"}})
	apply(old, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: "d1", App: "web", AppVersion: 1})
	apply(old, domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: "d1", App: "web"})
	apply(app, domain.EventAppDeleted, domain.AppDeleted{App: "web", Incarnation: 1})
	apply(app, domain.EventAppCreated, domain.AppCreated{App: "web", Project: "q", Incarnation: 2, Source: domain.Source{Image: "nginx:2"}})
	if a := m.Apps["web"]; a.Incarnation != 2 || a.Project != "q" || a.Status != projections.AppNew {
		t.Fatalf("re-created row: got incarnation %v project %q %s, want 2 q new", a.Incarnation, a.Project, a.Status)
	}
	// The old deployment switches traffic after the name was taken again.
	apply(old, domain.EventDeploymentContainerStarted, domain.DeploymentContainerStarted{DeploymentID: "d1", App: "web", ContainerID: "c1", ContainerName: "berth-web-d1"})
	apply(old, domain.EventDeploymentHealthPassed, domain.DeploymentHealthPassed{DeploymentID: "d1", App: "web"})
	apply(old, domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: "d1", App: "web", ContainerID: "c1"})
	apply(old, domain.EventDeploymentCancelled, domain.DeploymentCancelled{DeploymentID: "d1", App: "web"})
	a := m.Apps["web"]
	if a.ServingContainer != "" || a.UpstreamHost != "" || a.Status != projections.AppNew || a.CurrentDeploymentID != "" {
		t.Errorf("new row after the old deployment's events: got %+v, want untouched", a)
	}
	if d := m.Deployments["d1"]; d.Incarnation != 1 || d.Status != projections.DeploymentCancelled {
		t.Errorf("old deployment: got incarnation %v %s, want 1 cancelled", d.Incarnation, d.Status)
	}
	apply(cur, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: "d2", App: "web", AppVersion: 3, Incarnation: 2})
	if d := m.Deployments["d2"]; d.Incarnation != 2 || m.Apps["web"].CurrentDeploymentID != "d2" || m.Apps["web"].Status != projections.AppQueued {
		t.Errorf("new deployment: got incarnation %v, app current %q %s, want 2 d2 queued", d.Incarnation, m.Apps["web"].CurrentDeploymentID, m.Apps["web"].Status)
	}
}

package projections

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Read-model tables and their columns, in the order of the rows below.
const (
	tableProjects    = "rm_projects"
	tableApps        = "rm_apps"
	tableDeployments = "rm_deployments"
	tableRoutes      = "rm_routes"
	tableAudit       = "rm_audit"
)

var (
	projectColumns = []string{"name", "description", "created_at", "position"}
	appColumns     = []string{"name", "project", "status", "desired_status", "config", "stream_version",
		"current_deployment_id", "serving_deployment_id", "serving_image", "serving_container",
		"upstream_host", "upstream_port", "created_at", "updated_at", "position", "replica_hosts", "incarnation", "service_hosts"}
	deploymentColumns = []string{"id", "app", "status", "step", "trigger_kind", "trigger_detail",
		"actor_kind", "actor_id", "actor_name", "correlation_id", "app_version", "ref", "commit_sha",
		"image_id", "container_id", "container_name", "rollback_of", "retry_of", "worker", "attempts",
		"cancel_requested", "steps", "requested_at", "queued_at", "started_at", "finished_at",
		"duration_ms", "failed_step", "failure_reason", "queue_seq", "position", "incarnation", "services"}
	routeColumns = []string{"host", "app", "path_prefix", "https", "port", "position"}
)

func projectRow(p *Project) []any {
	return []any{p.Name, p.Description, p.CreatedAt, p.Position}
}

func appRow(a *App) ([]any, error) {
	cfg, err := json.Marshal(a.Config)
	if err != nil {
		return nil, fmt.Errorf("encode config of %s: %w", a.Name, err)
	}
	return []any{a.Name, a.Project, a.Status, a.DesiredStatus, cfg, a.StreamVersion,
		a.CurrentDeploymentID, a.ServingDeploymentID, a.ServingImage, a.ServingContainer,
		a.UpstreamHost, a.UpstreamPort, a.CreatedAt, a.UpdatedAt, a.Position, replicaHostsRow(a.ReplicaHosts), a.Incarnation, jsonObject(a.ServiceHosts)}, nil
}

// jsonObject encodes a map column: never NULL, "{}" when empty.
func jsonObject[M ~map[string]V, V any](m M) []byte {
	if len(m) == 0 {
		return []byte("{}")
	}
	b, err := json.Marshal(m)
	if err != nil {
		return []byte("{}")
	}
	return b
}

// replicaHostsRow is the replica_hosts column of hosts: never NULL.
func replicaHostsRow(hosts []string) []string {
	if hosts == nil {
		return []string{}
	}
	return hosts
}

func deploymentRow(d *Deployment) ([]any, error) {
	steps, err := encodeSteps(d.Steps)
	if err != nil {
		return nil, fmt.Errorf("encode steps of %s: %w", d.ID, err)
	}
	return []any{d.ID, d.App, d.Status, d.Step, d.Trigger.Kind, d.Trigger.Detail,
		d.Actor.Kind, d.Actor.ID, d.Actor.Name, d.CorrelationID, d.AppVersion, d.Ref, d.CommitSHA,
		d.ImageID, d.ContainerID, d.ContainerName, d.RollbackOf, d.RetryOf, d.Worker, d.Attempts,
		d.CancelRequested, steps, d.RequestedAt, d.QueuedAt, d.StartedAt, d.FinishedAt,
		d.DurationMS, d.FailedStep, d.FailureReason, d.QueueSeq, d.Position, d.Incarnation, jsonObject(d.Services)}, nil
}

func routeRow(r Route) []any {
	return []any{r.Host, r.App, r.PathPrefix, r.HTTPS, r.Port, r.Position}
}

func scanProject(row pgx.Row) (*Project, error) {
	var p Project
	if err := row.Scan(&p.Name, &p.Description, &p.CreatedAt, &p.Position); err != nil {
		return nil, err
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return &p, nil
}

func scanApp(row pgx.Row) (*App, error) {
	var a App
	var cfg, serviceHosts []byte
	if err := row.Scan(&a.Name, &a.Project, &a.Status, &a.DesiredStatus, &cfg, &a.StreamVersion,
		&a.CurrentDeploymentID, &a.ServingDeploymentID, &a.ServingImage, &a.ServingContainer,
		&a.UpstreamHost, &a.UpstreamPort, &a.CreatedAt, &a.UpdatedAt, &a.Position, &a.ReplicaHosts, &a.Incarnation, &serviceHosts); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(serviceHosts, &a.ServiceHosts); err != nil {
		return nil, fmt.Errorf("decode service hosts of %s: %w", a.Name, err)
	}
	if len(a.ServiceHosts) == 0 {
		a.ServiceHosts = nil
	}
	if len(a.ReplicaHosts) == 0 {
		a.ReplicaHosts = nil
	}
	if err := json.Unmarshal(cfg, &a.Config); err != nil {
		return nil, fmt.Errorf("decode config of %s: %w", a.Name, err)
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return &a, nil
}

func scanDeployment(row pgx.Row) (*Deployment, error) {
	var d Deployment
	var steps, services []byte
	if err := row.Scan(&d.ID, &d.App, &d.Status, &d.Step, &d.Trigger.Kind, &d.Trigger.Detail,
		&d.Actor.Kind, &d.Actor.ID, &d.Actor.Name, &d.CorrelationID, &d.AppVersion, &d.Ref, &d.CommitSHA,
		&d.ImageID, &d.ContainerID, &d.ContainerName, &d.RollbackOf, &d.RetryOf, &d.Worker, &d.Attempts,
		&d.CancelRequested, &steps, &d.RequestedAt, &d.QueuedAt, &d.StartedAt, &d.FinishedAt,
		&d.DurationMS, &d.FailedStep, &d.FailureReason, &d.QueueSeq, &d.Position, &d.Incarnation, &services); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(services, &d.Services); err != nil {
		return nil, fmt.Errorf("decode services of %s: %w", d.ID, err)
	}
	if len(d.Services) == 0 {
		d.Services = nil
	}
	if err := json.Unmarshal(steps, &d.Steps); err != nil {
		return nil, fmt.Errorf("decode steps of %s: %w", d.ID, err)
	}
	d.RequestedAt = d.RequestedAt.UTC()
	for _, t := range []**time.Time{&d.QueuedAt, &d.StartedAt, &d.FinishedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	return &d, nil
}

func scanRoute(row pgx.Row) (Route, error) {
	var r Route
	err := row.Scan(&r.Host, &r.App, &r.PathPrefix, &r.HTTPS, &r.Port, &r.Position)
	return r, err
}

func cols(c []string) string { return strings.Join(c, ", ") }

// upsertSQL returns an INSERT … ON CONFLICT (key) DO UPDATE for table.
func upsertSQL(table string, columns []string) string {
	ph := make([]string, len(columns))
	set := make([]string, 0, len(columns)-1)
	for i, c := range columns {
		ph[i] = fmt.Sprintf("$%d", i+1)
		if i > 0 {
			set = append(set, c+" = EXCLUDED."+c)
		}
	}
	return "INSERT INTO " + table + " (" + cols(columns) + ") VALUES (" + strings.Join(ph, ", ") +
		") ON CONFLICT (" + columns[0] + ") DO UPDATE SET " + strings.Join(set, ", ")
}

// encodeSteps returns json.Marshal(steps), without reflection for the
// common case of plain ASCII step names and four-digit years: a rebuild
// encodes the steps of every deployment.
func encodeSteps(steps []Step) ([]byte, error) {
	if steps == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+len(steps)*112)
	b = append(b, '[')
	for i, s := range steps {
		if !plainJSON(s.Name) || s.At.Year() < 0 || s.At.Year() > 9999 {
			return json.Marshal(steps)
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"`...)
		b = append(b, s.Name...)
		b = append(b, `","at":"`...)
		b = s.At.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","duration_ms":`...)
		b = strconv.AppendInt(b, s.DurationMS, 10)
		b = append(b, `,"position":`...)
		b = strconv.AppendInt(b, s.Position, 10)
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// plainJSON reports whether s needs no escaping inside a JSON string as
// encoding/json writes it.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

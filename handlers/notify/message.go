package notify

import (
	"encoding/json"
	"fmt"
	"strings"

	"berth/domain"
)

// Message is what a channel is told about one event.
type Message struct {
	Rule  string
	Title string
	Body  string
	// App and Project name what the event concerns ("" when nothing).
	App     string
	Project string
}

// eventApp returns the application an event concerns, from its payload.
func eventApp(e domain.RecordedEvent) string {
	var d struct {
		App string `json:"app"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.App
}

// Render turns a recorded event into a message. project is the event's
// application's project ("" when unknown).
func Render(e domain.RecordedEvent, project string) (Message, error) {
	m := Message{Rule: domain.RuleOf(e.Type), Project: project}
	where := func(app string) string {
		m.App = app
		if project != "" {
			return app + " (project " + project + ")"
		}
		return app
	}
	var b strings.Builder
	switch e.Type {
	case domain.EventDeploymentFailed:
		var d domain.DeploymentFailed
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Deployment of " + where(d.App) + " failed"
		fmt.Fprintf(&b, "The deployment of %s failed at step %q: %s\n", where(d.App), d.Step, d.Reason)
		fmt.Fprintf(&b, "The previous version keeps serving.\nDeployment: %s\n", d.DeploymentID)
		if tail := strings.TrimSpace(d.LogTail); tail != "" {
			if len(tail) > 1500 {
				tail = "…" + tail[len(tail)-1500:]
			}
			b.WriteString("\nLast log lines:\n" + tail + "\n")
		}
	case domain.EventDeploymentDeadLettered:
		var d domain.DeploymentDeadLettered
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Deployment of " + where(d.App) + " could not be run"
		fmt.Fprintf(&b, "The deployment of %s was given up by the deployer: %s\nDeployment: %s\n", where(d.App), d.Reason, d.DeploymentID)
	case domain.EventDeploymentSucceeded:
		var d domain.DeploymentSucceeded
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Deployment of " + where(d.App) + " succeeded"
		fmt.Fprintf(&b, "%s is serving deployment %s (took %.1f s).\n", where(d.App), d.DeploymentID, float64(d.DurationMS)/1000)
	case domain.EventDeploymentCancelled:
		var d domain.DeploymentCancelled
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Deployment of " + where(d.App) + " cancelled"
		fmt.Fprintf(&b, "The deployment %s of %s was cancelled at step %q.\n", d.DeploymentID, where(d.App), d.Step)
	case domain.EventThresholdCrossed:
		var d domain.ThresholdCrossed
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		subject := "server " + d.Target
		if d.Kind == domain.MonitorKindApp {
			subject = "application " + where(d.Target)
		}
		m.Title = fmt.Sprintf("%s: %s at %.0f%%", subject, d.Metric, d.Value)
		fmt.Fprintf(&b, "The %s of %s is at %.1f%%, above its threshold of %.0f%%. You will not be told again until it falls below %.0f%%.\n",
			d.Metric, subject, d.Value, d.Raise, d.Clear)
	case domain.EventThresholdCleared:
		var d domain.ThresholdCleared
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		subject := "server " + d.Target
		if d.Kind == domain.MonitorKindApp {
			subject = "application " + where(d.Target)
		}
		m.Title = fmt.Sprintf("%s: %s back to %.0f%%", subject, d.Metric, d.Value)
		fmt.Fprintf(&b, "The %s of %s is back to %.1f%%, below %.0f%%.\n", d.Metric, subject, d.Value, d.Clear)
	case domain.EventCertificateFailed:
		var d domain.CertificateFailed
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Certificate for " + d.Host + " failing"
		fmt.Fprintf(&b, "The TLS certificate for %s of %s could not be obtained or renewed: %s\n", d.Host, where(d.App), d.Reason)
	case domain.EventBackupFailed:
		var d domain.BackupFailed
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Backup of database " + d.Database + " failed"
		fmt.Fprintf(&b, "The backup of the managed database %s to storage %s failed: %s\nBackup: %s\n", d.Database, d.Storage, d.Reason, d.Backup)
	case domain.EventBackupDrillFailed:
		var d domain.BackupDrillFailed
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Restore drill of database " + d.Database + " failed"
		fmt.Fprintf(&b, "The restore drill of backup %s of the managed database %s failed: %s\nThe backup is not verified.\n", d.Backup, d.Database, d.Reason)
	case domain.EventVolumeBackupFailed:
		var d domain.VolumeBackupFailed
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Backup of volume " + d.Volume + " of " + d.App + " failed"
		fmt.Fprintf(&b, "The backup of volume %s of %s to storage %s failed: %s\nBackup: %s\n", d.Volume, where(d.App), d.Storage, d.Reason, d.Backup)
	case domain.EventSelfBackupFailed:
		var d domain.SelfBackupFailed
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return m, fmt.Errorf("notify: decode %s: %w", e.Type, err)
		}
		m.Title = "Backup of berth's own database failed"
		fmt.Fprintf(&b, "berth backup to %s in bucket %s at %s failed: %s\nBackup: %s\n", d.ObjectKey, d.Bucket, d.Endpoint, d.Reason, d.Backup)
	default:
		return m, fmt.Errorf("notify: no message for event type %q: %w", e.Type, domain.ErrInvalid)
	}
	fmt.Fprintf(&b, "\nEvent #%d at %s.", e.Position, e.RecordedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	m.Body = b.String()
	return m, nil
}

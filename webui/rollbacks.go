package webui

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"berth/domain"
)

// Images tells which images are on the Docker host (*imagegc.Collector
// implements it). Safe for concurrent use.
type Images interface {
	Present(ctx context.Context, imageID string) (bool, error)
}

// Rollback modes: how a rollback to a deployment would run.
const (
	// RollbackInstant: its image is on the host and is reused.
	RollbackInstant = "instant"
	// RollbackRebuild: its image was collected; the rollback rebuilds it
	// from the commit the log recorded.
	RollbackRebuild = "rebuild"
	// RollbackUnavailable: its image is gone and the log records no commit
	// to rebuild it from (an image source no longer on the host).
	RollbackUnavailable = "unavailable"
)

// RollbackTarget is a deployment an application can roll back to.
type RollbackTarget struct {
	DeploymentID string     `json:"deployment_id"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	CommitSHA    string     `json:"commit_sha,omitempty"`
	ImageID      string     `json:"image_id"`
	// Serving is set on the deployment traffic goes to now.
	Serving bool `json:"serving"`
	// Mode is instant, rebuild or unavailable; Instant is Mode == instant.
	Mode    string `json:"mode"`
	Instant bool   `json:"instant"`
}

// appRollbacks lists the deployments an application can roll back to,
// newest first, each saying whether the rollback is instant (its image is
// on the host), rebuilds the image from its commit, or cannot run.
func (s *Server) appRollbacks(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	name := r.PathValue("app")
	app, err := s.deps.Reads.GetApp(r.Context(), name)
	if err != nil {
		return err
	}
	if s.deps.Images == nil {
		return fmt.Errorf("rollback targets: %w", errUnavailable)
	}
	ds, err := s.deps.Reads.ListIncarnationDeployments(r.Context(), name, app.Incarnation)
	if err != nil {
		return err
	}
	out := []RollbackTarget{}
	for _, d := range ds {
		if d.Status != string(domain.DeploymentSucceededStatus) || d.ImageID == "" {
			continue
		}
		t := RollbackTarget{DeploymentID: d.ID, FinishedAt: d.FinishedAt, CommitSHA: d.CommitSHA, ImageID: d.ImageID, Serving: d.ID == app.ServingDeploymentID}
		present, err := s.deps.Images.Present(r.Context(), d.ImageID)
		if err != nil {
			return err
		}
		switch {
		case present:
			t.Mode = RollbackInstant
		case domain.IsCommitSHA(d.CommitSHA):
			t.Mode = RollbackRebuild
		default:
			t.Mode = RollbackUnavailable
		}
		t.Instant = t.Mode == RollbackInstant
		out = append(out, t)
	}
	writeJSON(w, http.StatusOK, map[string]any{"rollbacks": out})
	return nil
}

package docker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	cerrdefs "github.com/containerd/errdefs"

	"berth/domain"
)

// WorkRoot returns the directory under which NewWorkDir creates the
// per-deployment work directories.
func (e *Engine) WorkRoot() string { return e.cfg.WorkRoot }

// RemoveWorkDirs removes the work directories NewWorkDir created for
// deploymentID that are still on disk (a process killed mid-fetch leaves
// its directory behind).
func (e *Engine) RemoveWorkDirs(deploymentID string) error {
	if err := ValidateID(deploymentID); err != nil {
		return err
	}
	dirs, err := filepath.Glob(filepath.Join(e.cfg.WorkRoot, deploymentID+"-*"))
	if err != nil {
		return fmt.Errorf("find work dirs: %w", err)
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove work dir: %w", err)
		}
	}
	return nil
}

// Inspect returns a container with its current IP on the engine's network
// and its application port. ErrNotFound when it is gone.
func (e *Engine) Inspect(ctx context.Context, containerID string) (Container, error) {
	if containerID == "" || hasBadRunes(containerID) {
		return Container{}, domain.Invalid("container", "must be a container id or name")
	}
	ins, err := e.docker.ContainerInspect(ctx, containerID)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return Container{}, fmt.Errorf("container %s: %w", containerID, domain.ErrNotFound)
		}
		return Container{}, ctxErr(ctx, fmt.Errorf("inspect container %s: %w", containerID, err))
	}
	c := Container{ID: ins.ID, Name: filepath.Base(ins.Name), IP: e.ipOf(ins)}
	if ins.Config != nil {
		c.Port, _ = strconv.Atoi(ins.Config.Labels[labelPort])
		c.App, c.Deployment = ins.Config.Labels[LabelApp], ins.Config.Labels[LabelDeployment]
	}
	if ins.State != nil {
		c.State = ins.State.Status
	}
	return c, nil
}

// StartContainer starts an existing (stopped) container again and returns
// it with its current IP on the engine's network; starting a running
// container is not an error. ErrNotFound when it is gone.
func (e *Engine) StartContainer(ctx context.Context, containerID string) (Container, error) {
	if containerID == "" || hasBadRunes(containerID) {
		return Container{}, domain.Invalid("container", "must be a container id or name")
	}
	c, err := e.start(ctx, containerID)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return Container{}, fmt.Errorf("container %s: %w", containerID, domain.ErrNotFound)
		}
		return Container{}, ctxErr(ctx, err)
	}
	ins, err := e.docker.ContainerInspect(ctx, containerID)
	if err == nil {
		c.Name = filepath.Base(ins.Name)
		if ins.Config != nil {
			c.Port, _ = strconv.Atoi(ins.Config.Labels[labelPort])
		}
	}
	return c, nil
}

package docker

import (
	"context"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
)

// ImageExists reports whether the daemon has the image id (or reference).
func (e *Engine) ImageExists(ctx context.Context, id string) (bool, error) {
	if err := validateImageRef(id); err != nil {
		return false, err
	}
	_, err := e.docker.ImageInspect(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, ctxErr(ctx, fmt.Errorf("inspect image %s: %w", id, err))
	}
}

// RemoveImages garbage-collects app's images: every image labelled
// berth.app=app whose id is not in keep (the images rollbacks may still
// need, by id, with or without the "sha256:" prefix) and that no container,
// running or stopped, uses. It returns the ids it removed. Images in use are
// skipped, not errors.
func (e *Engine) RemoveImages(ctx context.Context, app string, keep map[string]bool) (removed []string, err error) {
	if err := ValidateAppName(app); err != nil {
		return nil, err
	}
	images, err := e.docker.ImageList(ctx, image.ListOptions{
		All:     false,
		Filters: filters.NewArgs(filters.Arg("label", LabelApp+"="+app), filters.Arg("label", LabelManaged+"=true")),
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("list images of %s: %w", app, err))
	}
	kept := func(id string) bool {
		return keep[id] || keep[strings.TrimPrefix(id, "sha256:")] || keep["sha256:"+strings.TrimPrefix(id, "sha256:")]
	}
	var candidates []string
	for _, img := range images {
		if img.Labels[LabelApp] == app && !kept(img.ID) {
			candidates = append(candidates, img.ID)
		}
	}
	if len(candidates) == 0 {
		// Nothing to remove (an application with few deployments so
		// far): the daemon-wide container listing is not needed.
		return nil, nil
	}
	containers, err := e.docker.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("list containers: %w", err))
	}
	inUse := make(map[string]bool, len(containers))
	for _, c := range containers {
		inUse[c.ImageID] = true
	}
	for _, id := range candidates {
		if inUse[id] {
			continue
		}
		_, err := e.docker.ImageRemove(ctx, id, image.RemoveOptions{Force: true, PruneChildren: true})
		switch {
		case err == nil:
			removed = append(removed, id)
		case cerrdefs.IsNotFound(err), cerrdefs.IsConflict(err):
			// gone meanwhile, or a container started using it
		default:
			return removed, ctxErr(ctx, fmt.Errorf("remove image %s: %w", id, err))
		}
	}
	return removed, nil
}

// ImageIDOf returns the id of an image reference, or an error wrapping
// domain.ErrNotFound.
func (e *Engine) ImageIDOf(ctx context.Context, ref string) (string, error) {
	if err := validateImageRef(ref); err != nil {
		return "", err
	}
	ins, err := e.docker.ImageInspect(ctx, ref)
	if err != nil {
		return "", ctxErr(ctx, errNotFound("inspect image "+ref, err))
	}
	return ins.ID, nil
}

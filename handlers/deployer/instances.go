package deployer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/imagegc"
)

// configAt rebuilds app's configuration as of stream version v: time travel
// through the log, not a stored snapshot.
func (w *Workflow) configAt(ctx context.Context, app string, v int64) (domain.AppConfig, error) {
	if v < 1 {
		return domain.AppConfig{}, domain.Invalid("app_version", "the request names no application version")
	}
	events, err := w.store.ReadStream(ctx, domain.AppStream(app), 1, int(v))
	if err != nil {
		return domain.AppConfig{}, fmt.Errorf("read application %s: %w", app, err)
	}
	if int64(len(events)) < v {
		return domain.AppConfig{}, fmt.Errorf("application %s has %d events, the request names version %d: %w", app, len(events), v, domain.ErrNotFound)
	}
	a, err := domain.LoadApplication(events)
	if err != nil {
		return domain.AppConfig{}, fmt.Errorf("replay application %s: %w", app, err)
	}
	return a.Config(), nil
}

// openEnv builds the instance's environment, opening secrets with owner's
// key (domain.AppKeyOwner) and resolving references for an application
// running as app. Values never reach a log or an error.
func (w *Workflow) openEnv(ctx context.Context, owner string, vars []domain.EnvVar, app domain.Runtime) (map[string]string, error) {
	env := make(map[string]string, len(vars))
	for _, v := range vars {
		if v.From != "" {
			if w.cfg.EnvRefs == nil {
				return nil, fmt.Errorf("%s refers to %s, which this berth cannot resolve: %w", v.Key, v.From, domain.ErrInvalid)
			}
			val, err := w.cfg.EnvRefs.ResolveEnv(ctx, v.From, app)
			if err != nil {
				return nil, fmt.Errorf("resolve %s (%s): %w", v.Key, v.From, err)
			}
			env[v.Key] = val
			continue
		}
		if !v.Secret && len(v.Sealed) == 0 {
			env[v.Key] = v.Value
			continue
		}
		if w.cfg.Sealer == nil {
			return nil, fmt.Errorf("secret %s cannot be opened: berth runs without a secret keyring: %w", v.Key, domain.ErrInvalid)
		}
		plain, err := w.cfg.Sealer.Open(ctx, owner, v.Sealed)
		if err != nil {
			return nil, fmt.Errorf("open secret %s: %w", v.Key, err)
		}
		env[v.Key] = string(plain)
	}
	return env, nil
}

// role is what the log says about one of the application's instances.
type role struct {
	in domain.Instance
	// switched is the position of its deployment's traffic_switched event;
	// 0 when traffic never went to it.
	switched int64
}

// roles classifies app's instances other than exclude's by what their
// deployments recorded; the instance traffic went to last comes first.
// Only the instances of incarnation inc's deployments count (0: of every
// incarnation): an instance of an earlier application of the same name is
// never taken for one of the current application's.
func (w *Workflow) roles(ctx context.Context, app string, inc int, exclude string) ([]role, error) {
	list, err := w.rt.Instances(ctx, app)
	if err != nil {
		return nil, err
	}
	var out []role
	for _, in := range list {
		if in.Deployment == "" || in.Deployment == exclude {
			continue
		}
		events, err := w.store.ReadStream(ctx, domain.DeploymentStream(in.Deployment), 1, 0)
		if err != nil {
			return nil, fmt.Errorf("read deployment %s: %w", in.Deployment, err)
		}
		if len(events) == 0 {
			continue // not a deployment of this log (another berth on the same daemon): leave it alone
		}
		if inc > 0 && deploymentIncarnation(events[0]) != inc {
			continue
		}
		var pos int64
		for _, e := range events {
			if e.Type == domain.EventDeploymentTrafficSwitched {
				pos = e.Position
			}
		}
		out = append(out, role{in: in, switched: pos})
	}
	slices.SortStableFunc(out, func(a, b role) int {
		return cmp.Or(cmp.Compare(b.switched, a.switched), cmp.Compare(a.in.Replica, b.in.Replica))
	})
	return out, nil
}

// deploymentIncarnation is the incarnation a deployment's first event
// (deployment.requested) names, from 1; 0 when it does not decode.
func deploymentIncarnation(first domain.RecordedEvent) int {
	var r domain.DeploymentRequested
	if first.Type != domain.EventDeploymentRequested || json.Unmarshal(first.Data, &r) != nil {
		return 0
	}
	return max(r.Incarnation, 1)
}

// currentIncarnation is the incarnation of app its stream ends with (1
// for an empty stream).
func (w *Workflow) currentIncarnation(ctx context.Context, app string) (int, error) {
	events, err := w.store.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err != nil {
		return 0, fmt.Errorf("read application %s: %w", app, err)
	}
	if len(events) == 0 {
		return 1, nil
	}
	a, err := domain.LoadApplication(events)
	if err != nil {
		return 0, fmt.Errorf("replay application %s: %w", app, err)
	}
	return a.Incarnation(), nil
}

// servingInstances returns app's instances of incarnation inc traffic was
// ever switched to (the serving one first), except exclude's.
func (w *Workflow) servingInstances(ctx context.Context, app string, inc int, exclude string) ([]domain.Instance, error) {
	roles, err := w.roles(ctx, app, inc, exclude)
	if err != nil {
		return nil, err
	}
	var out []domain.Instance
	for _, r := range roles {
		if r.switched > 0 {
			out = append(out, r.in)
		}
	}
	return out, nil
}

// removeOrphans removes app's instances of incarnation inc traffic never
// went to (left by crashed or cancelled runs), except keep's.
func (w *Workflow) removeOrphans(ctx context.Context, app string, inc int, keep string) error {
	roles, err := w.roles(ctx, app, inc, keep)
	if err != nil {
		return err
	}
	for _, r := range roles {
		if r.switched == 0 {
			if err := w.rt.Remove(ctx, r.in, 0); err != nil {
				return err
			}
			w.log.Info("removed an orphaned instance", "app", app, "instance", r.in.Name, "deployment", r.in.Deployment)
		}
	}
	return nil
}

// recentImages returns the image ids of app's last n successful
// deployments, read from the log.
func (w *Workflow) recentImages(ctx context.Context, app string, n int) (map[string]bool, error) {
	succeeded, err := w.succeededDeployments(ctx, app)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range succeeded {
		if s.ImageID != "" {
			ids = append(ids, s.ImageID)
		}
	}
	keep := make(map[string]bool)
	for i := len(ids) - 1; i >= 0 && len(keep) < n; i-- {
		keep[ids[i]] = true
	}
	return keep, nil
}

// StopApp stops app's serving instances; it returns the first one's id
// ("" when none serves).
func (w *Workflow) StopApp(ctx context.Context, app string) (string, error) {
	if svc, _, err := w.swarmOf(ctx, app); err != nil || svc != nil {
		if err != nil {
			return "", err
		}
		if list, ok, err := stackServices(ctx, svc, app); err != nil || ok {
			if err != nil {
				return "", err
			}
			return list[0].ID, svc.(domain.InPlaceStackRuntime).StopStack(ctx, app)
		}
		st, err := svc.Service(ctx, app)
		if err != nil {
			return "", err
		}
		return st.ID, svc.ScaleService(ctx, app, 0)
	}
	inc, err := w.currentIncarnation(ctx, app)
	if err != nil {
		return "", err
	}
	serving, err := w.servingInstances(ctx, app, inc, "")
	if err != nil || len(serving) == 0 {
		return "", err
	}
	for _, in := range serving {
		if err := w.rt.Stop(ctx, in, w.cfg.StopGrace); err != nil {
			return "", err
		}
	}
	return serving[0].ID, nil
}

// StartApp starts app's serving instances again; it returns the first one,
// with its new address ("" ID when none serves).
func (w *Workflow) StartApp(ctx context.Context, app string) (domain.Instance, error) {
	if svc, rt, err := w.swarmOf(ctx, app); err != nil || svc != nil {
		if err != nil {
			return domain.Instance{}, err
		}
		if list, ok, err := stackServices(ctx, svc, app); err != nil || ok {
			if err != nil {
				return domain.Instance{}, err
			}
			return list[0], svc.(domain.InPlaceStackRuntime).StartStack(ctx, app)
		}
		if err := svc.ScaleService(ctx, app, rt.Replicas); err != nil {
			return domain.Instance{}, err
		}
		st, err := svc.Service(ctx, app)
		if err != nil {
			return domain.Instance{}, err
		}
		return domain.Instance{ID: st.ID, Name: st.Name, App: app, Deployment: st.Deployment, Address: st.Name, Port: rt.Port, Running: true}, nil
	}
	inc, err := w.currentIncarnation(ctx, app)
	if err != nil {
		return domain.Instance{}, err
	}
	serving, err := w.servingInstances(ctx, app, inc, "")
	if err != nil || len(serving) == 0 {
		return domain.Instance{}, err
	}
	var first domain.Instance
	for i, in := range serving {
		started, err := w.rt.Restart(ctx, in)
		if err != nil {
			return domain.Instance{}, err
		}
		if i == 0 {
			first = started
		}
	}
	return first, nil
}

// RemoveStackVolumes removes the volumes berth created for app's stack,
// when the stack runtime can (a deleted preview's data).
func (w *Workflow) RemoveStackVolumes(ctx context.Context, app string) error {
	if err := domain.ValidateName("app", app); err != nil {
		return err
	}
	if rm, ok := w.cfg.Stacks.(domain.StackVolumeRemover); ok {
		return rm.RemoveStackVolumes(ctx, app)
	}
	return nil
}

// stackServices returns app's stack services on the swarm svc; ok is
// false when it has none (or svc runs no stacks).
func stackServices(ctx context.Context, svc domain.SwarmServicePort, app string) ([]domain.Instance, bool, error) {
	stacks, isStacks := svc.(domain.InPlaceStackRuntime)
	if !isStacks {
		return nil, false, nil
	}
	list, err := stacks.StackInstances(ctx, app)
	return list, len(list) > 0, err
}

// DeleteApp removes incarnation inc of a deleted application from its
// runtime: once the routes have applied the deletion (when Routes is set)
// and the running instances have drained for Drain, it removes each
// instance of app whose deployment is in this log and of incarnation inc
// (StopGrace between SIGTERM and SIGKILL), then every image of app no
// instance uses and no deployment of another incarnation built or pulled;
// it returns the ids it removed. Instances of deployments this log does
// not know (another berth on the same daemon) and of a later incarnation
// (the name created again) stay. What is already gone is not an error.
func (w *Workflow) DeleteApp(ctx context.Context, app string, inc int) (instances, images []string, err error) {
	if err := domain.ValidateName("app", app); err != nil {
		return nil, nil, err
	}
	if svc, _, err := w.swarmOf(ctx, app); err != nil {
		return nil, nil, err
	} else if svc != nil {
		if st, err := svc.Service(ctx, app); err == nil {
			w.drainDeleted(ctx, app)
			if err := svc.RemoveService(ctx, app); err != nil {
				return nil, nil, err
			}
			w.log.Info("removed the service of a deleted application", "app", app, "service", st.Name)
			instances = append(instances, st.ID)
		} else if !errors.Is(err, domain.ErrNotFound) {
			return nil, nil, err
		}
		// A stack's services and networks on the swarm.
		if stacks, ok := svc.(domain.InPlaceStackRuntime); ok {
			list, err := stacks.StackInstances(ctx, app)
			if err != nil {
				return nil, nil, err
			}
			if len(list) > 0 {
				w.drainDeleted(ctx, app)
			}
			if err := stacks.RemoveStack(ctx, app); err != nil {
				return nil, nil, err
			}
			for _, in := range list {
				w.log.Info("removed a stack service of a deleted application", "app", app, "service", in.Name)
				instances = append(instances, in.ID)
			}
		}
	}
	inc = max(inc, 1)
	roles, err := w.roles(ctx, app, inc, "")
	if err != nil {
		return nil, nil, err
	}
	if slices.ContainsFunc(roles, func(r role) bool { return r.in.Running }) {
		w.drainDeleted(ctx, app)
	}
	log := w.log.With("app", app)
	for _, r := range roles {
		sctx, cancel := context.WithTimeout(ctx, w.cfg.StopGrace+30*time.Second)
		err := w.rt.Remove(sctx, r.in, w.cfg.StopGrace)
		cancel()
		if err != nil {
			return instances, nil, err
		}
		log.Info("removed an instance of a deleted application", "instance", r.in.Name, "deployment", r.in.Deployment)
		instances = append(instances, r.in.ID)
	}
	if w.cfg.Stacks != nil {
		if err := w.cfg.Stacks.RemoveStack(ctx, app); err != nil {
			return instances, nil, err
		}
	}
	keep, err := w.otherIncarnationImages(ctx, app, inc)
	if err != nil {
		return instances, nil, err
	}
	images, err = w.rt.RemoveImages(ctx, app, keep)
	if err != nil {
		return instances, images, err
	}
	// What its failed, cancelled or interrupted builds left, as their
	// build logs name it.
	if w.cfg.Leftovers != nil && w.cfg.BuildLogs != nil {
		left, err := w.buildLeftovers(ctx, app, inc)
		if err == nil {
			var more []string
			more, err = w.cfg.Leftovers.RemoveLeftovers(ctx, left)
			images = append(images, more...)
		}
		if err != nil {
			log.Warn("intermediate images of failed builds not removed", "err", err)
		}
	}
	if len(images) > 0 {
		log.Info("removed the images of a deleted application", "images", len(images))
	}
	return instances, images, nil
}

// drainDeleted waits, before a deleted application's instances stop, until
// the routes applied app.deleted (at most RouteTimeout), then Drain, so
// requests already in flight finish. A failure to wait is only logged: the
// application is deleted either way.
func (w *Workflow) drainDeleted(ctx context.Context, app string) {
	if w.cfg.Routes != nil {
		events, err := w.store.ReadStream(ctx, domain.AppStream(app), 1, 0)
		if err != nil {
			w.log.Warn("routes of a deleted application not awaited", "app", app, "err", err)
		}
		for _, e := range events {
			if e.Type != domain.EventAppDeleted {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, w.cfg.RouteTimeout)
			if err := w.cfg.Routes.WaitRouted(rctx, e.Position); err != nil {
				w.log.Warn("routes of a deleted application not removed in time", "app", app, "err", err)
			}
			cancel()
		}
	}
	if w.cfg.Drain <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(w.cfg.Drain):
	}
}

// SealLog ends the deployment's log; its summary goes into the final event.
func (w *Workflow) SealLog(ctx context.Context, deploymentID string) (domain.LogSummary, error) {
	sum, err := w.cfg.Logs.Close(ctx, deploymentID)
	if err != nil {
		return domain.LogSummary{}, err
	}
	return domain.LogSummary{LogLines: sum.Lines, LogDigest: sum.Digest}, nil
}

// CleanupInterrupted removes what an interrupted run left: its instances
// unless traffic was switched to them, and its work directories. The
// application's serving instances are never touched.
func (w *Workflow) CleanupInterrupted(ctx context.Context, app, deploymentID string) error {
	if err := domain.ValidateName("app", app); err != nil {
		return err
	}
	if err := domain.ValidateName("deployment_id", deploymentID); err != nil {
		return err
	}
	var errs []error
	if err := w.rt.RemoveWork(deploymentID); err != nil {
		errs = append(errs, err)
	}
	roles, err := w.roles(ctx, app, 0, "")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, r := range roles {
		if r.in.Deployment != deploymentID || r.switched > 0 {
			continue
		}
		if err := w.rt.Remove(ctx, r.in, 0); err != nil {
			errs = append(errs, err)
			continue
		}
		w.log.Info("removed the instance of an interrupted deployment", "app", app, "deployment", deploymentID, "instance", r.in.Name)
	}
	return errors.Join(errs...)
}

// registryAuth returns the credentials of the registry at address (the
// last one added there and not removed), the password opened; anonymous
// when berth knows no registry there.
func (w *Workflow) registryAuth(ctx context.Context, address string) (domain.RegistryAuth, error) {
	var found *domain.RegistryAdded
	byName := map[string]domain.RegistryAdded{}
	var after int64
	for {
		page, err := w.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{Categories: []string{domain.CategoryRegistry}}})
		if err != nil {
			return domain.RegistryAuth{}, fmt.Errorf("read registries: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			data, err := domain.DecodeEvent(e)
			if err != nil {
				return domain.RegistryAuth{}, err
			}
			switch v := data.(type) {
			case domain.RegistryAdded:
				byName[v.Registry] = v
			case domain.RegistryChanged:
				byName[v.Registry] = domain.RegistryAdded{Registry: v.Registry, Address: v.Address, Username: v.Username, SealedPassword: v.SealedPassword}
			case domain.RegistryRemoved:
				delete(byName, v.Registry)
			}
		}
		after = page[len(page)-1].Position
	}
	for _, r := range byName {
		if r.Address == address {
			found = &r
		}
	}
	if found == nil || found.Username == "" {
		return domain.RegistryAuth{}, nil
	}
	if w.cfg.Sealer == nil {
		return domain.RegistryAuth{}, fmt.Errorf("the credentials of registry %s cannot be opened: berth runs without a secret keyring: %w", found.Registry, domain.ErrInvalid)
	}
	plain, err := w.cfg.Sealer.Open(ctx, domain.RegistryKeyOwner(found.Registry), found.SealedPassword)
	if err != nil {
		return domain.RegistryAuth{}, fmt.Errorf("open the credentials of registry %s: %w", found.Registry, err)
	}
	return domain.RegistryAuth{Username: found.Username, Password: string(plain)}, nil
}

// digestOf returns the reference by digest deployment id recorded: its
// image source's repository digest or the reference its build was pushed
// as; "" when it recorded none.
func (w *Workflow) digestOf(ctx context.Context, id string) (string, error) {
	events, err := w.store.ReadStream(ctx, domain.DeploymentStream(id), 1, 0)
	if err != nil {
		return "", fmt.Errorf("read deployment %s: %w", id, err)
	}
	ref := ""
	for _, e := range events {
		data, err := domain.DecodeEvent(e)
		if err != nil {
			return "", err
		}
		switch v := data.(type) {
		case domain.DeploymentSourceFetched:
			if strings.Contains(v.ImageDigest, "@sha256:") {
				ref = v.ImageDigest
			}
		case domain.DeploymentImageBuilt:
			if v.Pushed != "" {
				ref = v.Pushed
			}
		}
	}
	return ref, nil
}

// keepImages is how many images app keeps: its current configuration's
// build.keep_images, or KeepImages.
func (w *Workflow) keepImages(ctx context.Context, app string) int {
	events, err := w.store.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err == nil {
		if a, err := domain.LoadApplication(events); err == nil && a.Config().Build.KeepImages > 0 {
			return a.Config().Build.KeepImages
		}
	}
	return w.cfg.KeepImages
}

// otherIncarnationImages returns the images the deployments of app's
// incarnations other than inc built or pulled (nil when there are none),
// read from the log: a removal of inc leaves them.
func (w *Workflow) otherIncarnationImages(ctx context.Context, app string, inc int) (map[string]bool, error) {
	incOf := map[string]int{}
	var keep map[string]bool
	var after int64
	for {
		page, err := w.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryDeployment},
			Types:      []string{domain.EventDeploymentRequested, domain.EventDeploymentImageBuilt, domain.EventDeploymentSucceeded},
		}})
		if err != nil {
			return nil, fmt.Errorf("read the deployments of %s: %w", app, err)
		}
		for _, e := range page {
			var d struct {
				App          string `json:"app"`
				DeploymentID string `json:"deployment_id"`
				Incarnation  int    `json:"incarnation"`
				ImageID      string `json:"image_id"`
			}
			if json.Unmarshal(e.Data, &d) != nil || d.App != app {
				continue
			}
			if e.Type == domain.EventDeploymentRequested {
				incOf[d.DeploymentID] = max(d.Incarnation, 1)
			}
			if n, ok := incOf[d.DeploymentID]; ok && n != inc && d.ImageID != "" {
				if keep == nil {
					keep = map[string]bool{}
				}
				keep[d.ImageID] = true
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Position
	}
	return keep, nil
}

// buildLeftovers names the intermediate images the builds of app's
// deployments of incarnation inc that did not succeed committed, read
// from their logs.
func (w *Workflow) buildLeftovers(ctx context.Context, app string, inc int) ([]string, error) {
	succeeded := map[string]bool{}
	var ids []string
	var after int64
	for {
		page, err := w.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryDeployment},
			Types:      []string{domain.EventDeploymentRequested, domain.EventDeploymentSucceeded},
		}})
		if err != nil {
			return nil, fmt.Errorf("read the deployments of %s: %w", app, err)
		}
		for _, e := range page {
			var d struct {
				App          string `json:"app"`
				DeploymentID string `json:"deployment_id"`
				Incarnation  int    `json:"incarnation"`
			}
			if json.Unmarshal(e.Data, &d) != nil || d.App != app {
				continue
			}
			if e.Type == domain.EventDeploymentRequested && max(d.Incarnation, 1) != inc {
				continue
			}
			if e.Type == domain.EventDeploymentSucceeded {
				succeeded[d.DeploymentID] = true
			} else {
				ids = append(ids, d.DeploymentID)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Position
	}
	var out []string
	for _, id := range ids {
		if succeeded[id] {
			continue // its layers went with its image
		}
		var t imagegc.BuildTracker
		var seq int64
		for {
			lines, ended, err := w.cfg.BuildLogs.Read(ctx, id, seq, 1000)
			if err != nil {
				return nil, fmt.Errorf("read the log of %s: %w", id, err)
			}
			for _, l := range lines {
				t.Line(l.Text)
				seq = l.Seq
			}
			if ended || len(lines) < 1000 {
				break
			}
		}
		out = append(out, t.Created()...)
	}
	return out, nil
}

// succeededDeployments returns the deployment.succeeded events of app, in
// log order.
func (w *Workflow) succeededDeployments(ctx context.Context, app string) ([]domain.DeploymentSucceeded, error) {
	var out []domain.DeploymentSucceeded
	var after int64
	for {
		page, err := w.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryDeployment}, Types: []string{domain.EventDeploymentSucceeded},
		}})
		if err != nil {
			return nil, fmt.Errorf("read successful deployments: %w", err)
		}
		if len(page) == 0 {
			return out, nil
		}
		for _, e := range page {
			var s domain.DeploymentSucceeded
			if json.Unmarshal(e.Data, &s) == nil && s.App == app {
				out = append(out, s)
			}
		}
		after = page[len(page)-1].Position
	}
}

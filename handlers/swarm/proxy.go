package swarm

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"berth/domain"
)

// ProxyService is the name of the proxy's service.
const ProxyService = "berth-traefik"

// Where the proxy's container finds its configuration and keeps its
// data (ACME's account and certificates).
const (
	ProxyStaticPath  = "/etc/traefik/traefik.yml"
	ProxyDynamicPath = "/etc/traefik/dynamic"
	ProxyDataPath    = "/data"
)

// The proxy's volumes on the manager: its data, and its dynamic
// configuration when the manager is another machine than berth's.
const (
	ProxyDataVolume    = "berth-traefik-data"
	ProxyDynamicVolume = "berth-traefik-dynamic"
)

// ProxySpec describes Traefik as a service of the swarm.
type ProxySpec struct {
	// Binary is the path of a statically linked Traefik binary on the
	// manager; Version names the image built from it
	// ("berth/traefik:<version>").
	Binary, Version string
	// Static is Traefik's static configuration (entry points on :80 and
	// :443, the file provider watching ProxyDynamicPath).
	Static []byte
	// DynamicDir is the manager's directory of berth's dynamic
	// configuration (the routing projection's), mounted read-only at
	// ProxyDynamicPath: the proxy runs on the manager node that holds it.
	// Set only when berth runs beside the manager's engine.
	DynamicDir string
	// Dynamic, used when DynamicDir is empty (a manager on another
	// machine), is the dynamic configuration itself, file name: content,
	// written into the volume ProxyDynamicVolume mounted at
	// ProxyDynamicPath by a helper container of the task probe's image
	// (Config.ProbeBinary): Traefik reloads it without restarting.
	Dynamic map[string][]byte
	// NodeID is that manager's node id.
	NodeID string
	// HTTPPort and HTTPSPort are published on the manager node.
	HTTPPort, HTTPSPort int
}

var reVersion = regexp.MustCompile(`^v?[0-9A-Za-z][0-9A-Za-z._-]{0,63}$`)

// ProxyImage builds, once, the proxy's image FROM scratch with the Traefik
// binary, tagged berth/traefik:<version>, and returns its reference.
func (s *Services) ProxyImage(ctx context.Context, binary, version string) (string, error) {
	if !reVersion.MatchString(version) {
		return "", domain.Invalid("version", "must be a version such as v3.6.12")
	}
	if !filepath.IsAbs(binary) {
		return "", domain.Invalid("binary", "must be an absolute path")
	}
	tag := "berth/traefik:" + version
	if _, err := s.cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", unavailable(fmt.Errorf("inspect %s: %w", tag, err))
	}
	f, err := os.Open(binary)
	if err != nil {
		return "", fmt.Errorf("traefik binary: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("traefik binary %s is not a file: %w", binary, domain.ErrInvalid)
	}
	dockerfile := []byte("FROM scratch\nCOPY traefik /traefik\nENTRYPOINT [\"/traefik\"]\nCMD [\"--configFile=" + ProxyStaticPath + "\"]\n")
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))})
		if err == nil {
			_, err = tw.Write(dockerfile)
		}
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: "traefik", Mode: 0o755, Size: fi.Size()})
		}
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	resp, err := s.cli.ImageBuild(ctx, pr, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{LabelManaged: "true"}})
	if err != nil {
		_ = pr.CloseWithError(err)
		return "", unavailable(fmt.Errorf("build %s: %w", tag, err))
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if _, err := s.cli.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("build %s: %w: %s", tag, domain.ErrBuildFailed, lastBytes(out, 2048))
	}
	return tag, nil
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// EnsureProxy runs Traefik as the swarm service ProxyService on the
// overlay network, with its static configuration as a swarm config and
// berth's dynamic configuration mounted from the manager, publishing the
// entry points on the manager's own ports. Routes go to service names, so deployments
// never rewrite them. It creates or updates the service and waits until
// it converged.
func (s *Services) EnsureProxy(ctx context.Context, p ProxySpec) (domain.ServiceState, error) {
	if len(p.Static) == 0 {
		return domain.ServiceState{}, domain.Invalid("static", "is required")
	}
	if p.DynamicDir != "" && !filepath.IsAbs(p.DynamicDir) {
		return domain.ServiceState{}, domain.Invalid("dynamic_dir", "must be an absolute path")
	}
	for name := range p.Dynamic {
		if !reDynamicFile.MatchString(name) {
			return domain.ServiceState{}, domain.Invalid("dynamic", fmt.Sprintf("file name %q must be letters, digits, '.', '_' or '-', ending in .yml", name))
		}
	}
	if err := domain.ValidateNodeID("node_id", p.NodeID); err != nil {
		return domain.ServiceState{}, err
	}
	for name, port := range map[string]int{"http_port": p.HTTPPort, "https_port": p.HTTPSPort} {
		if err := domain.ValidatePort(name, port); err != nil {
			return domain.ServiceState{}, err
		}
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return domain.ServiceState{}, err
	}
	image, err := s.ProxyImage(ctx, p.Binary, p.Version)
	if err != nil {
		return domain.ServiceState{}, err
	}
	sum := sha256.Sum256(p.Static)
	cfgName := ProxyService + "-" + hex.EncodeToString(sum[:6])
	cfgID, err := s.ensureConfig(ctx, cfgName, p.Static)
	if err != nil {
		return domain.ServiceState{}, err
	}
	configs := []*swarm.ConfigReference{{File: &swarm.ConfigReferenceFileTarget{Name: ProxyStaticPath, UID: "0", GID: "0", Mode: 0o444}, ConfigID: cfgID, ConfigName: cfgName}}
	// ACME's account and certificates outlive the task.
	mounts := []mount.Mount{{Type: mount.TypeVolume, Source: ProxyDataVolume, Target: ProxyDataPath}}
	layout := "data"
	if p.DynamicDir != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: p.DynamicDir, Target: ProxyDynamicPath, ReadOnly: true})
		layout += "+dir"
	} else {
		mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: ProxyDynamicVolume, Target: ProxyDynamicPath})
		layout += "+volume"
	}
	// What the service runs: changes with the static configuration and
	// the mounts, never with a route.
	vsum := sha256.Sum256(append([]byte(layout+"\x00"), p.Static...))
	version := ProxyService + "-" + hex.EncodeToString(vsum[:6])
	replicas := uint64(1)
	grace := 10 * time.Second
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: ProxyService, Labels: map[string]string{LabelManaged: "true", LabelDeployment: version}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:           image,
				Labels:          map[string]string{LabelTaskDeployment: version},
				Mounts:          mounts,
				Configs:         configs,
				StopGracePeriod: &grace,
			},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
			Placement:     &swarm.Placement{Constraints: []string{"node.id==" + p.NodeID}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.cfg.Network}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		// The ports are bound on the manager itself (host mode): a second
		// task cannot bind them beside the first, so the proxy's own
		// updates stop the old task first.
		UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, FailureAction: swarm.UpdateFailureActionRollback,
			Monitor: s.cfg.Monitor, Order: swarm.UpdateOrderStopFirst},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP, Ports: []swarm.PortConfig{
			{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 80, PublishedPort: uint32(p.HTTPPort), PublishMode: swarm.PortConfigPublishModeHost},
			{Protocol: swarm.PortConfigProtocolTCP, TargetPort: 443, PublishedPort: uint32(p.HTTPSPort), PublishMode: swarm.PortConfigPublishModeHost},
		}},
	}
	if p.DynamicDir == "" {
		// The routes first: a new proxy starts with them.
		if err := s.syncDynamic(ctx, p.Dynamic); err != nil {
			return domain.ServiceState{}, err
		}
	}
	return s.runProxy(ctx, spec, version, image, configs)
}

// runProxy creates or updates the proxy's service to spec unless it runs
// version of image already, and waits until it converged.
func (s *Services) runProxy(ctx context.Context, spec swarm.ServiceSpec, version, image string, configs []*swarm.ConfigReference) (domain.ServiceState, error) {
	cur, _, err := s.cli.ServiceInspectWithRaw(ctx, ProxyService, swarm.ServiceInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
		resp, err := s.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
		if err != nil {
			return domain.ServiceState{}, unavailable(fmt.Errorf("create the proxy service: %w", err))
		}
		return s.converge(ctx, resp.ID, version, nil, func(string) {})
	case err != nil:
		return domain.ServiceState{}, unavailable(fmt.Errorf("inspect the proxy service: %w", err))
	case cur.Spec.Labels[LabelManaged] != "true":
		return domain.ServiceState{}, fmt.Errorf("service %s is not berth's: %w", ProxyService, domain.ErrConflict)
	case cur.Spec.Labels[LabelDeployment] == version && cur.Spec.TaskTemplate.ContainerSpec != nil && cur.Spec.TaskTemplate.ContainerSpec.Image == image:
		return s.converge(ctx, cur.ID, version, nil, func(string) {})
	}
	if _, err := s.cli.ServiceUpdate(ctx, cur.ID, cur.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		return domain.ServiceState{}, unavailable(fmt.Errorf("update the proxy service: %w", err))
	}
	st, err := s.converge(ctx, cur.ID, version, nil, func(string) {})
	if err == nil {
		s.removeUnusedConfigs(ctx, configs)
	}
	return st, err
}

// maxDynamicFile bounds one dynamic configuration file read back from the
// proxy's volume.
const maxDynamicFile = 16 << 20

// removedDynamic is what a file of the dynamic configuration that no
// longer configures anything holds: an empty document.
var removedDynamic = []byte("# removed by berth: configures nothing\n{}\n")

// syncDynamic makes the proxy's dynamic configuration volume hold files
// (name: content). A short-lived helper container on the manager (the task
// probe's image, with the volume mounted and no network) is created; what
// the volume holds is read through it; each file that differs, and each
// file of a removed route (emptied: the file provider reads an empty
// document as no configuration), is copied in as NAME.new; the helper then
// starts and renames each into place, atomically (Docker's archive API
// would replace a file by removing it first, and Traefik could reload in
// between). Traefik's file provider sees the renames and reloads; the
// proxy keeps running and serving.
func (s *Services) syncDynamic(ctx context.Context, files map[string][]byte) error {
	const dir = "/dynamic"
	id, err := s.createHelper(ctx, "berth-proxysync", []string{"-promote", dir}, &container.HostConfig{NetworkMode: "none",
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: ProxyDynamicVolume, Target: dir}}})
	if err != nil {
		return err
	}
	defer s.removeHelper(ctx, id)
	have, err := s.readDynamic(ctx, id, dir)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	changed := 0
	put := func(name string, data []byte) error {
		changed++
		if err := tw.WriteHeader(&tar.Header{Name: name + ".new", Mode: 0o644, Size: int64(len(data)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for name, data := range files {
		if old, ok := have[name]; !ok || !bytes.Equal(old, data) {
			if err := put(name, data); err != nil {
				return err
			}
		}
	}
	for name, old := range have {
		if _, ok := files[name]; !ok && reDynamicFile.MatchString(name) && !bytes.Equal(old, removedDynamic) {
			if err := put(name, removedDynamic); err != nil {
				return err
			}
		}
	}
	if changed == 0 {
		return nil
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := s.cli.CopyToContainer(ctx, id, dir, &buf, container.CopyToContainerOptions{}); err != nil {
		return unavailable(fmt.Errorf("stage the proxy's dynamic configuration: %w", err))
	}
	if err := s.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return unavailable(fmt.Errorf("start the proxy's configuration helper: %w", err))
	}
	if err := s.waitHelper(ctx, id, time.Minute); err != nil {
		return err
	}
	s.log.Info("proxy's dynamic configuration written", "files", changed)
	return nil
}

// readDynamic reads the dynamic configuration files in dir of container
// id, by name; staged files (NAME.new) are left out.
func (s *Services) readDynamic(ctx context.Context, id, dir string) (map[string][]byte, error) {
	rc, _, err := s.cli.CopyFromContainer(ctx, id, dir)
	if err != nil {
		return nil, unavailable(fmt.Errorf("read the proxy's dynamic configuration: %w", err))
	}
	defer rc.Close()
	have := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return have, nil
		}
		if err != nil {
			return nil, unavailable(fmt.Errorf("read the proxy's dynamic configuration: %w", err))
		}
		// Entries are "dynamic/" and "dynamic/<file>".
		d, name := path.Split(h.Name)
		if h.Typeflag != tar.TypeReg || path.Clean(d) != path.Base(dir) || h.Size > maxDynamicFile || !reDynamicFile.MatchString(name) {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, unavailable(fmt.Errorf("read the proxy's dynamic configuration: %w", err))
		}
		have[name] = b
	}
}

var reDynamicFile = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.yml$`)

// removeUnusedConfigs removes the proxy's configs the service no longer
// references (best effort: one still used by a stopping task stays until
// a later update).
func (s *Services) removeUnusedConfigs(ctx context.Context, used []*swarm.ConfigReference) {
	keep := map[string]bool{}
	for _, c := range used {
		keep[c.ConfigID] = true
	}
	list, err := s.cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelManaged+"=true"), filters.Arg("name", ProxyService+"-"))})
	if err != nil {
		return
	}
	for _, c := range list {
		if !keep[c.ID] {
			_ = s.cli.ConfigRemove(ctx, c.ID)
		}
	}
}

// ensureConfig creates the swarm config name with data unless it exists.
func (s *Services) ensureConfig(ctx context.Context, name string, data []byte) (string, error) {
	list, err := s.cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", unavailable(fmt.Errorf("list configs: %w", err))
	}
	for _, c := range list {
		if c.Spec.Name == name {
			return c.ID, nil
		}
	}
	resp, err := s.cli.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelManaged: "true"}}, Data: data})
	if err != nil {
		return "", unavailable(fmt.Errorf("create config %s: %w", name, err))
	}
	return resp.ID, nil
}

// RemoveProxy removes the proxy's service, its configs and its volumes.
func (s *Services) RemoveProxy(ctx context.Context) error {
	if err := s.cli.ServiceRemove(ctx, ProxyService); err != nil && !cerrdefs.IsNotFound(err) {
		return unavailable(fmt.Errorf("remove the proxy service: %w", err))
	}
	list, err := s.cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelManaged+"=true"), filters.Arg("name", ProxyService+"-"))})
	if err != nil {
		return unavailable(fmt.Errorf("list configs: %w", err))
	}
	for _, c := range list {
		// A config still used by a stopping task is removed by a later
		// call.
		for range 50 {
			err := s.cli.ConfigRemove(ctx, c.ID)
			if err == nil || cerrdefs.IsNotFound(err) {
				break
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	// The task's container goes a moment after the service: its volumes
	// are in use until then.
	for _, v := range []string{ProxyDataVolume, ProxyDynamicVolume} {
		for attempt := 0; ; attempt++ {
			err := s.cli.VolumeRemove(ctx, v, false)
			if err == nil || cerrdefs.IsNotFound(err) {
				break
			}
			if attempt == 100 {
				return unavailable(fmt.Errorf("remove the proxy's volume %s: %w", v, err))
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

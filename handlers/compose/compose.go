// Package compose parses and validates compose files with the Compose
// Specification's reference implementation (compose-go) and turns them into
// the domain's stacks: interpolation from the stack's env, profiles,
// depends_on with conditions, healthchecks, named volumes, networks, build
// sections and env_file (inside the repository only). A compose file is
// hostile input that can reach the host: the keys that would hand it over
// (privileged, host namespaces, devices, capabilities beyond Docker's
// defaults, bind mounts outside an allowed root, unconfined security
// profiles, host ports, …) are refused with a *domain.ValidationError naming
// the service and the key, unless the project allows them.
package compose

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"berth/domain"
)

// Config configures New.
type Config struct {
	// BindRoot, when set, is the absolute host directory under which bind
	// mounts are accepted; outside it (or without it) a bind mount needs
	// the project's "bind_mounts" allowance.
	BindRoot string
}

// Parser implements domain.ComposeParser. Safe for concurrent use.
type Parser struct {
	cfg Config
}

var _ domain.ComposeParser = (*Parser)(nil)

// New returns a Parser.
func New(cfg Config) (*Parser, error) {
	if cfg.BindRoot != "" {
		if !filepath.IsAbs(cfg.BindRoot) || filepath.Clean(cfg.BindRoot) != cfg.BindRoot || cfg.BindRoot == "/" {
			return nil, fmt.Errorf("compose: %w", domain.Invalid("bind_root", "must be a clean absolute directory other than /"))
		}
	}
	return &Parser{cfg: cfg}, nil
}

// pastedDir is the project directory of a pasted file: it does not exist,
// so nothing relative to it is ever read from the host.
const pastedDir = "/nonexistent/berth-compose"

// safeCaps are the capabilities Docker grants by default: adding them
// changes nothing.
var safeCaps = []string{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
	"NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// Parse implements domain.ComposeParser.
func (p *Parser) Parse(ctx context.Context, in domain.ComposeInput) (*domain.Stack, error) {
	if err := domain.ValidateName("app", in.App); err != nil {
		return nil, err
	}
	if len(in.File) > domain.MaxComposeFileLen {
		return nil, domain.Invalid("compose.file", fmt.Sprintf("must be at most %d bytes", domain.MaxComposeFileLen))
	}
	workDir, file := pastedDir, pastedDir+"/compose.yaml"
	if in.Dir != "" {
		if err := domain.ValidateRepoPath("compose.path", in.Path); err != nil {
			return nil, err
		}
		file = filepath.Join(in.Dir, filepath.FromSlash(in.Path))
		workDir = filepath.Dir(file)
	}
	c := &checker{p: p, in: in, workDir: workDir, allowed: in.Allowed}
	if err := c.precheck(); err != nil {
		return nil, err
	}
	env := make(map[string]string, len(in.Env))
	maps.Copy(env, in.Env)
	details := types.ConfigDetails{
		WorkingDir:  workDir,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: []byte(in.File)}},
		Environment: env,
	}
	project, err := load(ctx, details, in)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, domain.Invalid("compose.file", cleanError(err))
	}
	return c.stack(project)
}

// load runs compose-go's loader on a file. The loader panics on some
// malformed files (a key with no value where it expects one, such as
// `pid:`); a file is user input, so such a panic is its refusal, not a
// crash.
func load(ctx context.Context, details types.ConfigDetails, in domain.ComposeInput) (project *types.Project, err error) {
	defer func() {
		if r := recover(); r != nil {
			project, err = nil, fmt.Errorf("the file cannot be read as a compose file (%v)", r)
		}
	}()
	return loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(in.App, true)
		o.SkipInclude = true
		o.ResolvePaths = true
		o.Profiles = slices.Clone(in.Profiles)
		o.ResourceLoaders = nil
	})
}

// cleanError is a loader error's text without host paths of the pasted
// file's directory.
func cleanError(err error) string {
	s := strings.ReplaceAll(err.Error(), pastedDir+"/", "")
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

type checker struct {
	p       *Parser
	in      domain.ComposeInput
	workDir string
	allowed []string
}

func (c *checker) allows(key string) bool { return slices.Contains(c.allowed, key) }

// refuse is the error of a key the project does not allow.
func refuse(fieldName, allowKey, why string) error {
	return domain.Invalid(fieldName, why+`: refused unless an admin allows "`+allowKey+`" for the project`)
}

// precheck reads the raw YAML before compose-go does: what would make
// compose-go read host files (include, extends from another file, env_file
// and label_file outside the repository) is refused first.
func (c *checker) precheck() error {
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(c.in.File), &raw); err != nil {
		return domain.Invalid("compose.file", "is not YAML: "+cleanError(err))
	}
	if raw == nil {
		return domain.Invalid("compose.file", "is empty")
	}
	if _, ok := raw["include"]; ok {
		return domain.Invalid("include", "is not supported: put every service in one file")
	}
	services, _ := raw["services"].(map[string]any)
	if len(services) > domain.MaxComposeServices {
		return domain.Invalid("services", fmt.Sprintf("at most %d services", domain.MaxComposeServices))
	}
	for name, v := range services {
		svc, _ := v.(map[string]any)
		prefix := "services." + name
		if err := domain.ValidateComposeName(prefix, name); err != nil {
			return err
		}
		if ext, ok := svc["extends"].(map[string]any); ok {
			if _, ok := ext["file"]; ok {
				return domain.Invalid(prefix+".extends.file", "is not supported: extend a service of the same file")
			}
		}
		for _, key := range []string{"env_file", "label_file"} {
			paths, err := filePaths(svc[key])
			if err != nil {
				return domain.Invalid(prefix+"."+key, err.Error())
			}
			for _, fp := range paths {
				if err := c.repoFile(fp); err != nil {
					return domain.Invalid(prefix+"."+key, err.Error())
				}
			}
		}
	}
	for _, top := range []string{"secrets", "configs"} {
		if m, _ := raw[top].(map[string]any); len(m) > 0 {
			return domain.Invalid(top, "is not supported: pass values through the stack's env and secrets")
		}
	}
	return nil
}

// filePaths returns the paths of an env_file or label_file value.
func filePaths(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		var out []string
		for _, e := range x {
			switch y := e.(type) {
			case string:
				out = append(out, y)
			case map[string]any:
				s, _ := y["path"].(string)
				out = append(out, s)
			default:
				return nil, errors.New("must be paths")
			}
		}
		return out, nil
	}
	return nil, errors.New("must be a path or a list of paths")
}

// repoFile checks a file the loader will read: relative, inside the
// repository, reached without a symlink leaving it.
func (c *checker) repoFile(p string) error {
	if c.in.Dir == "" {
		return errors.New("needs a repository: a pasted file reads no files, use the stack's env")
	}
	if p == "" || strings.ContainsAny(p, "$\x00") || filepath.IsAbs(p) {
		return errors.New("must be a relative path inside the repository, without variables")
	}
	abs := filepath.Join(c.workDir, filepath.FromSlash(p))
	if !inside(c.in.Dir, abs) {
		return errors.New("must stay inside the repository")
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // compose-go reports a missing required file
		}
		return errors.New("cannot be read")
	}
	root, err := filepath.EvalSymlinks(c.in.Dir)
	if err != nil || !inside(root, real) {
		return errors.New("must stay inside the repository (a symlink leaves it)")
	}
	return nil
}

// inside reports whether p is root or below it (both clean and absolute).
func inside(root, p string) bool {
	p = filepath.Clean(p)
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/")
}

// stack checks the loaded project and turns it into the domain's stack.
func (c *checker) stack(project *types.Project) (*domain.Stack, error) {
	st := &domain.Stack{}
	for _, key := range slices.Sorted(maps.Keys(project.Networks)) {
		n := project.Networks[key]
		f := "networks." + key
		if err := domain.ValidateComposeName(f, key); err != nil {
			return nil, err
		}
		net := domain.StackNetwork{Name: ResourceName(c.in.App, key), Internal: n.Internal}
		if n.External {
			if !c.allows(domain.ComposeAllowExternal) {
				return nil, refuse(f+".external", domain.ComposeAllowExternal, "an external network joins the stack to others")
			}
			net = domain.StackNetwork{Name: n.Name, External: true}
		}
		if (n.Driver != "" && n.Driver != "bridge") || len(n.DriverOpts) > 0 {
			if !c.allows(domain.ComposeAllowVolumeOpts) {
				return nil, refuse(f+".driver_opts", domain.ComposeAllowVolumeOpts, "network drivers and driver options")
			}
		}
		st.Networks = append(st.Networks, net)
	}
	for _, key := range slices.Sorted(maps.Keys(project.Volumes)) {
		v := project.Volumes[key]
		f := "volumes." + key
		if err := domain.ValidateComposeName(f, key); err != nil {
			return nil, err
		}
		vol := domain.StackVolume{Name: ResourceName(c.in.App, key)}
		if v.External {
			if !c.allows(domain.ComposeAllowExternal) {
				return nil, refuse(f+".external", domain.ComposeAllowExternal, "an external volume shares data with others")
			}
			vol = domain.StackVolume{Name: v.Name, External: true}
		}
		if (v.Driver != "" && v.Driver != "local") || len(v.DriverOpts) > 0 {
			if !c.allows(domain.ComposeAllowVolumeOpts) {
				return nil, refuse(f+".driver_opts", domain.ComposeAllowVolumeOpts, "volume drivers and driver options can mount host paths")
			}
		}
		st.Volumes = append(st.Volumes, vol)
	}
	if len(project.Services) == 0 {
		return nil, domain.Invalid("services", "the file (with its profiles) declares no service")
	}
	completed := map[string]bool{}
	for _, s := range project.Services {
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionCompletedSuccessfully {
				completed[dep] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(project.Services)) {
		spec, err := c.service(project, project.Services[name], completed[name], st)
		if err != nil {
			return nil, err
		}
		st.Services = append(st.Services, spec)
	}
	for _, r := range c.in.Routed {
		s := st.Service(r)
		if s == nil {
			return nil, domain.Invalid("domains", "a domain routes to service "+r+", which the file (with its profiles) does not declare")
		}
		s.Routed = true
	}
	ordered, err := order(st.Services)
	if err != nil {
		return nil, err
	}
	st.Services = ordered
	return st, nil
}

// ResourceName is the name of a stack's network or volume on the target:
// "berth-<app>-<key>".
func ResourceName(app, key string) string { return "berth-" + app + "-" + key }

// service checks one service and returns its spec.
func (c *checker) service(project *types.Project, s types.ServiceConfig, oneShot bool, st *domain.Stack) (domain.ServiceSpec, error) {
	f := "services." + s.Name
	if err := domain.ValidateComposeName(f, s.Name); err != nil {
		return domain.ServiceSpec{}, err
	}
	spec := domain.ServiceSpec{
		App: c.in.App, Service: s.Name, ImageRef: s.Image,
		Command: slices.Clone([]string(s.Command)), Entrypoint: slices.Clone([]string(s.Entrypoint)),
		WorkingDir: s.WorkingDir, User: s.User, Hostname: s.Hostname,
		ReadOnly: s.ReadOnly, StopSignal: s.StopSignal, ShmSize: int64(s.ShmSize),
	}
	if s.Init != nil {
		spec.Init = *s.Init
	}
	if s.StopGracePeriod != nil {
		spec.StopGrace = time.Duration(*s.StopGracePeriod)
	}
	// Hazards.
	if s.Privileged {
		if !c.allows(domain.ComposeAllowPrivileged) {
			return spec, refuse(f+".privileged", domain.ComposeAllowPrivileged, "a privileged container owns the host")
		}
		spec.Privileged = true
	}
	if s.UseAPISocket && !c.allows(domain.ComposeAllowPrivileged) {
		return spec, refuse(f+".use_api_socket", domain.ComposeAllowPrivileged, "the Docker socket owns the host")
	}
	switch m := s.NetworkMode; {
	case m == "" || m == "bridge" || m == "default":
	case m == "none":
		spec.NetworkMode = m
	default:
		if !c.allows(domain.ComposeAllowHostNetwork) {
			return spec, refuse(f+".network_mode", domain.ComposeAllowHostNetwork, "network_mode "+m+" leaves the stack's network")
		}
		spec.NetworkMode = m
	}
	for _, ns := range []struct{ key, allow, val string }{
		{"pid", domain.ComposeAllowPID, s.Pid}, {"ipc", domain.ComposeAllowIPC, s.Ipc},
		{"uts", domain.ComposeAllowUTS, s.Uts}, {"userns_mode", domain.ComposeAllowUserNS, s.UserNSMode},
	} {
		if ns.val == "" || ns.val == "private" || (ns.key == "ipc" && (ns.val == "shareable" || ns.val == "none")) {
			continue
		}
		if !c.allows(ns.allow) {
			return spec, refuse(f+"."+ns.key, ns.allow, ns.key+" "+ns.val+" shares a namespace outside the container")
		}
	}
	spec.PidMode, spec.IpcMode = s.Pid, s.Ipc
	if len(s.Devices) > 0 || len(s.DeviceCgroupRules) > 0 || len(s.Gpus) > 0 || hasDeployDevices(s) {
		if !c.allows(domain.ComposeAllowDevices) {
			return spec, refuse(f+".devices", domain.ComposeAllowDevices, "host devices")
		}
		for _, d := range s.Devices {
			spec.Devices = append(spec.Devices, d.Source+":"+cmpOr(d.Target, d.Source)+":"+cmpOr(d.Permissions, "rwm"))
		}
	}
	for _, capName := range s.CapAdd {
		norm := strings.TrimPrefix(strings.ToUpper(capName), "CAP_")
		if !slices.Contains(safeCaps, norm) && !c.allows(domain.ComposeAllowCapAdd) {
			return spec, refuse(f+".cap_add", domain.ComposeAllowCapAdd, "capability "+norm+" is beyond Docker's defaults")
		}
		spec.CapAdd = append(spec.CapAdd, norm)
	}
	spec.CapDrop = slices.Clone(s.CapDrop)
	for _, o := range s.SecurityOpt {
		if o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true" {
			spec.SecurityOpt = append(spec.SecurityOpt, "no-new-privileges")
			continue
		}
		if !c.allows(domain.ComposeAllowSecurityOpt) {
			return spec, refuse(f+".security_opt", domain.ComposeAllowSecurityOpt, "security option "+o)
		}
		spec.SecurityOpt = append(spec.SecurityOpt, o)
	}
	if len(s.Sysctls) > 0 {
		if !c.allows(domain.ComposeAllowSysctls) {
			return spec, refuse(f+".sysctls", domain.ComposeAllowSysctls, "kernel parameters")
		}
		spec.Sysctls = maps.Clone(map[string]string(s.Sysctls))
	}
	for _, rt := range []struct{ key, val string }{{"runtime", s.Runtime}, {"cgroup_parent", s.CgroupParent}, {"isolation", s.Isolation}} {
		if rt.val != "" && !c.allows(domain.ComposeAllowRuntime) {
			return spec, refuse(f+"."+rt.key, domain.ComposeAllowRuntime, rt.key+" changes how the container is confined")
		}
	}
	if s.Cgroup == "host" && !c.allows(domain.ComposeAllowRuntime) {
		return spec, refuse(f+".cgroup", domain.ComposeAllowRuntime, "the host's cgroup namespace")
	}
	if len(s.VolumesFrom) > 0 {
		return spec, domain.Invalid(f+".volumes_from", "is not supported: share a named volume")
	}
	if len(s.ExternalLinks) > 0 && !c.allows(domain.ComposeAllowExternal) {
		return spec, refuse(f+".external_links", domain.ComposeAllowExternal, "links to containers outside the stack")
	}
	if len(s.Secrets) > 0 || len(s.Configs) > 0 {
		return spec, domain.Invalid(f+".secrets", "is not supported: pass values through the stack's env and secrets")
	}
	// Ports published on the host.
	if len(s.Ports) > 0 {
		if !c.allows(domain.ComposeAllowPorts) {
			return spec, refuse(f+".ports", domain.ComposeAllowPorts, "ports published on the host; route a domain to the service instead")
		}
		for _, pt := range s.Ports {
			spec.Ports = append(spec.Ports, domain.ServicePort{HostIP: pt.HostIP, HostPort: pt.Published, Target: int(pt.Target), Protocol: pt.Protocol})
		}
	}
	// Mounts.
	for i, v := range s.Volumes {
		vf := f + ".volumes[" + strconv.Itoa(i) + "]"
		m := domain.ServiceMount{Type: v.Type, Target: v.Target, ReadOnly: v.ReadOnly}
		if !strings.HasPrefix(v.Target, "/") || path.Clean(v.Target) != v.Target || v.Target == "/" || strings.ContainsAny(v.Target, ":\x00") {
			return spec, domain.Invalid(vf+".target", "must be a clean absolute path other than /: "+strconv.Quote(v.Target))
		}
		switch v.Type {
		case types.VolumeTypeVolume:
			if v.Source != "" {
				vol, ok := project.Volumes[v.Source]
				if !ok {
					return spec, domain.Invalid(vf+".source", "names no volume of the file")
				}
				m.Source = ResourceName(c.in.App, v.Source)
				if vol.External {
					m.Source = vol.Name
				}
			}
		case types.VolumeTypeBind:
			src := filepath.Clean(v.Source)
			ok := c.p.cfg.BindRoot != "" && filepath.IsAbs(src) && inside(c.p.cfg.BindRoot, src) && src != c.p.cfg.BindRoot
			if ok {
				// Docker follows symlinks in a bind source: one under the
				// root (made by another container of it) must not lead out.
				if real, err := filepath.EvalSymlinks(src); err == nil {
					root, rerr := filepath.EvalSymlinks(c.p.cfg.BindRoot)
					ok = rerr == nil && inside(root, real) && real != root
				}
			}
			if !ok && !c.allows(domain.ComposeAllowBindMounts) {
				where := "outside the allowed root"
				if c.p.cfg.BindRoot == "" {
					where = "(no root is allowed on this server)"
				}
				return spec, refuse(vf, domain.ComposeAllowBindMounts, "bind mount of "+strings.TrimPrefix(src, pastedDir+"/")+" "+where)
			}
			m.Source = src
		case types.VolumeTypeTmpfs:
		default:
			return spec, domain.Invalid(vf+".type", "must be volume, bind or tmpfs")
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	for _, t := range s.Tmpfs {
		target, _, _ := strings.Cut(t, ":")
		if !strings.HasPrefix(target, "/") || path.Clean(target) != target || target == "/" {
			return spec, domain.Invalid(f+".tmpfs", "must be clean absolute paths other than /")
		}
		spec.Mounts = append(spec.Mounts, domain.ServiceMount{Type: domain.MountTmpfs, Target: target})
	}
	// Environment, labels, hosts.
	spec.Env = map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			continue
		}
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(*v, 0) {
			return spec, domain.Invalid(f+".environment", "keys must not be empty or hold '=' and values no NUL")
		}
		spec.Env[k] = *v
	}
	if len(s.Labels) > 0 {
		spec.Labels = map[string]string{}
		for k, v := range s.Labels {
			if strings.HasPrefix(k, "berth.") || strings.HasPrefix(k, "com.docker.compose.") {
				return spec, domain.Invalid(f+".labels", "label "+k+" is reserved")
			}
			spec.Labels[k] = v
		}
	}
	for h, ips := range s.ExtraHosts {
		for _, ip := range ips {
			spec.ExtraHosts = append(spec.ExtraHosts, h+":"+ip)
		}
	}
	slices.Sort(spec.ExtraHosts)
	// Image or build.
	switch {
	case s.Build != nil:
		b, err := c.build(f+".build", s.Build)
		if err != nil {
			return spec, err
		}
		spec.Build = b
	case s.Image == "":
		return spec, domain.Invalid(f+".image", "is required without a build section")
	}
	if s.Image != "" {
		if err := domain.ValidateImageRef(f+".image", s.Image); err != nil {
			return spec, err
		}
	}
	switch s.PullPolicy {
	case "", types.PullPolicyMissing, types.PullPolicyIfNotPresent:
		spec.PullPolicy = domain.PullIfNotPresent
	case types.PullPolicyAlways, types.PullPolicyRefresh, "daily", "weekly":
		spec.PullPolicy = domain.PullAlways
	case types.PullPolicyNever, types.PullPolicyBuild:
		spec.PullPolicy = domain.PullNever
	default:
		return spec, domain.Invalid(f+".pull_policy", "must be always, missing, never or build")
	}
	// Health.
	if hc := s.HealthCheck; hc != nil {
		h := &domain.ServiceHealth{Test: slices.Clone([]string(hc.Test)), Disable: hc.Disable}
		if len(h.Test) > 0 && h.Test[0] == "NONE" {
			h.Disable = true
		}
		if hc.Interval != nil {
			h.Interval = time.Duration(*hc.Interval)
		}
		if hc.Timeout != nil {
			h.Timeout = time.Duration(*hc.Timeout)
		}
		if hc.StartPeriod != nil {
			h.StartPeriod = time.Duration(*hc.StartPeriod)
		}
		if hc.Retries != nil {
			h.Retries = int(min(*hc.Retries, 1000))
		}
		spec.Health = h
	}
	// Dependencies.
	for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
		d := s.DependsOn[dep]
		cond := d.Condition
		switch cond {
		case "":
			cond = domain.ConditionStarted
		case domain.ConditionStarted, domain.ConditionHealthy, domain.ConditionCompleted:
		default:
			return spec, domain.Invalid(f+".depends_on."+dep+".condition", "must be service_started, service_healthy or service_completed_successfully")
		}
		if _, ok := project.Services[dep]; !ok {
			if d.Required {
				return spec, domain.Invalid(f+".depends_on."+dep, "names no service of the file (with its profiles)")
			}
			continue
		}
		spec.DependsOn = append(spec.DependsOn, domain.ServiceDependency{Service: dep, Condition: cond, Required: d.Required})
	}
	// Networks.
	if spec.NetworkMode == "" {
		for _, key := range slices.Sorted(maps.Keys(s.Networks)) {
			n, ok := project.Networks[key]
			if !ok {
				return spec, domain.Invalid(f+".networks."+key, "names no network of the file")
			}
			name := ResourceName(c.in.App, key)
			if n.External {
				name = n.Name
			}
			spec.Networks = append(spec.Networks, name)
			if sn := s.Networks[key]; sn != nil {
				for _, a := range sn.Aliases {
					if err := domain.ValidateComposeName(f+".networks."+key+".aliases", a); err != nil {
						return spec, err
					}
					if !slices.Contains(spec.Aliases, a) {
						spec.Aliases = append(spec.Aliases, a)
					}
				}
				if sn.Ipv4Address != "" || sn.Ipv6Address != "" || sn.MacAddress != "" {
					return spec, domain.Invalid(f+".networks."+key, "fixed addresses are not supported")
				}
			}
		}
	}
	// Restart, replicas, limits.
	spec.RestartPolicy = domain.RestartUnlessStopped
	if oneShot {
		spec.RestartPolicy = domain.RestartNo
	}
	if r := s.Restart; r != "" {
		base, _, _ := strings.Cut(r, ":")
		switch base {
		case "no", "always", "on-failure", "unless-stopped":
			spec.RestartPolicy = base
		default:
			return spec, domain.Invalid(f+".restart", "must be no, always, on-failure or unless-stopped")
		}
	}
	spec.Replicas = 1
	if s.Scale != nil {
		spec.Replicas = *s.Scale
	}
	if d := s.Deploy; d != nil {
		if d.Replicas != nil {
			spec.Replicas = *d.Replicas
		}
		if l := d.Resources.Limits; l != nil {
			spec.NanoCPUs, spec.MemoryBytes = int64(float64(l.NanoCPUs)*1e9), int64(l.MemoryBytes)
		}
		dep, err := deploySection(f+".deploy", d)
		if err != nil {
			return spec, err
		}
		spec.Deploy = dep
	}
	if spec.Replicas < 0 || spec.Replicas > 20 {
		return spec, domain.Invalid(f+".deploy.replicas", "must be between 0 and 20")
	}
	if s.CPUS > 0 {
		spec.NanoCPUs = int64(float64(s.CPUS) * 1e9)
	}
	if s.MemLimit > 0 {
		spec.MemoryBytes = int64(s.MemLimit)
	}
	if spec.MemoryBytes > 0 && spec.MemoryBytes < 6<<20 {
		return spec, domain.Invalid(f+".mem_limit", "must be at least 6 MiB")
	}
	return spec, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func hasDeployDevices(s types.ServiceConfig) bool {
	if s.Deploy == nil {
		return false
	}
	r := s.Deploy.Resources
	return (r.Limits != nil && len(r.Limits.Devices) > 0) || (r.Reservations != nil && len(r.Reservations.Devices) > 0)
}

// build checks a build section: a context inside the repository, no
// secrets, no ssh, no extra contexts, no host network, not privileged.
func (c *checker) build(f string, b *types.BuildConfig) (*domain.ServiceBuild, error) {
	if c.in.Dir == "" {
		return nil, domain.Invalid(f, "needs a repository: a pasted file can only run images")
	}
	switch {
	case b.DockerfileInline != "":
		return nil, domain.Invalid(f+".dockerfile_inline", "is not supported: commit the Dockerfile")
	case len(b.AdditionalContexts) > 0:
		return nil, domain.Invalid(f+".additional_contexts", "is not supported")
	case len(b.SSH) > 0:
		return nil, domain.Invalid(f+".ssh", "is not supported")
	case len(b.Secrets) > 0:
		return nil, domain.Invalid(f+".secrets", "is not supported")
	case len(b.Entitlements) > 0 || b.Privileged:
		if !c.allows(domain.ComposeAllowPrivileged) {
			return nil, refuse(f+".privileged", domain.ComposeAllowPrivileged, "a privileged build")
		}
	case b.Network != "" && b.Network != "default" && b.Network != "none":
		if !c.allows(domain.ComposeAllowHostNetwork) {
			return nil, refuse(f+".network", domain.ComposeAllowHostNetwork, "a build on network "+b.Network)
		}
	}
	ctxDir := b.Context
	if !filepath.IsAbs(ctxDir) {
		ctxDir = filepath.Join(c.workDir, ctxDir)
	}
	if strings.Contains(b.Context, "://") || strings.HasPrefix(b.Context, "git@") || !inside(c.in.Dir, ctxDir) {
		return nil, domain.Invalid(f+".context", "must be a directory inside the repository")
	}
	rel, err := filepath.Rel(c.in.Dir, ctxDir)
	if err != nil {
		return nil, domain.Invalid(f+".context", "must be a directory inside the repository")
	}
	rel = filepath.ToSlash(rel)
	df := cmpOr(b.Dockerfile, "Dockerfile")
	if path.IsAbs(df) {
		return nil, domain.Invalid(f+".dockerfile", "must be a path inside the build context")
	}
	dfRel := path.Clean(path.Join(rel, df))
	if err := domain.ValidateRepoPath(f+".dockerfile", dfRel); err != nil {
		return nil, err
	}
	if err := domain.ValidateRepoPath(f+".context", rel); err != nil {
		return nil, err
	}
	out := &domain.ServiceBuild{Context: rel, Dockerfile: dfRel, Target: b.Target}
	for k, v := range b.Args {
		if v == nil {
			continue
		}
		if out.Args == nil {
			out.Args = map[string]string{}
		}
		out.Args[k] = *v
	}
	return out, nil
}

// order sorts services so that every dependency comes before its
// dependents (names in order among equals).
func order(services []domain.ServiceSpec) ([]domain.ServiceSpec, error) {
	byName := map[string]domain.ServiceSpec{}
	for _, s := range services {
		byName[s.Service] = s
	}
	var out []domain.ServiceSpec
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return domain.Invalid("services."+name+".depends_on", "forms a cycle: "+strings.Join(append(chain, name), " → "))
		}
		state[name] = 1
		for _, d := range byName[name].DependsOn {
			if _, ok := byName[d.Service]; ok {
				if err := visit(d.Service, append(chain, name)); err != nil {
					return err
				}
			}
		}
		state[name] = 2
		out = append(out, byName[name])
		return nil
	}
	for _, s := range services {
		if err := visit(s.Service, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// deploySection maps the `deploy:` section a Swarm runtime honours.
func deploySection(f string, d *types.DeployConfig) (*domain.ServiceDeploy, error) {
	out := &domain.ServiceDeploy{Mode: d.Mode, Constraints: slices.Clone(d.Placement.Constraints), MaxReplicasPerNode: int(min(d.Placement.MaxReplicas, 1000))}
	switch d.Mode {
	case "", "replicated", "global":
	default:
		return nil, domain.Invalid(f+".mode", "must be replicated or global")
	}
	switch d.EndpointMode {
	case "", "vip":
	case "dnsrr":
		out.EndpointModeDNSRR = true
	default:
		return nil, domain.Invalid(f+".endpoint_mode", "must be vip or dnsrr")
	}
	if u := d.UpdateConfig; u != nil {
		out.UpdateOrder, out.FailureAction, out.UpdateDelay = u.Order, u.FailureAction, time.Duration(u.Delay)
		if u.Parallelism != nil {
			out.UpdateParallelism = int(min(*u.Parallelism, 1000))
		}
		switch u.Order {
		case "", "start-first", "stop-first":
		default:
			return nil, domain.Invalid(f+".update_config.order", "must be start-first or stop-first")
		}
		switch u.FailureAction {
		case "", "pause", "continue", "rollback":
		default:
			return nil, domain.Invalid(f+".update_config.failure_action", "must be pause, continue or rollback")
		}
	}
	if r := d.RestartPolicy; r != nil {
		out.RestartCondition = r.Condition
		if r.MaxAttempts != nil {
			out.RestartMaxAttempts = int(min(*r.MaxAttempts, 1000))
		}
		switch r.Condition {
		case "", "none", "on-failure", "any":
		default:
			return nil, domain.Invalid(f+".restart_policy.condition", "must be none, on-failure or any")
		}
	}
	if rs := d.Resources.Reservations; rs != nil {
		out.ReservedNanoCPUs, out.ReservedMemoryBytes = int64(float64(rs.NanoCPUs)*1e9), int64(rs.MemoryBytes)
	}
	for i, c := range out.Constraints {
		if strings.ContainsAny(c, "\x00\n") || len(c) > 256 {
			return nil, domain.Invalid(f+".placement.constraints["+strconv.Itoa(i)+"]", "must be one line of at most 256 bytes")
		}
	}
	return out, nil
}

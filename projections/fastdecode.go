package projections

import (
	"encoding/base64"
	"strconv"

	"berth/domain"
)

// A rebuild decodes every payload of the log, and encoding/json's
// reflection was most of the fold's CPU. decodeFast decodes the payloads of
// the most frequent event types (the steps of deployments, the domains and
// the stops and starts of applications) and the metadata of requested
// deployments by hand. It gives up, and the caller falls back to
// encoding/json, on anything but the plain shape the domain's structs
// marshal to: a key that is not exactly one of the struct's, a null, an
// escape or a non-ASCII byte in a string, a number that is not a plain
// integer. Whatever it does decode is therefore what encoding/json would
// have decoded.

// jsonScanner reads one JSON value from b. bad is set at the first thing
// it does not handle; every later read fails.
type jsonScanner struct {
	b   []byte
	i   int
	bad bool
}

func (s *jsonScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c, after white space.
func (s *jsonScanner) byte(c byte) bool {
	s.space()
	if s.bad || s.i >= len(s.b) || s.b[s.i] != c {
		s.bad = true
		return false
	}
	s.i++
	return true
}

// open consumes the '{' of an object.
func (s *jsonScanner) open() bool { return s.byte('{') }

// fields reads an object, calling field with each key once its colon is
// consumed; field reads the value and returns false for a key it does not
// know, which gives up on the payload.
func (s *jsonScanner) fields(field func(k []byte) bool) {
	s.open()
	for first := true; ; first = false {
		k, more := s.member(first)
		if !more {
			return
		}
		if !field(k) {
			s.bad = true
			return
		}
	}
}

// member consumes the separator before an object's next member and its
// key and colon, and returns the key; ok is false at the object's end
// ('}' consumed) or when s went bad. first is true for the first call on
// an object.
func (s *jsonScanner) member(first bool) (key []byte, ok bool) {
	s.space()
	if s.bad || s.i >= len(s.b) {
		s.bad = true
		return nil, false
	}
	if s.b[s.i] == '}' {
		s.i++
		return nil, false
	}
	if !first && !s.byte(',') {
		return nil, false
	}
	key = s.plain()
	if s.bad || !s.byte(':') {
		s.bad = true
		return nil, false
	}
	return key, true
}

// plain reads a string without escapes and with printable ASCII only.
func (s *jsonScanner) plain() []byte {
	if !s.byte('"') {
		return nil
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1]
		case c < 0x20 || c >= 0x80 || c == '\\':
			s.bad = true
			return nil
		}
		s.i++
	}
	s.bad = true
	return nil
}

func (s *jsonScanner) str(dst *string) {
	if b := s.plain(); !s.bad {
		*dst = string(b)
	}
}

// int64 reads an integer: an optional minus and digits without a leading
// zero, neither fraction nor exponent.
func (s *jsonScanner) int64(dst *int64) {
	s.space()
	if s.bad {
		return
	}
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || (s.b[digits] == '0' && s.i-digits > 1) {
		s.bad = true
		return
	}
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			s.bad = true
			return
		}
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		s.bad = true
		return
	}
	*dst = v
}

func (s *jsonScanner) int(dst *int) {
	var v int64
	s.int64(&v)
	if !s.bad {
		*dst = int(v)
	}
}

func (s *jsonScanner) bool(dst *bool) {
	s.space()
	switch {
	case s.bad:
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		*dst = true
		s.i += 4
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		*dst = false
		s.i += 5
	default:
		s.bad = true
	}
}

// end reports whether all went well and only white space follows.
func (s *jsonScanner) end() bool {
	s.space()
	return !s.bad && s.i == len(s.b)
}

// decodeFast decodes e's payload when it is of a type and shape decodeFast
// handles (see above); ok is false otherwise.
func decodeFast(e domain.RecordedEvent) (data any, ok bool) {
	s := &jsonScanner{b: e.Data}
	switch e.Type {
	case domain.EventDeploymentRequested:
		var v domain.DeploymentRequested
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "app_version":
				s.int64(&v.AppVersion)
			case "trigger":
				s.trigger(&v.Trigger)
			case "ref":
				s.str(&v.Ref)
			case "rollback_of":
				s.str(&v.RollbackOf)
			case "image_id":
				s.str(&v.ImageID)
			case "retry_of":
				s.str(&v.RetryOf)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentQueued:
		var v domain.DeploymentQueued
		s.fields(func(k []byte) bool {
			return s.deploymentKey(k, &v.DeploymentID, &v.App)
		})
		return v, s.end()
	case domain.EventDeploymentStarted:
		var v domain.DeploymentStarted
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "worker":
				s.str(&v.Worker)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentSourceFetched:
		var v domain.DeploymentSourceFetched
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "commit_sha":
				s.str(&v.CommitSHA)
			case "ref":
				s.str(&v.Ref)
			case "image_digest":
				s.str(&v.ImageDigest)
			case "duration_ms":
				s.int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentImageBuilt:
		var v domain.DeploymentImageBuilt
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "image_id":
				s.str(&v.ImageID)
			case "duration_ms":
				s.int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentContainerStarted:
		var v domain.DeploymentContainerStarted
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "container_id":
				s.str(&v.ContainerID)
			case "container_name":
				s.str(&v.ContainerName)
			case "duration_ms":
				s.int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentHealthPassed:
		var v domain.DeploymentHealthPassed
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "duration_ms":
				s.int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentTrafficSwitched:
		var v domain.DeploymentTrafficSwitched
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "container_id":
				s.str(&v.ContainerID)
			case "upstream_host":
				s.str(&v.UpstreamHost)
			case "upstream_port":
				s.int(&v.UpstreamPort)
			case "duration_ms":
				s.int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentPreviousStopped:
		var v domain.DeploymentPreviousStopped
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "previous_deployment_id":
				s.str(&v.PreviousDeploymentID)
			case "previous_container_id":
				s.str(&v.PreviousContainerID)
			case "duration_ms":
				s.int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentSucceeded:
		var v domain.DeploymentSucceeded
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "image_id":
				s.str(&v.ImageID)
			case "container_id":
				s.str(&v.ContainerID)
			case "duration_ms":
				s.int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App) || s.logSummaryKey(k, &v.LogSummary)
			}
			return true
		})
		return v, s.end()
	case domain.EventDeploymentCancelled:
		var v domain.DeploymentCancelled
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "step":
				s.str(&v.Step)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App) || s.logSummaryKey(k, &v.LogSummary)
			}
			return true
		})
		return v, s.end()
	case domain.EventAppUpdated:
		var v domain.AppUpdated
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "app":
				s.str(&v.App)
			case "source":
				s.source(&v.Source)
			case "build":
				s.build(&v.Build)
			case "runtime":
				s.runtime(&v.Runtime)
			case "changed":
				v.Changed = array(s, (*jsonScanner).str)
			default:
				return false
			}
			return true
		})
		return v, s.end()
	case domain.EventAppEnvSet:
		var v domain.AppEnvSet
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "app":
				s.str(&v.App)
			case "env":
				v.Env = array(s, (*jsonScanner).envVar)
			default:
				return false
			}
			return true
		})
		return v, s.end()
	case domain.EventAppDomainAdded:
		var v domain.AppDomainAdded
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "app":
				s.str(&v.App)
			case "route":
				s.route(&v.Route)
			default:
				return false
			}
			return true
		})
		return v, s.end()
	case domain.EventAppDomainRemoved:
		var v domain.AppDomainRemoved
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "app":
				s.str(&v.App)
			case "host":
				s.str(&v.Host)
			default:
				return false
			}
			return true
		})
		return v, s.end()
	case domain.EventAppStopRequested:
		var v domain.AppStopRequested
		s.appOnly(&v.App)
		return v, s.end()
	case domain.EventAppStartRequested:
		var v domain.AppStartRequested
		s.appOnly(&v.App)
		return v, s.end()
	case domain.EventAppStopped:
		var v domain.AppStopped
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "app":
				s.str(&v.App)
			case "container_id":
				s.str(&v.ContainerID)
			default:
				return false
			}
			return true
		})
		return v, s.end()
	case domain.EventAppStarted:
		var v domain.AppStarted
		s.fields(func(k []byte) bool {
			switch string(k) {
			case "app":
				s.str(&v.App)
			case "container_id":
				s.str(&v.ContainerID)
			case "upstream_host":
				s.str(&v.UpstreamHost)
			default:
				return false
			}
			return true
		})
		return v, s.end()
	}
	return nil, false
}

// deploymentKey reads the value of the keys every deployment event has and
// reports whether k was one of them.
func (s *jsonScanner) deploymentKey(k []byte, id, app *string) bool {
	switch string(k) {
	case "deployment_id":
		s.str(id)
	case "app":
		s.str(app)
	default:
		return false
	}
	return true
}

// appOnly reads an object whose only key is "app".
func (s *jsonScanner) appOnly(app *string) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "app":
			s.str(app)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) logSummaryKey(k []byte, l *domain.LogSummary) bool {
	switch string(k) {
	case "log_lines":
		s.int64(&l.LogLines)
	case "log_digest":
		s.str(&l.LogDigest)
	default:
		return false
	}
	return true
}

func (s *jsonScanner) trigger(t *domain.Trigger) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "kind":
			s.str(&t.Kind)
		case "detail":
			s.str(&t.Detail)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) route(r *domain.Route) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "host":
			s.str(&r.Host)
		case "path_prefix":
			s.str(&r.PathPrefix)
		case "https":
			s.bool(&r.HTTPS)
		case "port":
			s.int(&r.Port)
		default:
			return false
		}
		return true
	})
}

// array reads a JSON array into a fresh slice with elem, as encoding/json
// does into a nil slice: [] gives an empty slice, not nil.
func array[T any](s *jsonScanner, elem func(*jsonScanner, *T)) []T {
	if !s.byte('[') {
		return nil
	}
	out := make([]T, 0, 4)
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return out
	}
	for !s.bad {
		// Decoding into the slice's own element, not a local that elem's
		// pointer would move to the heap, saves an allocation an element.
		var zero T
		out = append(out, zero)
		elem(s, &out[len(out)-1])
		s.space()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return out
		}
		s.byte(',')
	}
	return nil
}

// bytes reads base64 into *dst, as encoding/json decodes a []byte.
func (s *jsonScanner) bytes(dst *[]byte) {
	b := s.plain()
	if s.bad {
		return
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Decode(out, b)
	if err != nil {
		s.bad = true
		return
	}
	*dst = out[:n]
}

func (s *jsonScanner) envVar(v *domain.EnvVar) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "key":
			s.str(&v.Key)
		case "value":
			s.str(&v.Value)
		case "secret":
			s.bool(&v.Secret)
		case "sealed":
			s.bytes(&v.Sealed)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) source(v *domain.Source) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "git_url":
			s.str(&v.GitURL)
		case "git_ref":
			s.str(&v.GitRef)
		case "image":
			s.str(&v.Image)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) build(v *domain.Build) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "dockerfile":
			s.str(&v.Dockerfile)
		case "context":
			s.str(&v.Context)
		case "target":
			s.str(&v.Target)
		case "args":
			v.Args = array(s, (*jsonScanner).buildArg)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) buildArg(v *domain.BuildArg) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "key":
			s.str(&v.Key)
		case "value":
			s.str(&v.Value)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) runtime(v *domain.Runtime) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "port":
			s.int(&v.Port)
		case "volumes":
			v.Volumes = array(s, (*jsonScanner).volume)
		case "resources":
			s.resources(&v.Resources)
		case "replicas":
			s.int(&v.Replicas)
		case "health_check":
			s.healthCheck(&v.HealthCheck)
		case "restart_policy":
			s.str(&v.RestartPolicy)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) volume(v *domain.Volume) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "name":
			s.str(&v.Name)
		case "path":
			s.str(&v.Path)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) resources(v *domain.Resources) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "cpu_millis":
			s.int64(&v.CPUMillis)
		case "memory_bytes":
			s.int64(&v.MemoryBytes)
		default:
			return false
		}
		return true
	})
}

func (s *jsonScanner) healthCheck(v *domain.HealthCheck) {
	s.fields(func(k []byte) bool {
		switch string(k) {
		case "path":
			s.str(&v.Path)
		case "timeout_seconds":
			s.int(&v.TimeoutSeconds)
		default:
			return false
		}
		return true
	})
}

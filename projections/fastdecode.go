package projections

import (
	"encoding/base64"

	"berth/domain"
	"berth/internal/jsonscan"
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

// scanner is a jsonscan.Scanner with the readers of the domain's values.
type scanner struct{ jsonscan.Scanner }

// str reads a string of printable ASCII without escapes into *dst.
func (s *scanner) str(dst *string) {
	if b := s.ASCII(); !s.Bad() {
		*dst = string(b)
	}
}

// decodeFast decodes e's payload when it is of a type and shape decodeFast
// handles (see above); ok is false otherwise.
func decodeFast(e domain.RecordedEvent) (data any, ok bool) {
	s := &scanner{jsonscan.New(e.Data)}
	switch e.Type {
	case domain.EventDeploymentRequested:
		var v domain.DeploymentRequested
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "app_version":
				s.Int64(&v.AppVersion)
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
		return v, s.End()
	case domain.EventDeploymentQueued:
		var v domain.DeploymentQueued
		s.Fields(func(k []byte) bool {
			return s.deploymentKey(k, &v.DeploymentID, &v.App)
		})
		return v, s.End()
	case domain.EventDeploymentStarted:
		var v domain.DeploymentStarted
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "worker":
				s.str(&v.Worker)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentSourceFetched:
		var v domain.DeploymentSourceFetched
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "commit_sha":
				s.str(&v.CommitSHA)
			case "ref":
				s.str(&v.Ref)
			case "image_digest":
				s.str(&v.ImageDigest)
			case "duration_ms":
				s.Int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentImageBuilt:
		var v domain.DeploymentImageBuilt
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "image_id":
				s.str(&v.ImageID)
			case "duration_ms":
				s.Int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentContainerStarted:
		var v domain.DeploymentContainerStarted
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "container_id":
				s.str(&v.ContainerID)
			case "container_name":
				s.str(&v.ContainerName)
			case "duration_ms":
				s.Int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentHealthPassed:
		var v domain.DeploymentHealthPassed
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "duration_ms":
				s.Int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentTrafficSwitched:
		var v domain.DeploymentTrafficSwitched
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "container_id":
				s.str(&v.ContainerID)
			case "upstream_host":
				s.str(&v.UpstreamHost)
			case "upstream_port":
				s.Int(&v.UpstreamPort)
			case "duration_ms":
				s.Int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentPreviousStopped:
		var v domain.DeploymentPreviousStopped
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "previous_deployment_id":
				s.str(&v.PreviousDeploymentID)
			case "previous_container_id":
				s.str(&v.PreviousContainerID)
			case "duration_ms":
				s.Int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentSucceeded:
		var v domain.DeploymentSucceeded
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "image_id":
				s.str(&v.ImageID)
			case "container_id":
				s.str(&v.ContainerID)
			case "duration_ms":
				s.Int64(&v.DurationMS)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App) || s.logSummaryKey(k, &v.LogSummary)
			}
			return true
		})
		return v, s.End()
	case domain.EventDeploymentCancelled:
		var v domain.DeploymentCancelled
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "step":
				s.str(&v.Step)
			default:
				return s.deploymentKey(k, &v.DeploymentID, &v.App) || s.logSummaryKey(k, &v.LogSummary)
			}
			return true
		})
		return v, s.End()
	case domain.EventAppUpdated:
		var v domain.AppUpdated
		s.Fields(func(k []byte) bool {
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
				v.Changed = array(s, (*scanner).str)
			default:
				return false
			}
			return true
		})
		return v, s.End()
	case domain.EventAppEnvSet:
		var v domain.AppEnvSet
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "app":
				s.str(&v.App)
			case "env":
				v.Env = array(s, (*scanner).envVar)
			default:
				return false
			}
			return true
		})
		return v, s.End()
	case domain.EventAppDomainAdded:
		var v domain.AppDomainAdded
		s.Fields(func(k []byte) bool {
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
		return v, s.End()
	case domain.EventAppDomainRemoved:
		var v domain.AppDomainRemoved
		s.Fields(func(k []byte) bool {
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
		return v, s.End()
	case domain.EventAppStopRequested:
		var v domain.AppStopRequested
		s.appOnly(&v.App)
		return v, s.End()
	case domain.EventAppStartRequested:
		var v domain.AppStartRequested
		s.appOnly(&v.App)
		return v, s.End()
	case domain.EventAppStopped:
		var v domain.AppStopped
		s.Fields(func(k []byte) bool {
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
		return v, s.End()
	case domain.EventAppStarted:
		var v domain.AppStarted
		s.Fields(func(k []byte) bool {
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
		return v, s.End()
	}
	return nil, false
}

// deploymentKey reads the value of the keys every deployment event has and
// reports whether k was one of them.
func (s *scanner) deploymentKey(k []byte, id, app *string) bool {
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
func (s *scanner) appOnly(app *string) {
	s.Fields(func(k []byte) bool {
		switch string(k) {
		case "app":
			s.str(app)
		default:
			return false
		}
		return true
	})
}

func (s *scanner) logSummaryKey(k []byte, l *domain.LogSummary) bool {
	switch string(k) {
	case "log_lines":
		s.Int64(&l.LogLines)
	case "log_digest":
		s.str(&l.LogDigest)
	default:
		return false
	}
	return true
}

func (s *scanner) trigger(t *domain.Trigger) {
	s.Fields(func(k []byte) bool {
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

func (s *scanner) route(r *domain.Route) {
	s.Fields(func(k []byte) bool {
		switch string(k) {
		case "host":
			s.str(&r.Host)
		case "path_prefix":
			s.str(&r.PathPrefix)
		case "https":
			s.Bool(&r.HTTPS)
		case "port":
			s.Int(&r.Port)
		default:
			return false
		}
		return true
	})
}

// array reads a JSON array into a fresh slice with elem, as encoding/json
// does into a nil slice: [] gives an empty slice, not nil.
func array[T any](s *scanner, elem func(*scanner, *T)) []T {
	if !s.Byte('[') {
		return nil
	}
	out := make([]T, 0, 4)
	if s.Accept(']') {
		return out
	}
	for !s.Bad() {
		// Decoding into the slice's own element, not a local that elem's
		// pointer would move to the heap, saves an allocation an element.
		var zero T
		out = append(out, zero)
		elem(s, &out[len(out)-1])
		if s.Accept(']') {
			return out
		}
		s.Byte(',')
	}
	return nil
}

// bytes reads base64 into *dst, as encoding/json decodes a []byte.
func (s *scanner) bytes(dst *[]byte) {
	b := s.ASCII()
	if s.Bad() {
		return
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Decode(out, b)
	if err != nil {
		s.Fail()
		return
	}
	*dst = out[:n]
}

func (s *scanner) envVar(v *domain.EnvVar) {
	s.Fields(func(k []byte) bool {
		switch string(k) {
		case "key":
			s.str(&v.Key)
		case "value":
			s.str(&v.Value)
		case "secret":
			s.Bool(&v.Secret)
		case "sealed":
			s.bytes(&v.Sealed)
		default:
			return false
		}
		return true
	})
}

func (s *scanner) source(v *domain.Source) {
	s.Fields(func(k []byte) bool {
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

func (s *scanner) build(v *domain.Build) {
	s.Fields(func(k []byte) bool {
		switch string(k) {
		case "dockerfile":
			s.str(&v.Dockerfile)
		case "context":
			s.str(&v.Context)
		case "target":
			s.str(&v.Target)
		case "args":
			v.Args = array(s, (*scanner).buildArg)
		case "keep_images":
			s.Int(&v.KeepImages)
		default:
			return false
		}
		return true
	})
}

func (s *scanner) buildArg(v *domain.BuildArg) {
	s.Fields(func(k []byte) bool {
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

func (s *scanner) runtime(v *domain.Runtime) {
	s.Fields(func(k []byte) bool {
		switch string(k) {
		case "port":
			s.Int(&v.Port)
		case "volumes":
			v.Volumes = array(s, (*scanner).volume)
		case "resources":
			s.resources(&v.Resources)
		case "replicas":
			s.Int(&v.Replicas)
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

func (s *scanner) volume(v *domain.Volume) {
	s.Fields(func(k []byte) bool {
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

func (s *scanner) resources(v *domain.Resources) {
	s.Fields(func(k []byte) bool {
		switch string(k) {
		case "cpu_millis":
			s.Int64(&v.CPUMillis)
		case "memory_bytes":
			s.Int64(&v.MemoryBytes)
		default:
			return false
		}
		return true
	})
}

func (s *scanner) healthCheck(v *domain.HealthCheck) {
	s.Fields(func(k []byte) bool {
		switch string(k) {
		case "path":
			s.str(&v.Path)
		case "timeout_seconds":
			s.Int(&v.TimeoutSeconds)
		default:
			return false
		}
		return true
	})
}

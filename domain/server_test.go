package domain_test

import (
	"errors"
	"testing"
	"time"

	"berth/domain"
	"berth/internal/testcert"
)

const testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host"

func TestParseServerURL(t *testing.T) {
	for _, tc := range []struct {
		in         string
		kind, user string
		host       string
		port       int
		bad        bool
	}{
		{in: "ssh://deploy@example.com", kind: domain.ServerSSH, user: "deploy", host: "example.com", port: 22},
		{in: "ssh://root@10.231.7.2:2222", kind: domain.ServerSSH, user: "root", host: "10.231.7.2", port: 2222},
		{in: "tcp://10.231.7.2:2376", kind: domain.ServerTCP, host: "10.231.7.2", port: 2376},
		{in: "tcp://Docker.Example.com:2376", kind: domain.ServerTCP, host: "docker.example.com", port: 2376},
		{in: "", bad: true},
		{in: "ssh://example.com", bad: true},
		{in: "ssh://u:pw@example.com", bad: true},
		{in: "ssh://-oProxyCommand=x@example.com", bad: true},
		{in: "ssh://u@example.com/path", bad: true},
		{in: "ssh://u@exa mple.com", bad: true},
		{in: "tcp://example.com", bad: true},
		{in: "tcp://u@example.com:2376", bad: true},
		{in: "tcp://example.com:99999", bad: true},
		{in: "http://example.com:80", bad: true},
		{in: "unix:///var/run/docker.sock", bad: true},
		{in: "ssh://u@exa$mple.com", bad: true},
		{in: "tcp://example.com:2376?x=1", bad: true},
	} {
		kind, user, host, port, err := domain.ParseServerURL("url", tc.in)
		if tc.bad {
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || ve.Field != "url" {
				t.Errorf("%q: got %v, want a validation error naming url", tc.in, err)
			}
			continue
		}
		if err != nil || kind != tc.kind || user != tc.user || host != tc.host || port != tc.port {
			t.Errorf("%q: got %s %s %s %d %v, want %s %s %s %d", tc.in, kind, user, host, port, err, tc.kind, tc.user, tc.host, tc.port)
		}
	}
}

func TestValidateSSHHostKey(t *testing.T) {
	got, err := domain.ValidateSSHHostKey("host_key", testHostKey)
	if err != nil || got != testHostKey[:len(testHostKey)-len(" host")] {
		t.Errorf("got %q %v, want the key without comment", got, err)
	}
	for _, bad := range []string{"", "ssh-ed25519", "ssh-dss AAAAB3NzaC1kc3M=", "ssh-ed25519 !!!", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"} {
		if _, err := domain.ValidateSSHHostKey("host_key", bad); err == nil {
			t.Errorf("%q: got nil, want an error", bad)
		}
	}
}

func mustTLSSpec(t *testing.T) domain.ServerSpec {
	ca := testcert.MustCA(t, "ca")
	c := ca.MustClient(t, time.Hour, "berth")
	return domain.ServerSpec{Name: "edge", URL: "tcp://10.231.7.2:2376", CAPEM: string(ca.PEM), CertPEM: string(c.CertPEM), Key: string(c.KeyPEM)}
}

func TestServerSpecValidate(t *testing.T) {
	good := mustTLSSpec(t)
	if _, err := good.Validate(); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	sshKey := "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
	for _, tc := range []struct {
		field string
		mod   func(*domain.ServerSpec)
	}{
		{"name", func(s *domain.ServerSpec) { s.Name = "Bad Name" }},
		{"name", func(s *domain.ServerSpec) { s.Name = "local" }},
		{"url", func(s *domain.ServerSpec) { s.URL = "tcp://x" }},
		{"ca_pem", func(s *domain.ServerSpec) { s.CAPEM = "nope" }},
		{"cert_pem", func(s *domain.ServerSpec) {
			s.CertPEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		}},
		{"key", func(s *domain.ServerSpec) { s.Key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" }},
		{"key", func(s *domain.ServerSpec) { s.Key = "" }},
		{"host_key", func(s *domain.ServerSpec) { s.HostKey = testHostKey }},
		{"concurrency", func(s *domain.ServerSpec) { s.Concurrency = 99 }},
		{"ca_pem", func(s *domain.ServerSpec) { s.URL, s.Key = "ssh://u@h", sshKey }},
		{"host_key", func(s *domain.ServerSpec) {
			s.URL, s.Key, s.CAPEM, s.CertPEM, s.HostKey = "ssh://u@h", sshKey, "", "", "ssh-ed25519 AAAA"
		}},
	} {
		s := good
		tc.mod(&s)
		_, err := s.Validate()
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("got %v, want a validation error naming %s", err, tc.field)
		}
	}
}

func (h *history) server(tb testing.TB, id string) *domain.Server {
	tb.Helper()
	s, err := domain.LoadServer(id, h.streams[domain.ServerStream(id)])
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func (h *history) serverName(tb testing.TB, name string) *domain.ServerName {
	tb.Helper()
	n, err := domain.LoadServerName(name, h.streams[domain.ServerNameStream(name)])
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestServerLifecycle(t *testing.T) {
	h := newHistory()
	must := MustDecide(t)
	spec := mustTLSSpec(t)
	h.record(t, must(domain.AddServer("s1", spec, []byte("sealed"), h.serverName(t, "edge"))))
	s := h.server(t, "s1")
	if !s.Exists() || s.Name() != "edge" || s.Kind() != domain.ServerTCP || s.State() != domain.ServerStateVerifying || s.Concurrency() != 1 {
		t.Fatalf("got %+v, want a verifying tcp server edge", s)
	}
	if _, err := domain.AddServer("s2", spec, nil, h.serverName(t, "edge")); !errors.Is(err, domain.ErrServerNameTaken) {
		t.Errorf("second edge: got %v, want ErrServerNameTaken", err)
	}
	// Reachability: only changes are recorded unless forced.
	facts := domain.ServerFacts{EngineVersion: "28.0", CPUs: 2, MemoryBytes: 1 << 30}
	h.record(t, must(h.server(t, "s1").RecordVerified(facts, "", false)))
	if got := h.server(t, "s1"); got.State() != domain.ServerStateReachable || got.Facts() != facts {
		t.Errorf("got %s %+v, want reachable with facts", got.State(), got.Facts())
	}
	if ev := must(h.server(t, "s1").RecordVerified(facts, "", false)); len(ev) != 0 {
		t.Errorf("verified again: got %d events, want 0", len(ev))
	}
	h.record(t, must(h.server(t, "s1").RecordUnreachable("connection refused", false)))
	if ev := must(h.server(t, "s1").RecordUnreachable("connection refused", false)); len(ev) != 0 {
		t.Errorf("unreachable again: got %d events, want 0", len(ev))
	}
	if got := h.server(t, "s1"); got.State() != domain.ServerStateUnreachable || got.Reason() != "connection refused" {
		t.Errorf("got %s %q, want unreachable", got.State(), got.Reason())
	}
	// Rename: the old name is free, the new one taken.
	h.record(t, must(h.server(t, "s1").Rename("edge2", h.serverName(t, "edge2"))))
	if h.serverName(t, "edge").Owner() != "" || h.serverName(t, "edge2").Owner() != "s1" || h.server(t, "s1").Name() != "edge2" {
		t.Errorf("rename: got edge owned by %q, edge2 by %q", h.serverName(t, "edge").Owner(), h.serverName(t, "edge2").Owner())
	}
	if _, err := h.server(t, "local").Rename("x", h.serverName(t, "x")); !errors.Is(err, domain.ErrLocalServer) {
		t.Errorf("rename local: got %v, want ErrLocalServer", err)
	}
	if _, err := h.server(t, "s1").Rename("local", h.serverName(t, "local")); !errors.Is(err, domain.ErrServerNameTaken) {
		t.Errorf("rename to local: got %v, want ErrServerNameTaken", err)
	}
	// Concurrency.
	h.record(t, must(h.server(t, "s1").SetConcurrency(3)))
	if got := h.server(t, "s1").Concurrency(); got != 3 {
		t.Errorf("got concurrency %d, want 3", got)
	}
	if _, err := h.server(t, "s1").SetConcurrency(0); err == nil {
		t.Error("concurrency 0: got nil, want an error")
	}
	// Placement blocks removal.
	h.record(t, must(h.server(t, "s1").Place("web")))
	if _, err := h.server(t, "s1").Remove(); !errors.Is(err, domain.ErrServerInUse) {
		t.Errorf("remove in use: got %v, want ErrServerInUse", err)
	}
	h.record(t, h.server(t, "s1").Release("web"))
	// So does a managed database.
	h.record(t, must(h.server(t, "s1").PlaceDatabase("orders")))
	if got := h.server(t, "s1").Databases(); len(got) != 1 || got[0] != "orders" {
		t.Errorf("databases: got %v, want [orders]", got)
	}
	if _, err := h.server(t, "s1").Remove(); !errors.Is(err, domain.ErrServerInUse) {
		t.Errorf("remove with a database: got %v, want ErrServerInUse", err)
	}
	h.record(t, h.server(t, "s1").ReleaseDatabase("orders"))
	h.record(t, must(h.server(t, "s1").Remove()))
	if h.server(t, "s1").Exists() || h.serverName(t, "edge2").Owner() != "" {
		t.Error("removed server still exists or holds its name")
	}
	if _, err := h.server(t, "s1").Place("web"); !errors.Is(err, domain.ErrServerNotFound) {
		t.Errorf("place on removed: got %v, want ErrServerNotFound", err)
	}
}

func TestServerTrustOnFirstVerify(t *testing.T) {
	h := newHistory()
	must := MustDecide(t)
	spec := domain.ServerSpec{Name: "box", URL: "ssh://deploy@10.231.7.2", Key: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"}
	h.record(t, must(domain.AddServer("s1", spec, []byte("sealed"), h.serverName(t, "box"))))
	if _, err := h.server(t, "s1").RecordVerified(domain.ServerFacts{}, "garbage", false); err == nil {
		t.Error("bad presented key: got nil, want an error")
	}
	h.record(t, must(h.server(t, "s1").RecordVerified(domain.ServerFacts{CPUs: 1}, testHostKey, false)))
	if got := h.server(t, "s1").HostKey(); got != testHostKey[:len(testHostKey)-len(" host")] {
		t.Errorf("got pinned %q, want the presented key", got)
	}
}

func TestLocalServerAlwaysExists(t *testing.T) {
	s, err := domain.LoadServer(domain.LocalServer, nil)
	if err != nil || !s.Exists() || s.Name() != "local" || s.Kind() != domain.ServerLocal {
		t.Fatalf("got %+v %v, want the local server", s, err)
	}
	if _, err := s.Remove(); !errors.Is(err, domain.ErrLocalServer) {
		t.Errorf("remove local: got %v, want ErrLocalServer", err)
	}
	n, _ := domain.LoadServerName("local", nil)
	if n.Owner() != domain.LocalServer {
		t.Errorf("got local name owned by %q, want local", n.Owner())
	}
}

// TestServerManagingASwarm: a server whose engine manages a swarm berth
// drives cannot be removed until the swarm is released; a released swarm
// forgets its server and registry, and its name can be initialised again.
func TestServerManagingASwarm(t *testing.T) {
	h := newHistory()
	must := MustDecide(t)
	h.record(t, must(domain.AddServer("s1", mustTLSSpec(t), []byte("sealed"), h.serverName(t, "edge"))))
	swarmOf := func() *domain.Swarm {
		s, err := domain.LoadSwarm("main", h.streams[domain.SwarmStream("main")])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.record(t, must(h.server(t, "s1").ManageSwarm("main")))
	h.record(t, must(domain.InitSwarm(swarmOf(), domain.SwarmInitialized{Server: "s1", ServerName: "edge", ClusterID: "c1", NodeID: "n1"})))
	if s := swarmOf(); !s.Exists() || s.Server() != "s1" || s.ServerName() != "edge" {
		t.Fatalf("swarm: got server %q (%q), want s1 (edge)", s.Server(), s.ServerName())
	}
	if _, err := h.server(t, "s1").ManageSwarm("other"); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("a second swarm on s1: got %v, want ErrConflict", err)
	}
	if _, err := h.server(t, "s1").Remove(); !errors.Is(err, domain.ErrServerManagesSwarm) {
		t.Errorf("remove s1: got %v, want ErrServerManagesSwarm", err)
	}

	// The registry: recorded once per image and port.
	if _, err := swarmOf().StartRegistry("registry:2", 0); err == nil {
		t.Error("registry on port 0: got nil, want an error")
	}
	h.record(t, must(swarmOf().StartRegistry("registry:2", 5000)))
	if ev := must(swarmOf().StartRegistry("registry:2", 5000)); len(ev) != 0 {
		t.Errorf("the same registry again: got %d events, want 0", len(ev))
	}
	if got := swarmOf().Registry().Address; got != "127.0.0.1:5000" {
		t.Errorf("registry address %q, want 127.0.0.1:5000", got)
	}

	// Release: refused while applications are on the swarm.
	if _, err := swarmOf().Release([]string{"web"}); !errors.Is(err, domain.ErrSwarmInUse) {
		t.Errorf("release with web on it: got %v, want ErrSwarmInUse", err)
	}
	h.record(t, append(h.server(t, "s1").ReleaseSwarm("main"), must(swarmOf().Release(nil))...))
	if s := swarmOf(); s.Exists() || s.Registry().Address != "" {
		t.Errorf("released swarm: exists %v, registry %q", s.Exists(), s.Registry().Address)
	}
	if h.server(t, "s1").Swarm() != "" {
		t.Errorf("s1 still manages %q", h.server(t, "s1").Swarm())
	}
	h.record(t, must(domain.InitSwarm(swarmOf(), domain.SwarmInitialized{Server: "local", ClusterID: "c2", NodeID: "n2"})))
	h.record(t, must(h.server(t, "s1").Remove()))
}

package main_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/internal/testenv"
)

// startServersAPI runs a Main with Traefik on its dynamic directory and
// returns an admin API client, the local Docker client, the Main and
// Traefik's HTTP address.
func startServersAPI(t *testing.T) (api, *client.Client, *main.Main, string) {
	t.Helper()
	docker := testenv.Docker(t)
	dbURL := testenv.PostgresURL(t)
	network := testenv.RandomName("berth-srv")
	dynamic := t.TempDir()
	proxy := testenv.StartTraefik(t, dynamic)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", network))})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		_ = docker.NetworkRemove(ctx, network)
	})
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
		m.Config.TraefikDir = dynamic
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, errs := run(ctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "token", "create", "--role", "admin", "--name", "e2e")
	if code != main.ExitOK {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	return api{tb: t, base: m.URL(), token: strings.TrimSpace(out)}, docker, m, proxy
}

// viaTraefik requests / of host through Traefik until it answers want.
func viaTraefik(t *testing.T, proxy, host, want string) {
	t.Helper()
	var last string
	waitFor(t, 30*time.Second, host+" through Traefik", func() bool {
		req, _ := http.NewRequest("GET", "http://"+proxy+"/", nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		last = fmt.Sprintf("%d %s", res.StatusCode, b)
		return res.StatusCode == 200 && strings.Contains(string(b), want)
	})
	_ = last
}

// waitSucceeded waits until deployment id succeeded.
func (a api) waitSucceeded(id string, pos int64) {
	a.tb.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		d := a.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%s?min_position=%d", id, pos), nil)
		switch d["status"] {
		case "succeeded":
			return
		case "failed", "cancelled", "interrupted":
			a.tb.Fatalf("deployment %s: %v (%v: %v)", id, d["status"], d["failed_step"], d["failure_reason"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.tb.Fatalf("deployment %s did not finish in 3 minutes", id)
}

type serverView struct {
	ID          string             `json:"id"`
	Name        string             `json:"name"`
	Kind        string             `json:"kind"`
	HostKey     string             `json:"host_key"`
	State       string             `json:"state"`
	Reason      string             `json:"reason"`
	Concurrency int                `json:"concurrency"`
	Facts       domain.ServerFacts `json:"facts"`
	Apps        []string           `json:"apps"`
}

func (a api) server(method, path string) serverView {
	a.tb.Helper()
	code, b := a.do(method, path, nil)
	if code != http.StatusOK {
		a.tb.Fatalf("%s %s: got %d %s, want 200", method, path, code, b)
	}
	var v serverView
	if err := json.Unmarshal(b, &v); err != nil {
		a.tb.Fatal(err)
	}
	return v
}

func (a api) serverCount() int {
	a.tb.Helper()
	var list struct {
		Servers []serverView `json:"servers"`
	}
	_, b := a.do("GET", "/api/v1/servers", nil)
	_ = json.Unmarshal(b, &list)
	return len(list.Servers)
}

// TestRemoteServersEndToEnd adds a second Docker Engine (in a network
// namespace) twice through the real API, over TCP with TLS and over SSH
// (host key trusted at the first verification, then pinned), verifies
// both, places an application on each, deploys them and reaches both
// through Traefik; bad input is refused naming the field with nothing
// recorded; a server with applications cannot be removed; stopping the
// engine makes the servers unreachable (recorded as events).
func TestRemoteServersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a second Docker Engine: skipped with -short")
	}
	remote := testenv.StartRemoteEngine(t, "10.231.7")
	a, docker, m, proxy := startServersAPI(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	tag := "berth-test/srv-" + suffix + ":v1"
	buildServerImage(t, docker, tag)
	remote.CopyImage(t, docker, tag)

	// Bad input: 422 naming the field, nothing recorded.
	before := a.serverCount()
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": "Bad Name", "url": remote.TCPURL, "key": string(remote.KeyPEM), "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM)}, "name"},
		{map[string]any{"name": "x-" + suffix, "url": "tcp://10.231.7.2", "key": string(remote.KeyPEM), "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM)}, "url"},
		{map[string]any{"name": "x-" + suffix, "url": "ssh://-oProxyCommand=x@h", "key": string(remote.SSHKey)}, "url"},
		{map[string]any{"name": "x-" + suffix, "url": remote.TCPURL, "key": string(remote.KeyPEM), "ca_pem": "not pem", "cert_pem": string(remote.CertPEM)}, "ca_pem"},
		{map[string]any{"name": "x-" + suffix, "url": remote.TCPURL, "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM)}, "key"},
		{map[string]any{"name": "x-" + suffix, "url": remote.SSHURL, "key": string(remote.CAPEM)}, "key"},
		{map[string]any{"name": "x-" + suffix, "url": remote.SSHURL, "key": string(remote.SSHKey), "host_key": "ssh-ed25519 AAAA"}, "host_key"},
		{map[string]any{"name": "local", "url": remote.SSHURL, "key": string(remote.SSHKey)}, "name"},
	} {
		code, b := a.do("POST", "/api/v1/servers", tc.body)
		if code < 400 || code >= 500 || !strings.Contains(string(b), `"field":"`+tc.field+`"`) {
			t.Errorf("POST /api/v1/servers %v: got %d %s, want 4xx naming %s", tc.field, code, b, tc.field)
		}
	}
	if after := a.serverCount(); after != before {
		t.Fatalf("refused requests recorded servers: got %d, want %d", after, before)
	}

	tlsName, sshName := "tls-"+suffix, "ssh-"+suffix
	a.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": tlsName, "url": remote.TCPURL, "key": string(remote.KeyPEM), "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM),
	})
	a.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{"name": sshName, "url": remote.SSHURL, "key": string(remote.SSHKey)})
	code, b := a.do("POST", "/api/v1/servers", map[string]any{"name": sshName, "url": remote.SSHURL, "key": string(remote.SSHKey)})
	if code != http.StatusConflict {
		t.Errorf("duplicate name: got %d %s, want 409", code, b)
	}
	for _, name := range []string{tlsName, sshName} {
		v := a.server("POST", "/api/v1/servers/"+name+"/verify")
		if v.State != domain.ServerStateReachable || v.Facts.CPUs < 1 || v.Facts.MemoryBytes <= 0 || v.Facts.EngineVersion == "" {
			t.Fatalf("verify %s: got %+v, want reachable with facts", name, v)
		}
	}
	if v := a.server("GET", "/api/v1/servers/"+sshName); v.HostKey != remote.SSHHostKey {
		t.Errorf("ssh host key: got %q, want the server's %q pinned", v.HostKey, remote.SSHHostKey)
	}

	// A pinned host key the server does not hold: never connected.
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, err := ssh.NewPublicKey(otherPub)
	if err != nil {
		t.Fatal(err)
	}
	a.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": "pinned-" + suffix, "url": remote.SSHURL, "key": string(remote.SSHKey), "host_key": string(ssh.MarshalAuthorizedKey(otherKey)),
	})
	if v := a.server("POST", "/api/v1/servers/pinned-"+suffix+"/verify"); v.State != domain.ServerStateUnreachable || !strings.Contains(v.Reason, "host key") {
		t.Errorf("verify with another pinned host key: got %+v, want unreachable for the host key", v)
	}
	a.must(http.StatusOK, "DELETE", "/api/v1/servers/pinned-"+suffix, nil)

	// One application on each server.
	project := "srv-" + suffix
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})
	hosts := map[string]string{}
	for _, srv := range []string{tlsName, sshName} {
		app := "app-" + srv
		hosts[app] = app + ".test"
		a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
			"project": project, "name": app, "source": map[string]any{"image": tag},
			"runtime": map[string]any{"port": 8080, "server": srv, "health_check": map[string]any{"path": "/healthz"}},
			"env":     []map[string]any{{"key": "VERSION", "value": srv}},
			"domains": []map[string]any{{"host": hosts[app]}},
		})
	}
	code, b = a.do("PATCH", "/api/v1/apps/app-"+tlsName, map[string]any{"server": "no-such-server"})
	if code != http.StatusNotFound && code != http.StatusUnprocessableEntity {
		t.Errorf("placing on an unknown server: got %d %s, want 404 or 422", code, b)
	}
	for _, srv := range []string{tlsName, sshName} {
		app := "app-" + srv
		a.deployed(app)
		viaTraefik(t, proxy, hosts[app], "hello "+srv)
	}
	// The containers run on the remote engine, none on the local one.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, srv := range []string{tlsName, sshName} {
		f := filters.NewArgs(filters.Arg("label", "berth.app=app-"+srv))
		remoteList, err := remote.Docker.ContainerList(ctx, container.ListOptions{Filters: f})
		if err != nil || len(remoteList) != 1 {
			t.Errorf("app-%s on the remote engine: got %d containers (%v), want 1", srv, len(remoteList), err)
		}
		localList, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if len(localList) != 0 {
			t.Errorf("app-%s on the local engine: got %d containers, want 0", srv, len(localList))
		}
	}

	// Two replicas on a remote server: each publishes its own port there,
	// and Traefik balances over both.
	a.must(http.StatusOK, "PATCH", "/api/v1/apps/app-"+tlsName, map[string]any{"replicas": 2})
	a.deployed("app-" + tlsName)
	viaTraefik(t, proxy, hosts["app-"+tlsName], "hello "+tlsName)
	f := filters.NewArgs(filters.Arg("label", "berth.app=app-"+tlsName))
	replicas, err := remote.Docker.ContainerList(ctx, container.ListOptions{Filters: f})
	if err != nil || len(replicas) != 2 {
		t.Fatalf("app-%s with two replicas on the remote engine: got %d running containers (%v), want 2", tlsName, len(replicas), err)
	}
	published := map[uint16]bool{}
	for _, c := range replicas {
		for _, p := range c.Ports {
			if p.PublicPort != 0 {
				published[p.PublicPort] = true
			}
		}
	}
	file, err := os.ReadFile(filepath.Join(m.Config.TraefikDir, "berth-app-"+tlsName+".yml"))
	if err != nil {
		t.Fatalf("route file of app-%s: %v", tlsName, err)
	}
	for p := range published {
		if !strings.Contains(string(file), ":"+strconv.Itoa(int(p))) {
			t.Errorf("route file of app-%s does not reach the replica published on port %d:\n%s", tlsName, p, file)
		}
	}
	if len(published) != 2 {
		t.Errorf("app-%s replicas publish ports %v, want two distinct ports", tlsName, published)
	}

	// A server with applications cannot be removed; renaming keeps them.
	if code, b := a.do("DELETE", "/api/v1/servers/"+tlsName, nil); code != http.StatusConflict {
		t.Errorf("remove a server in use: got %d %s, want 409", code, b)
	}
	a.must(http.StatusOK, "PATCH", "/api/v1/servers/"+tlsName, map[string]any{"name": tlsName + "-b", "concurrency": 2})
	if v := a.server("GET", "/api/v1/servers/"+tlsName+"-b"); v.Concurrency != 2 || len(v.Apps) != 1 {
		t.Errorf("renamed server: got %+v, want concurrency 2 and its app", v)
	}
	if code, _ := a.do("GET", "/api/v1/servers/"+tlsName, nil); code != http.StatusNotFound {
		t.Errorf("old name: got %d, want 404", code)
	}

	// Moving an application deploys it on its new server; the server it
	// left can then be removed.
	moved := a.must(http.StatusOK, "PATCH", "/api/v1/apps/app-"+sshName, map[string]any{"server": tlsName + "-b"})
	id, _ := moved["deployment_id"].(string)
	if id == "" {
		t.Fatalf("moving an application: got %v, want a deployment", moved)
	}
	pos, _ := moved["position"].(float64)
	a.waitSucceeded(id, int64(pos))
	viaTraefik(t, proxy, hosts["app-"+sshName], "hello "+sshName)
	if v := a.server("GET", "/api/v1/servers/"+sshName); len(v.Apps) != 0 {
		t.Errorf("server left: got apps %v, want none", v.Apps)
	}
	a.must(http.StatusOK, "DELETE", "/api/v1/servers/"+sshName, nil)

	// The engine goes away: the server is recorded unreachable.
	remote.StopEngine()
	for _, name := range []string{tlsName + "-b"} {
		v := a.server("POST", "/api/v1/servers/"+name+"/verify")
		if v.State != domain.ServerStateUnreachable || v.Reason == "" {
			t.Errorf("verify %s without its engine: got %+v, want unreachable with a reason", name, v)
		}
	}
	evs, err := m.Store.ReadAll(ctx, domain.ReadAllQuery{Limit: 1000, Filter: domain.Filter{Types: []string{domain.EventServerUnreachable, domain.EventServerHostKeyPinned}}})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, e := range evs {
		counts[e.Type]++
	}
	if counts[domain.EventServerUnreachable] < 1 || counts[domain.EventServerHostKeyPinned] != 1 {
		t.Errorf("got events %v, want server.unreachable and 1 server.host_key_pinned", counts)
	}
}

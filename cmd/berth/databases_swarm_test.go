//go:build swarmnodes

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/handlers/databases"
	"berth/internal/testenv"
)

// TestDatabaseOnSwarmNode runs berth serve as the manager of a two-node
// swarm whose worker is a second Docker Engine in a network namespace: a
// PostgreSQL database is created as a one-replica service pinned to the
// worker (recorded in database.created), a swarm service on the manager
// reaches it by its name over the overlay network, and its backups exec in
// the task's container on the worker through the engine of the server
// registered for that node. While no registered server is that node the
// backup is recorded failed saying so; once it is, the backup streams to
// S3 and a drill, run on the same node, verifies it. A database given no
// node goes where berth picks (the manager, with no database yet), which
// database.created records.
//
// It puts the local engine in swarm mode: run it under
// `flock /tmp/berth-swarm.lock go test …`. The swarm is left at the end.
func TestDatabaseOnSwarmNode(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end swarm test with a second Docker Engine, PostgreSQL and versitygw")
	}
	ctx := context.Background()
	docker := testenv.Docker(t)
	var joined atomic.Bool
	t.Cleanup(func() { // registered first: runs after the worker stopped
		if !joined.Load() {
			return // never leave another test's swarm
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := testenv.LeaveSwarm(ctx, docker); err != nil {
			t.Errorf("docker swarm leave --force: %v", err)
		}
	})
	worker := testenv.StartRemoteEngineNamed(t, "10.231.61", "bdw")
	repo, version := testenv.DatabaseImage(t, "postgres")
	worker.CopyImage(t, docker, repo+":"+version)
	s3 := testenv.StartS3(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	name, swarmName := "pgsw-"+suffix, "dbs-"+suffix
	network, overlay := testenv.RandomName("berth-dbnet"), testenv.RandomName("berth-dbovl")
	picked := "pgpick-" + suffix
	removeDatabaseObjects(t, network, name, picked)

	dbURL := testenv.PostgresURL(t)
	token := adminToken(t, dbURL)
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
		m.Config.Swarm.Network = overlay
		m.Config.Databases.BackupAllowPrivate = true
	})
	api := apiClient{tb: t, base: m.URL(), token: token}

	// The swarm: initialised by berth on the local engine, advertised on
	// the link to the worker, which joins it.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		st, out := api.do("POST", "/api/v1/swarms", map[string]any{"name": swarmName, "server": "local", "advertise_addr": worker.HostAddress})
		if st == http.StatusCreated {
			joined.Store(true)
			break
		}
		if st != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("POST /api/v1/swarms: got %d %s, want 201 (is the local engine in a swarm? run under flock /tmp/berth-swarm.lock)", st, out)
		}
		time.Sleep(time.Second)
	}
	sw, err := docker.SwarmInspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local, err := docker.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	managerNode := local.Swarm.NodeID
	if err := worker.Docker.SwarmJoin(ctx, swarm.JoinRequest{ListenAddr: worker.Address + ":2377", AdvertiseAddr: worker.Address,
		RemoteAddrs: []string{worker.HostAddress + ":2377"}, JoinToken: sw.JoinTokens.Worker}); err != nil {
		t.Fatalf("the worker joins: %v", err)
	}
	info, err := worker.Docker.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	workerNode := info.Swarm.NodeID
	waitFor(t, time.Minute, "the worker node ready", func() bool {
		n, _, err := docker.NodeInspectWithRaw(ctx, workerNode)
		return err == nil && n.Status.State == swarm.NodeStateReady
	})
	server := "worker-" + suffix
	addWorker := func() {
		api.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{"name": server, "url": worker.TCPURL,
			"key": string(worker.KeyPEM), "ca_pem": string(worker.CAPEM), "cert_pem": string(worker.CertPEM)})
		api.must(http.StatusOK, "POST", "/api/v1/servers/"+server+"/verify", nil)
	}
	addWorker()
	api.must(http.StatusCreated, "POST", "/api/v1/backup-storages", map[string]any{
		"name": "s3", "endpoint": s3.Endpoint, "insecure": true, "bucket": "backups",
		"access_key": s3.AccessKey, "secret_key": s3.SecretKey})

	// Bad placements: refused naming the field, nothing recorded.
	for _, bad := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": name, "engine": "postgres", "swarm": "no-such-swarm"}, "swarm"},
		{map[string]any{"name": name, "engine": "postgres", "swarm": swarmName, "node": "no-such-node"}, "node"},
		{map[string]any{"name": name, "engine": "postgres", "swarm": swarmName, "server": server}, "server"},
	} {
		st, out := api.do("POST", "/api/v1/databases", bad.body)
		if st != http.StatusUnprocessableEntity || !strings.Contains(string(out), `"field":"`+bad.field+`"`) {
			t.Errorf("POST /api/v1/databases %v: got %d %s, want 422 naming %s", bad.body, st, out, bad.field)
		}
	}
	if st, _ := api.do("GET", "/api/v1/databases/"+name, nil); st != http.StatusNotFound {
		t.Fatalf("a refused database exists: %d", st)
	}

	var db struct {
		dbInfo
		Host  string `json:"host"`
		Swarm string `json:"swarm"`
		Node  string `json:"node"`
	}
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases", map[string]any{
		"name": name, "engine": "postgres", "version": version, "image": repo, "user": "app", "db_name": "app",
		"swarm": swarmName, "node": workerNode}), &db)
	if db.State != domain.DatabaseRunning || db.Swarm != swarmName || db.Node != workerNode {
		t.Fatalf("database on the worker: %+v", db)
	}
	// Its task runs on the worker.
	list, err := worker.Docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", databases.LabelDatabase+"="+name))})
	if err != nil || len(list) != 1 {
		t.Fatalf("containers of %s on the worker: %d (%v), want 1", name, len(list), err)
	}
	wrt := databases.NewDockerRuntimeWith(worker.Docker, "")
	var out bytes.Buffer
	if err := wrt.Exec(ctx, list[0].ID, databases.Exec{Argv: []string{"psql", "-X", "-At", "-U", "app", "-d", "app", "-v", "ON_ERROR_STOP=1", "-c",
		"CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 500)"}, Stdout: &out}); err != nil {
		t.Fatalf("write rows on the worker: %v", err)
	}

	// A service of the swarm on the manager reaches it by name over the
	// overlay network.
	none := uint64(1)
	probe, err := docker.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "probe-" + suffix},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: repo + ":" + version,
				Command: []string{"pg_isready", "-h", db.Host, "-p", "5432", "-t", "60"}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: []string{"node.role == manager"}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: overlay}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &none}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatalf("probe service: %v", err)
	}
	var probeTask swarm.Task
	waitFor(t, 2*time.Minute, "the probe's task to finish", func() bool {
		tasks, _ := docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", probe.ID))})
		for _, tk := range tasks {
			switch tk.Status.State {
			case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateRejected:
				probeTask = tk
				return true
			}
		}
		return false
	})
	if probeTask.Status.State != swarm.TaskStateComplete {
		t.Errorf("pg_isready -h %s from the manager over the overlay: task %s (%s), want complete", db.Host, probeTask.Status.State, probeTask.Status.Err)
		if cs := probeTask.Status.ContainerStatus; cs != nil {
			if rc, err := docker.ContainerLogs(ctx, cs.ContainerID, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
				var b bytes.Buffer
				_, _ = b.ReadFrom(rc)
				rc.Close()
				t.Logf("probe output: %q", b.String())
			}
		}
	}
	_ = docker.ServiceRemove(ctx, probe.ID)

	// An application of the swarm may refer to it; one on a server may not.
	project := "dbs-" + suffix
	api.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})
	ref := []map[string]any{{"key": "DATABASE_URL", "from": "database:" + name}}
	api.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": project, "name": "svc-" + suffix,
		"source": map[string]any{"image": "berth-test/none:v1"}, "runtime": map[string]any{"port": 8080, "placement": map[string]any{"swarm": swarmName}}, "env": ref})
	if st, out := api.do("POST", "/api/v1/apps", map[string]any{"project": project, "name": "box-" + suffix,
		"source": map[string]any{"image": "berth-test/none:v1"}, "runtime": map[string]any{"port": 8080}, "env": ref}); st != http.StatusUnprocessableEntity || !strings.Contains(string(out), `"field":"env[0].from"`) {
		t.Errorf("an app on the local server referring to a database on the swarm: got %d %s, want 422 naming env[0].from", st, out)
	}

	// No registered server is the worker: the backup is recorded failed,
	// saying so.
	api.must(http.StatusOK, "DELETE", "/api/v1/servers/"+server, nil)
	st, body := api.do("POST", "/api/v1/databases/"+name+"/backups", map[string]any{"storage": "s3"})
	if st != http.StatusBadGateway || !strings.Contains(string(body), "not a registered server") || !strings.Contains(string(body), workerNode) {
		t.Errorf("backup with the node unregistered: got %d %s, want 502 saying the node is not a registered server", st, body)
	}

	// Registered again: the backup streams from the worker, the drill runs
	// there and verifies it.
	addWorker()
	var res struct {
		Status string        `json:"status"`
		Backup domain.Backup `json:"backup"`
		Reason string        `json:"reason"`
	}
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases/"+name+"/backups", map[string]any{"storage": "s3"}), &res)
	if res.Status != "succeeded" || res.Backup.Size == 0 || len(res.Backup.SHA256) != 64 {
		t.Fatalf("backup: %+v", res)
	}
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases/"+name+"/backups/"+res.Backup.Backup+"/drill", nil), &res)
	if res.Status != "verified" || res.Backup.Check != "1 tables, 500 rows" {
		t.Errorf("drill: %+v", res)
	}

	// Its logs: the swarm's, gathered from the worker.
	if logs := string(api.must(http.StatusOK, "GET", "/api/v1/databases/"+name+"/logs?tail=50", nil)); !strings.Contains(logs, "ready to accept connections") {
		t.Errorf("database logs: %s", logs)
	}
	events := string(api.must(http.StatusOK, "GET", "/api/v1/events?stream="+domain.DatabaseStream(name), nil))
	for _, want := range []string{`"node":"` + workerNode + `"`, domain.EventBackupFailed, domain.EventBackupSucceeded, domain.EventBackupVerified} {
		if !strings.Contains(events, want) {
			t.Errorf("the log of %s lacks %s", name, want)
		}
	}
	// Without a node, berth picks the one with the fewest databases (the
	// manager here) and records it.
	var pick struct {
		dbInfo
		Node       string `json:"node"`
		NodePicked bool   `json:"node_picked"`
	}
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases", map[string]any{
		"name": picked, "engine": "postgres", "version": version, "image": repo, "swarm": swarmName}), &pick)
	if pick.State != domain.DatabaseRunning || pick.Node != managerNode || !pick.NodePicked {
		t.Errorf("database placed by berth: %+v, want running on the manager %s, picked", pick, managerNode)
	}
	api.must(http.StatusOK, "DELETE", "/api/v1/databases/"+picked+"?remove_volume=true&confirm="+picked, nil)
	api.must(http.StatusOK, "DELETE", "/api/v1/databases/"+name+"?remove_volume=true&confirm="+name, nil)
	if _, err := worker.Docker.VolumeInspect(ctx, domain.DatabaseVolume(name)); err == nil {
		t.Error("the deleted database's volume is still on the worker")
	}
}

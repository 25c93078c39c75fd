package main_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	main "berth/cmd/berth"
	"berth/internal/testenv"
)

// api is a client of a running Main's API with a bearer token.
type api struct {
	tb    testing.TB
	base  string
	token string
}

func (a api) do(method, path string, body any) (int, []byte) {
	a.tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res.StatusCode, b
}

// must sends a request and fails the test unless it answers want.
func (a api) must(want int, method, path string, body any) map[string]any {
	a.tb.Helper()
	code, b := a.do(method, path, body)
	if code != want {
		a.tb.Fatalf("%s %s: got %d %s, want %d", method, path, code, b, want)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// deployed requests a deployment of app and waits until it succeeded.
func (a api) deployed(app string) string {
	a.tb.Helper()
	res := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/deployments", map[string]any{})
	id, _ := res["deployment_id"].(string)
	if id == "" {
		a.tb.Fatalf("deploy %s: no deployment_id in %v", app, res)
	}
	pos, _ := res["position"].(float64)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		d := a.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%s?min_position=%d", id, int64(pos)), nil)
		switch d["status"] {
		case "succeeded":
			return id
		case "failed", "cancelled", "interrupted":
			a.tb.Fatalf("deployment %s: %v (%v: %v)", id, d["status"], d["failed_step"], d["failure_reason"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.tb.Fatalf("deployment %s did not finish in 3 minutes", id)
	return ""
}

// startAPI runs a Main driving the local Docker Engine on a network of its
// own and returns an admin API client, the Docker client and the Main.
func startAPI(t *testing.T) (api, *client.Client, *main.Main) {
	t.Helper()
	docker := testenv.Docker(t)
	dbURL := testenv.PostgresURL(t)
	network := testenv.RandomName("berth-logs")
	// Registered first, so run last: after the server stopped and the
	// test's containers were removed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", network))})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		if err := docker.NetworkRemove(ctx, network); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Errorf("remove network %s: %v", network, err)
		}
	})
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, errs := run(ctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "token", "create", "--role", "admin", "--name", "e2e")
	if code != main.ExitOK {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	return api{tb: t, base: m.URL(), token: strings.TrimSpace(out)}, docker, m
}

// buildServerImage builds the test server into an image FROM scratch,
// tagged tag and removed when the test ends.
func buildServerImage(t *testing.T, docker *client.Client, tag string) {
	t.Helper()
	dir := t.TempDir()
	testenv.BuildTestServer(t, dir)
	server, err := os.ReadFile(filepath.Join(dir, "server"))
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")},
		{"server", 0o755, server},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := docker.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("build %s: %s", tag, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = docker.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

// removeAppObjects removes the containers and images berth made for app.
func removeAppObjects(t *testing.T, docker *client.Client, app string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		imgs, _ := docker.ImageList(ctx, image.ListOptions{Filters: f})
		for _, i := range imgs {
			_, _ = docker.ImageRemove(ctx, i.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
}

type logLine struct {
	At         time.Time `json:"at"`
	Stream     string    `json:"stream"`
	Container  string    `json:"container"`
	Deployment string    `json:"deployment"`
	Line       string    `json:"line"`
}

// TestAppLogsThroughServe deploys an application from an image through a
// real `berth serve` and reads its container logs through the API: past
// lines from stdout and stderr, marked as such, with times, as text and as
// JSON Lines; bad parameters and unknown applications refused; and a
// followed stream that carries the lines of a container started by a later
// deployment.
func TestAppLogsThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with Docker: skipped with -short")
	}
	a, docker, _ := startAPI(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	app := "logs-" + suffix
	tag := "berth-test/logs-" + suffix + ":v1"
	buildServerImage(t, docker, tag)
	removeAppObjects(t, docker, app)

	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "logs-" + suffix})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": "logs-" + suffix, "name": app,
		"source":  map[string]any{"image": tag},
		"runtime": map[string]any{"port": 8080, "health_check": map[string]any{"path": "/healthz"}},
		"env":     []map[string]any{{"key": "VERSION", "value": "one"}},
	})
	first := a.deployed(app)

	// Bad input and unknown applications.
	for _, tc := range []struct {
		path  string
		code  int
		field string
	}{
		{"/api/v1/apps/no-such-app/logs", http.StatusNotFound, ""},
		{"/api/v1/apps/" + app + "/logs?tail=x", http.StatusBadRequest, "tail"},
		{"/api/v1/apps/" + app + "/logs?tail=10001", http.StatusBadRequest, "tail"},
		{"/api/v1/apps/" + app + "/logs?since=yesterday", http.StatusBadRequest, "since"},
		{"/api/v1/apps/" + app + "/logs?follow=maybe", http.StatusBadRequest, "follow"},
		{"/api/v1/apps/" + app + "/logs?format=xml", http.StatusBadRequest, "format"},
	} {
		code, body := a.do("GET", tc.path, nil)
		if code != tc.code || !strings.Contains(string(body), `"field":"`+tc.field+`"`) && tc.field != "" {
			t.Errorf("GET %s: got %d %s, want %d naming %q", tc.path, code, body, tc.code, tc.field)
		}
	}

	// Past lines, as JSON Lines: stdout and stderr both, from the
	// deployment's container. The health checks logged requests too.
	var lines []logLine
	waitFor(t, 30*time.Second, "the container's stdout and stderr lines", func() bool {
		code, body := a.do("GET", "/api/v1/apps/"+app+"/logs?format=jsonl", nil)
		if code != http.StatusOK {
			t.Fatalf("GET logs: got %d %s", code, body)
		}
		lines = nil
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			var l logLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			lines = append(lines, l)
		}
		var out, errs bool
		for _, l := range lines {
			out = out || l.Stream == "stdout" && strings.Contains(l.Line, "testserver one ready on stdout")
			errs = errs || l.Stream == "stderr" && strings.Contains(l.Line, "testserver one listening on :8080")
		}
		return out && errs
	})
	for i, l := range lines {
		if l.Deployment != first || !strings.Contains(l.Container, app) || l.At.IsZero() {
			t.Errorf("line %d: got %+v, want deployment %s, a container of %s and a time", i, l, first, app)
		}
		if i > 0 && l.At.Before(lines[i-1].At) {
			t.Errorf("line %d: %s is before the line above (%s)", i, l.At, lines[i-1].At)
		}
	}

	// tail bounds the lines; text names container and stream, and the time
	// with timestamps=1.
	code, body := a.do("GET", "/api/v1/apps/"+app+"/logs?tail=1&timestamps=1", nil)
	text := strings.TrimSuffix(string(body), "\n")
	if code != http.StatusOK || strings.Count(text, "\n") != 0 ||
		!regexp.MustCompile(`^`+regexp.QuoteMeta(lines[len(lines)-1].Container)+` (stdout|stderr) \d{4}-\d\d-\d\dT\S+Z .+$`).MatchString(text) {
		t.Errorf("GET logs?tail=1&timestamps=1: got %d %q, want one line `<container> <stream> <time> <text>`", code, body)
	}
	// since after the last line: nothing.
	code, body = a.do("GET", "/api/v1/apps/"+app+"/logs?since="+lines[len(lines)-1].At.Add(time.Second).Format(time.RFC3339Nano), nil)
	if code != http.StatusOK || len(body) != 0 {
		t.Errorf("GET logs?since=<after the last line>: got %d %q, want 200 and no lines", code, body)
	}

	// Following with past lines: they arrive at once, before any new line.
	{
		fctx, fcancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(fctx, "GET", a.base+"/api/v1/apps/"+app+"/logs?follow=1&tail=2&format=jsonl", nil)
		req.Header.Set("Authorization", "Bearer "+a.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 2)
		go func() {
			sc := bufio.NewScanner(res.Body)
			for sc.Scan() {
				got <- sc.Text()
			}
			close(got)
		}()
		for i := range 2 {
			select {
			case l := <-got:
				if !strings.Contains(l, `"container"`) {
					t.Errorf("followed past line %d: got %q", i, l)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("following with tail=2: past line %d did not arrive", i)
			}
		}
		fcancel()
		res.Body.Close()
	}

	// Follow: the stream stays open and carries the lines of the container a
	// new deployment starts (a second container of the application).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", a.base+"/api/v1/apps/"+app+"/logs?follow=1&tail=0", nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("follow: got %d %s, want 200 text/event-stream", res.StatusCode, res.Header.Get("Content-Type"))
	}
	got := make(chan logLine, 100)
	go func() {
		defer close(got)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var l logLine
			if json.Unmarshal([]byte(data), &l) == nil {
				got <- l
			}
		}
	}()
	a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/env", map[string]any{"env": []map[string]any{{"key": "VERSION", "value": "two"}}})
	second := a.deployed(app)
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-got:
			if !ok {
				t.Fatalf("the followed stream ended before the new container's lines")
			}
			if l.Deployment == first && strings.Contains(l.Line, "ready on stdout") {
				t.Errorf("followed with tail=0: got a past line %+v", l)
			}
			if l.Deployment == second && l.Stream == "stdout" && strings.Contains(l.Line, "testserver two ready on stdout") {
				return
			}
		case <-timeout:
			t.Fatalf("no line of the second deployment %s's container in the followed stream", second)
		}
	}
}

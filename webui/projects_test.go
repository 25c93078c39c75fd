package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"berth/projections"
	"berth/webui"
)

// TestDeleteProject: a project with applications is not deleted without
// cascade (409 naming them, nothing written); with cascade it goes with its
// applications and their hosts; its name can be used again, with a host of
// a deleted application.
func TestDeleteProject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": "shop", "name": "web",
		"source":  map[string]any{"image": "example/web:1"},
		"runtime": map[string]any{"port": 8080},
		"domains": []map[string]any{{"host": "shop.example.com"}},
	})
	var w webui.WriteResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": "shop", "name": "api", "source": map[string]any{"image": "example/api:1"}, "runtime": map[string]any{"port": 8080},
	}).json(t, &w)
	head := w.Position

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/api/v1/projects/shop", http.StatusConflict},
		{"/api/v1/projects/shop?cascade=false", http.StatusConflict},
		{"/api/v1/projects/shop?cascade=maybe", http.StatusBadRequest},
		{"/api/v1/projects/nope?cascade=true", http.StatusNotFound},
		{"/api/v1/projects/Bad%20Name", http.StatusUnprocessableEntity},
	} {
		r := e.must(tc.status, "DELETE", tc.path, nil)
		if tc.status == http.StatusConflict && (!strings.Contains(string(r.body), "web") || !strings.Contains(string(r.body), "api")) {
			t.Errorf("DELETE %s: got %s, want a message naming web and api", tc.path, r.body)
		}
	}
	if got, err := e.store.Head(context.Background()); err != nil || got != head {
		t.Fatalf("head after the refused deletions: got %d (%v), want %d: nothing appended", got, err, head)
	}

	e.must(http.StatusOK, "DELETE", "/api/v1/projects/shop?cascade=true", nil).json(t, &w)
	var ps struct{ Projects []projections.Project }
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/projects?min_position=%d", w.Position), nil).json(t, &ps)
	if len(ps.Projects) != 0 {
		t.Errorf("projects after the deletion: got %+v, want none", ps.Projects)
	}
	for _, app := range []string{"web", "api"} {
		var a projections.App
		e.must(http.StatusOK, "GET", "/api/v1/apps/"+app, nil).json(t, &a)
		if a.DesiredStatus != "deleted" && a.Status != "deleted" {
			t.Errorf("%s after its project's deletion: got %s/%s, want deleted", app, a.Status, a.DesiredStatus)
		}
	}
	e.must(http.StatusNotFound, "DELETE", "/api/v1/projects/shop?cascade=true", nil)
	e.must(http.StatusNotFound, "POST", "/api/v1/apps", map[string]any{
		"project": "shop", "name": "late", "source": map[string]any{"image": "example/late:1"}, "runtime": map[string]any{"port": 8080},
	})

	// The name is free again, and so is the deleted application's host.
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop", "description": "again"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": "shop", "name": "shop2", "source": map[string]any{"image": "example/web:2"}, "runtime": map[string]any{"port": 8080},
		"domains": []map[string]any{{"host": "shop.example.com"}},
	})
	e.must(http.StatusConflict, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusConflict, "DELETE", "/api/v1/projects/shop", nil)
}

// TestDeleteProjectRacesCreateApp: creating applications in a project while
// it is deleted never leaves an application in the deleted project: each
// creation either lands before the deletion (and is deleted with it) or
// fails.
func TestDeleteProjectRacesCreateApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "race"})
	var wg sync.WaitGroup
	created := make([]bool, 8)
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do("POST", "/api/v1/apps", map[string]any{
				"project": "race", "name": fmt.Sprintf("app-%d", i), "source": map[string]any{"image": "example/a:1"}, "runtime": map[string]any{"port": 8080},
			})
			created[i] = r.status == http.StatusCreated
		}()
	}
	var del response
	for {
		del = e.do("DELETE", "/api/v1/projects/race?cascade=true", nil)
		if del.status != http.StatusConflict {
			break
		}
	}
	wg.Wait()
	if del.status != http.StatusOK {
		t.Fatalf("DELETE: got %d %s", del.status, del.body)
	}
	for i, ok := range created {
		if !ok {
			continue
		}
		var a projections.App
		e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/app-%d", i), nil).json(t, &a)
		if a.Status != "deleted" && a.DesiredStatus != "deleted" {
			t.Errorf("app-%d was created and outlived its project: %s", i, a.Status)
		}
	}
}

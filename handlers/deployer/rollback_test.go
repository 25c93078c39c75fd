package deployer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"berth/domain"
	"berth/handlers/buildlog"
	"berth/handlers/commands"
	"berth/handlers/imagegc"
)

// bodyOf asks app's running container directly (no proxy) for "/".
func (s *stack) bodyOf(app string) string {
	s.t.Helper()
	for _, c := range s.containers(app) {
		if c.State != "running" {
			continue
		}
		n := c.NetworkSettings.Networks[s.network]
		if n == nil {
			continue
		}
		res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + n.IPAddress + ":8080/")
		if err != nil {
			s.t.Fatalf("GET the container of %s: %v", app, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return strings.TrimSpace(string(b))
	}
	s.t.Fatalf("%s has no running container", app)
	return ""
}

func (s *stack) imageExists(id string) bool {
	s.t.Helper()
	_, err := s.docker.ImageInspect(context.Background(), id)
	if err != nil && !cerrdefs.IsNotFound(err) {
		s.t.Fatal(err)
	}
	return err == nil
}

// TestRollbackRebuildsACollectedImage keeps one image per the application's
// own retention (build.keep_images = 1), deploys two commits, and rolls back
// to the first, whose image was collected: the rollback rebuilds it from the
// commit the log recorded, with the configuration as of that deployment, and
// serves the first commit again.
func TestRollbackRebuildsACollectedImage(t *testing.T) {
	s := newStack(t, stackOptions{drain: 200 * time.Millisecond, noProxy: true})
	repo := newRepo(t, "FROM scratch\nENV VERSION=c1\nCOPY server /server\nENTRYPOINT [\"/server\"]\n", nil)
	a := s.newApp(repo, nil, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})
	a.update(domain.AppPatch{KeepImages: ptr(1)})
	first := s.mustSucceed(a.deploy())
	if got := s.bodyOf(a.name); got != "hello c1" {
		t.Fatalf("first deployment serves %q, want hello c1", got)
	}

	if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte("FROM scratch\nENV VERSION=c2\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-am", "c2")
	second := s.mustSucceed(a.deploy())
	if got := s.bodyOf(a.name); got != "hello c2" {
		t.Fatalf("second deployment serves %q, want hello c2", got)
	}
	if s.imageExists(first.ImageID()) {
		t.Fatalf("with keep_images 1, the first deployment's image %s is still there", first.ImageID())
	}
	if !s.imageExists(second.ImageID()) {
		t.Fatalf("the serving image %s was collected", second.ImageID())
	}

	res, err := s.cmds.RollbackApp(context.Background(), meta(), commands.RollbackApp{App: a.name, To: first.ID()})
	if err != nil {
		t.Fatalf("RollbackApp: %v", err)
	}
	back := s.mustSucceed(res.DeploymentID)
	if back.CommitSHA() != first.CommitSHA() {
		t.Errorf("rollback built commit %s, want %s", back.CommitSHA(), first.CommitSHA())
	}
	if back.ImageID() == "" || back.ImageID() == second.ImageID() {
		t.Errorf("rollback image: got %q, want a rebuilt image", back.ImageID())
	}
	if got := s.bodyOf(a.name); got != "hello c1" {
		t.Errorf("after the rollback: serves %q, want hello c1", got)
	}
	if log := s.logText(back.ID()); !strings.Contains(log, "rebuilding it from commit "+first.CommitSHA()) {
		t.Errorf("rollback log does not say it rebuilt:\n%s", log)
	}
	// An instant rollback reuses the image.
	res, err = s.cmds.RollbackApp(context.Background(), meta(), commands.RollbackApp{App: a.name, To: back.ID()})
	if err != nil {
		t.Fatalf("RollbackApp: %v", err)
	}
	if again := s.mustSucceed(res.DeploymentID); again.ImageID() != back.ImageID() {
		t.Errorf("rollback to a kept image: got %s, want %s reused", again.ImageID(), back.ImageID())
	}
}

// TestFailedBuildLeavesNoIntermediateImages fails a build after two steps
// committed layers (one of them 4 MB the daemon cannot have cached) and
// checks that the images those steps committed are gone, while the layers
// it took from the cache stay.
func TestFailedBuildLeavesNoIntermediateImages(t *testing.T) {
	s := newStack(t, stackOptions{drain: 200 * time.Millisecond, noProxy: true})
	blob := make([]byte, 4<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	repo := newRepo(t, "FROM scratch\nCOPY busybox /bin/busybox\nCOPY blob /blob\nRUN [\"/bin/busybox\", \"false\"]\nCOPY server /server\n",
		map[string]string{"blob": hex.EncodeToString(blob)})
	copyBusybox(t, repo)
	git(t, repo, "add", "-A")
	git(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", "busybox")
	a := s.newApp(repo, nil, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})

	for i := range 2 {
		d := s.wait(a.deploy(), 3*time.Minute)
		if d.Status() != domain.DeploymentFailedStatus {
			t.Fatalf("deployment %d: got %s, want failed", i, d.Status())
		}
		lines, _, err := s.logs.Read(context.Background(), d.ID(), 0, buildlog.MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		var text []string
		for _, l := range lines {
			text = append(text, l.Text)
		}
		created := imagegc.CreatedImages(text)
		if i == 0 && len(created) == 0 {
			t.Fatalf("the first build committed no image by its log:\n%s", strings.Join(text, "\n"))
		}
		for _, id := range created {
			if s.imageExists(id) {
				t.Errorf("deployment %d: intermediate image %s of the failed build is still there", i, id)
			}
		}
		if i == 0 && !strings.Contains(strings.Join(text, "\n"), fmt.Sprintf("removed %d intermediate image(s)", len(created))) {
			t.Errorf("the log does not say the intermediate images were removed:\n%s", strings.Join(text, "\n"))
		}
	}
}

// TestCancelledBuildLeavesNoIntermediateImages cancels a deployment while
// its build runs a long step, after a step committed a 4 MB layer, and
// checks that the image that step committed is gone.
func TestCancelledBuildLeavesNoIntermediateImages(t *testing.T) {
	s := newStack(t, stackOptions{drain: 200 * time.Millisecond, noProxy: true})
	blob := make([]byte, 4<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	repo := newRepo(t, "FROM scratch\nCOPY busybox /bin/busybox\nCOPY blob /blob\nRUN [\"/bin/busybox\", \"sleep\", \"60\"]\nCOPY server /server\n",
		map[string]string{"blob": hex.EncodeToString(blob)})
	copyBusybox(t, repo)
	git(t, repo, "add", "-A")
	git(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", "busybox")
	a := s.newApp(repo, nil, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})

	id := a.deploy()
	lines := func() []string {
		ls, _, err := s.logs.Read(context.Background(), id, 0, buildlog.MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		var text []string
		for _, l := range ls {
			text = append(text, l.Text)
		}
		return text
	}
	waitUntil(t, 2*time.Minute, "the long step to start", func() bool {
		return strings.Contains(strings.Join(lines(), "\n"), "sleep")
	})
	if _, err := s.cmds.CancelDeployment(context.Background(), meta(), commands.CancelDeployment{DeploymentID: id, Reason: "e2e"}); err != nil {
		t.Fatal(err)
	}
	if d := s.wait(id, time.Minute); d.Status() != domain.DeploymentCancelledStatus {
		t.Fatalf("got %s, want cancelled", d.Status())
	}
	created := imagegc.CreatedImages(lines())
	if len(created) == 0 {
		t.Fatalf("the cancelled build committed no image by its log:\n%s", strings.Join(lines(), "\n"))
	}
	for _, img := range created {
		if s.imageExists(img) {
			t.Errorf("intermediate image %s of the cancelled build is still there", img)
		}
	}
}

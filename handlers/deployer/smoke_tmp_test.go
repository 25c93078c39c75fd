package deployer_test

import (
	"testing"
	"time"

	"berth/domain"
)

func TestSmokeTmp(t *testing.T) {
	s := newStack(t, stackOptions{drain: 500 * time.Millisecond, noProxy: true})
	repo := newRepo(t, "", nil)
	a := s.newApp(repo, map[string]string{"VERSION": "v1"}, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})
	d1 := s.mustSucceed(a.deploy())
	t.Logf("events %v\nlog:\n%s", s.types(d1.ID()), s.logText(d1.ID()))
	s.checkSealed(d1.ID())
	d2 := s.mustSucceed(a.deploy())
	t.Logf("events %v\nlog:\n%s", s.types(d2.ID()), s.logText(d2.ID()))
	if n := len(s.containers(a.name)); n != 1 {
		t.Errorf("containers: %d", n)
	}
}

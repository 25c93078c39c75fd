package deployer_test

import (
	"errors"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/buildlog"
	"berth/handlers/deployer"
	"berth/handlers/engine"
)

func TestNewDockerExecutorValidates(t *testing.T) {
	t.Parallel()
	eng, err := engine.New(engine.Config{WorkRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	logs := buildlog.New(nil)
	store := memstore.New()
	tests := []struct {
		name  string
		cfg   deployer.DockerExecutorConfig
		store domain.EventStore
		ok    bool
	}{
		{"defaults", deployer.DockerExecutorConfig{Engine: eng, Logs: logs}, store, true},
		{"by name", deployer.DockerExecutorConfig{Engine: eng, Logs: logs, Upstream: deployer.UpstreamName}, store, true},
		{"no engine", deployer.DockerExecutorConfig{Logs: logs}, store, false},
		{"no logs", deployer.DockerExecutorConfig{Engine: eng}, store, false},
		{"no store", deployer.DockerExecutorConfig{Engine: eng, Logs: logs}, nil, false},
		{"bad upstream", deployer.DockerExecutorConfig{Engine: eng, Logs: logs, Upstream: "dns"}, store, false},
		{"negative drain", deployer.DockerExecutorConfig{Engine: eng, Logs: logs, Drain: -time.Second}, store, false},
		{"negative keep", deployer.DockerExecutorConfig{Engine: eng, Logs: logs, KeepImages: -1}, store, false},
	}
	for _, tt := range tests {
		_, err := deployer.NewDockerExecutor(tt.cfg, tt.store)
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: got error %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tt.name, err)
		}
	}
}

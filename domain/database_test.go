package domain_test

import (
	"errors"
	"testing"

	"berth/domain"
)

func TestDatabaseSpecValidation(t *testing.T) {
	t.Parallel()
	ok := domain.DatabaseSpec{Name: "orders", Engine: domain.EnginePostgres}.Normalize()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if ok.Version != "17" || ok.Image != "postgres" || ok.User != "orders" || ok.DBName != "orders" {
		t.Errorf("defaults: %+v", ok)
	}
	if pg := (domain.DatabaseSpec{Name: "pg-main", Engine: domain.EnginePostgres}).Normalize(); pg.User != "db_pg_main" || pg.Validate() != nil {
		t.Errorf("a name starting pg-: user %q (%v)", pg.User, pg.Validate())
	}
	for _, tt := range []struct {
		spec  domain.DatabaseSpec
		field string
	}{
		{domain.DatabaseSpec{Name: "Bad Name", Engine: "postgres"}, "name"},
		{domain.DatabaseSpec{Name: "x", Engine: "oracle"}, "engine"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Version: "15;rm -rf /"}, "version"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Version: "-15"}, "version"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Image: "evil image"}, "image"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", User: "Robert'); DROP"}, "user"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", User: "pg_admin"}, "user"},
		{domain.DatabaseSpec{Name: "x", Engine: "mariadb", User: "root"}, "user"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", DBName: "a-b"}, "db_name"},
		{domain.DatabaseSpec{Name: "x", Engine: "redis", User: "app"}, "user"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", PublicPort: 80}, "public_port"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", PublicPort: 70000}, "public_port"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Resources: domain.DatabaseResources{MemoryMB: 10}}, "resources.memory_mb"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Server: "../etc"}, "server"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Node: "abc"}, "node"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Swarm: "main", Node: "ABC;"}, "node"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Swarm: "main", Node: "abc", Server: "s2"}, "server"},
		{domain.DatabaseSpec{Name: "x", Engine: "postgres", Swarm: "-bad", Node: "abc"}, "swarm"},
	} {
		err := tt.spec.Normalize().Validate()
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Field != tt.field {
			t.Errorf("%+v: got %v, want a validation error naming %s", tt.spec, err, tt.field)
		}
	}
}

// A database placed on the local server records no server; one placed on
// a remote server records its id.
func TestDatabasePlacement(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ server, recorded, id string }{
		{"", "", domain.LocalServer},
		{domain.LocalServer, "", domain.LocalServer},
		{"srv-1", "srv-1", "srv-1"},
	} {
		events, err := domain.CreateDatabase(&domain.Database{}, domain.DatabaseSpec{Name: "db", Engine: domain.EnginePostgres, Server: tt.server}, []byte{1})
		if err != nil {
			t.Fatal(err)
		}
		c := events[0].Data.(domain.DatabaseCreated)
		if c.Server != tt.recorded || c.ServerID() != tt.id {
			t.Errorf("server %q: recorded %q (id %q), want %q (%q)", tt.server, c.Server, c.ServerID(), tt.recorded, tt.id)
		}
	}
}

// Applications reach a database by name only from its own network: the
// same server's, or the same swarm's overlay.
func TestDatabaseReachableFrom(t *testing.T) {
	t.Parallel()
	local := domain.DatabaseCreated{Database: "a"}
	remote := domain.DatabaseCreated{Database: "b", Server: "s2"}
	swarmed := domain.DatabaseCreated{Database: "c", Swarm: "main", Node: "n1"}
	onSwarm := func(name string) domain.Runtime { return domain.Runtime{Placement: &domain.Placement{Swarm: name}} }
	for _, tt := range []struct {
		db   domain.DatabaseCreated
		app  domain.Runtime
		want bool
	}{
		{local, domain.Runtime{}, true},
		{local, domain.Runtime{Server: domain.LocalServer}, true},
		{local, domain.Runtime{Server: "s2"}, false},
		{remote, domain.Runtime{Server: "s2"}, true},
		{remote, domain.Runtime{}, false},
		{local, onSwarm("main"), false},
		{swarmed, onSwarm("main"), true},
		{swarmed, onSwarm("other"), false},
		{swarmed, domain.Runtime{}, false},
	} {
		if got := tt.db.ReachableFrom(tt.app); got != tt.want {
			t.Errorf("%s from %+v: got %v, want %v", tt.db.Database, tt.app, got, tt.want)
		}
	}
}

func TestBackupStorageAndScheduleValidation(t *testing.T) {
	t.Parallel()
	good := domain.BackupStorageSpec{Name: "s3", Endpoint: "s3.example.com:443", Bucket: "backups", AccessKey: "AK", SecretKey: "sk"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, mutate := range map[string]func(*domain.BackupStorageSpec){
		"endpoint":   func(s *domain.BackupStorageSpec) { s.Endpoint = "https://s3.example.com/x" },
		"bucket":     func(s *domain.BackupStorageSpec) { s.Bucket = "Bad_Bucket" },
		"prefix":     func(s *domain.BackupStorageSpec) { s.Prefix = "../up" },
		"access_key": func(s *domain.BackupStorageSpec) { s.AccessKey = "has space" },
		"secret_key": func(s *domain.BackupStorageSpec) { s.SecretKey = "" },
		"region":     func(s *domain.BackupStorageSpec) { s.Region = "EU West" },
	} {
		s := good
		mutate(&s)
		var ve *domain.ValidationError
		if err := s.Validate(); !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
	events, _ := domain.CreateDatabase(&domain.Database{}, domain.DatabaseSpec{Name: "db", Engine: "redis"}, []byte("sealed"))
	recs := []domain.RecordedEvent{}
	for i, e := range events {
		ed, _ := e.Encode("id", domain.Metadata{})
		recs = append(recs, domain.RecordedEvent{StreamID: e.StreamID, StreamVersion: int64(i + 1), Type: ed.Type, Data: ed.Data})
	}
	d, err := domain.LoadDatabase("db", recs)
	if err != nil || !d.Exists() {
		t.Fatalf("load: %v", err)
	}
	if _, err := d.SetSchedule(domain.BackupSchedule{Cron: "", Storage: "s3"}, nil); !isField(err, "cron") {
		t.Errorf("empty cron: %v", err)
	}
	if _, err := d.SetSchedule(domain.BackupSchedule{Cron: "x", Storage: "s3"}, errors.New("bad")); !isField(err, "cron") {
		t.Errorf("unparsable cron: %v", err)
	}
	if _, err := d.SetSchedule(domain.BackupSchedule{Cron: "@daily", Storage: "s3", Keep: -1}, nil); !isField(err, "keep") {
		t.Errorf("negative keep: %v", err)
	}
	if _, err := d.ChangeVersion("7; rm"); !isField(err, "version") {
		t.Errorf("bad version: %v", err)
	}
	if _, err := domain.CreateDatabase(d, domain.DatabaseSpec{Name: "db", Engine: "redis"}, nil); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("create twice: %v", err)
	}
	if err := domain.ValidateEnvRef("from", "database:db"); err != nil {
		t.Error(err)
	}
	if err := domain.ValidateEnvRef("from", "database:../x"); !isField(err, "from") {
		t.Errorf("bad reference: %v", err)
	}
}

func isField(err error, field string) bool {
	var ve *domain.ValidationError
	return errors.As(err, &ve) && ve.Field == field
}

package databases

import (
	"fmt"
	"net/url"
	"strconv"

	"berth/domain"
)

// conn is what an engine's commands need to reach it.
type conn struct {
	engine, db, user, password string
}

// service returns the container of database d with password pw.
func service(d domain.DatabaseCreated, name, pw string) Service {
	def, _ := domain.EngineDefaultsOf(d.Engine)
	svc := Service{Name: name, Image: d.Image + ":" + d.Version, Volume: d.Volume, Port: def.Port,
		PublicPort: d.PublicPort, MemoryMB: d.Resources.MemoryMB, MilliCPUs: d.Resources.MilliCPUs,
		Labels: map[string]string{LabelDatabase: d.Database}}
	switch d.Engine {
	case domain.EnginePostgres:
		svc.MountPath = "/var/lib/postgresql/data"
		svc.Env = []string{"POSTGRES_USER=" + d.User, "POSTGRES_PASSWORD=" + pw, "POSTGRES_DB=" + d.DBName,
			"PGDATA=/var/lib/postgresql/data"}
	case domain.EngineMariaDB:
		svc.MountPath = "/var/lib/mysql"
		svc.Env = []string{"MARIADB_ROOT_PASSWORD=" + pw, "MARIADB_DATABASE=" + d.DBName, "MARIADB_USER=" + d.User, "MARIADB_PASSWORD=" + pw}
	case domain.EngineMySQL:
		svc.MountPath = "/var/lib/mysql"
		svc.Env = []string{"MYSQL_ROOT_PASSWORD=" + pw, "MYSQL_DATABASE=" + d.DBName, "MYSQL_USER=" + d.User, "MYSQL_PASSWORD=" + pw}
	case domain.EngineRedis:
		svc.MountPath = "/data"
		svc.Cmd = []string{"redis-server", "--requirepass", pw, "--dir", "/data", "--appendonly", "no"}
	case domain.EngineMongo:
		svc.MountPath = "/data/db"
		svc.Env = []string{"MONGO_INITDB_ROOT_USERNAME=" + d.User, "MONGO_INITDB_ROOT_PASSWORD=" + pw, "MONGO_INITDB_DATABASE=" + d.DBName}
	}
	return svc
}

// client returns the name of the engine's command-line client: mysql and
// mariadb name theirs differently.
func (c conn) tool(mariadb, mysql string) string {
	if c.engine == domain.EngineMySQL {
		return mysql
	}
	return mariadb
}

func (c conn) mongoURI() string {
	u := url.URL{Scheme: "mongodb", User: url.UserPassword(c.user, c.password), Host: "127.0.0.1:27017", RawQuery: "authSource=admin"}
	return u.String()
}

// ready is the command that succeeds once the engine accepts connections
// over TCP (the images' init phase listens on a socket only).
func (c conn) ready() Exec {
	switch c.engine {
	case domain.EnginePostgres:
		return Exec{Argv: []string{"pg_isready", "-q", "-h", "127.0.0.1", "-U", c.user, "-d", c.db}}
	case domain.EngineMariaDB, domain.EngineMySQL:
		return Exec{Argv: []string{c.tool("mariadb-admin", "mysqladmin"), "-uroot", "-h127.0.0.1", "--protocol=tcp", "ping"}, Env: []string{"MYSQL_PWD=" + c.password}}
	case domain.EngineRedis:
		return Exec{Argv: []string{"redis-cli", "--no-auth-warning", "ping"}, Env: []string{"REDISCLI_AUTH=" + c.password}}
	default:
		return Exec{Argv: []string{"mongosh", "--quiet", c.mongoURI(), "--eval", "db.adminCommand('ping').ok"}}
	}
}

// dump is the engine's own dump tool writing the whole database to stdout.
func (c conn) dump() Exec {
	switch c.engine {
	case domain.EnginePostgres:
		return Exec{Argv: []string{"pg_dump", "-U", c.user, "-d", c.db, "--no-owner", "--no-privileges", "--clean", "--if-exists"}}
	case domain.EngineMariaDB, domain.EngineMySQL:
		return Exec{Argv: []string{c.tool("mariadb-dump", "mysqldump"), "-uroot", "--single-transaction", "--routines", "--triggers", "--databases", c.db},
			Env: []string{"MYSQL_PWD=" + c.password}}
	case domain.EngineRedis:
		return Exec{Argv: []string{"redis-cli", "--no-auth-warning", "--rdb", "-"}, Env: []string{"REDISCLI_AUTH=" + c.password}}
	default:
		return Exec{Argv: []string{"mongodump", "--quiet", "--archive", "--uri", c.mongoURI()}}
	}
}

// restore reads a dump on stdin into the database (Redis: see
// restoreRedis).
func (c conn) restore() Exec {
	switch c.engine {
	case domain.EnginePostgres:
		return Exec{Argv: []string{"psql", "-q", "-X", "-U", c.user, "-d", c.db, "-v", "ON_ERROR_STOP=1", "-f", "-"}}
	case domain.EngineMariaDB, domain.EngineMySQL:
		return Exec{Argv: []string{c.tool("mariadb", "mysql"), "-uroot"}, Env: []string{"MYSQL_PWD=" + c.password}}
	case domain.EngineRedis:
		return Exec{Argv: []string{"dd", "of=/data/dump.rdb", "bs=1048576", "status=none"}}
	default:
		return Exec{Argv: []string{"mongorestore", "--quiet", "--archive", "--drop", "--uri", c.mongoURI()}}
	}
}

// check is the query a restore drill runs: it prints what the restored
// database holds (tables and rows, keys, collections).
func (c conn) check() Exec {
	switch c.engine {
	case domain.EnginePostgres:
		return Exec{Argv: []string{"psql", "-X", "-At", "-F", " ", "-U", c.user, "-d", c.db, "-v", "ON_ERROR_STOP=1", "-c",
			`SELECT count(*), coalesce(sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text::bigint), 0) FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`}}
	case domain.EngineMariaDB, domain.EngineMySQL:
		return Exec{Argv: []string{c.tool("mariadb", "mysql"), "-uroot", "-N", "-B", "-e",
			"SELECT count(*), coalesce(sum(table_rows), 0) FROM information_schema.tables WHERE table_schema = '" + c.db + "'"},
			Env: []string{"MYSQL_PWD=" + c.password}}
	case domain.EngineRedis:
		return Exec{Argv: []string{"redis-cli", "--no-auth-warning", "dbsize"}, Env: []string{"REDISCLI_AUTH=" + c.password}}
	default:
		return Exec{Argv: []string{"mongosh", "--quiet", c.mongoURI(), "--eval",
			"db.getSiblingDB('" + c.db + "').getCollectionNames().length"}}
	}
}

// checkSummary turns a check's output into the verified event's text.
func checkSummary(engine string, out []byte) (string, error) {
	var a, b int64
	switch engine {
	case domain.EnginePostgres, domain.EngineMariaDB, domain.EngineMySQL:
		if _, err := fmt.Sscan(string(out), &a, &b); err != nil {
			return "", fmt.Errorf("check printed %q: %w", truncate(string(out), 200), err)
		}
		return fmt.Sprintf("%d tables, %d rows", a, b), nil
	case domain.EngineRedis:
		if _, err := fmt.Sscan(string(out), &a); err != nil {
			return "", fmt.Errorf("check printed %q: %w", truncate(string(out), 200), err)
		}
		return fmt.Sprintf("%d keys", a), nil
	default:
		if _, err := fmt.Sscan(string(out), &a); err != nil {
			return "", fmt.Errorf("check printed %q: %w", truncate(string(out), 200), err)
		}
		return fmt.Sprintf("%d collections", a), nil
	}
}

// ConnectionURL is the URL apps on berth's network connect to database d
// with, at host.
func ConnectionURL(d domain.DatabaseCreated, host, password string) string {
	def, _ := domain.EngineDefaultsOf(d.Engine)
	u := url.URL{Host: host + ":" + strconv.Itoa(def.Port)}
	switch d.Engine {
	case domain.EnginePostgres:
		u.Scheme, u.User, u.Path = "postgres", url.UserPassword(d.User, password), "/"+d.DBName
	case domain.EngineMariaDB, domain.EngineMySQL:
		u.Scheme, u.User, u.Path = "mysql", url.UserPassword(d.User, password), "/"+d.DBName
	case domain.EngineRedis:
		u.Scheme, u.User = "redis", url.UserPassword("default", password)
	case domain.EngineMongo:
		u.Scheme, u.User, u.Path, u.RawQuery = "mongodb", url.UserPassword(d.User, password), "/"+d.DBName, "authSource=admin"
	}
	return u.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

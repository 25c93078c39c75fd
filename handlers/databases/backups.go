package databases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"

	"berth/domain"
)

// StorageRequest is the body of POST /api/v1/backup-storages.
type StorageRequest struct {
	Name      string `json:"name"`
	Endpoint  string `json:"endpoint"`
	Insecure  bool   `json:"insecure,omitempty"`
	Region    string `json:"region,omitempty"`
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix,omitempty"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// StorageInfo is a backup storage as the API shows it: never its secret.
type StorageInfo struct {
	Name      string `json:"name"`
	Endpoint  string `json:"endpoint"`
	Insecure  bool   `json:"insecure,omitempty"`
	Region    string `json:"region,omitempty"`
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix,omitempty"`
	AccessKey string `json:"access_key"`
}

func storageInfo(s domain.BackupStorageAdded) StorageInfo {
	return StorageInfo{Name: s.Storage, Endpoint: s.Endpoint, Insecure: s.Insecure, Region: s.Region, Bucket: s.Bucket, Prefix: s.Prefix, AccessKey: s.AccessKey}
}

// AddStorage checks the endpoint against the outbound rules, seals the
// secret key and records backupstorage.added; the bucket is created when
// missing.
func (m *Manager) AddStorage(ctx context.Context, md domain.Metadata, req StorageRequest) (StorageInfo, error) {
	spec := domain.BackupStorageSpec{Name: req.Name, Endpoint: req.Endpoint, Insecure: req.Insecure, Region: req.Region,
		Bucket: req.Bucket, Prefix: req.Prefix, AccessKey: req.AccessKey, SecretKey: req.SecretKey}
	if err := spec.Validate(); err != nil {
		return StorageInfo{}, err
	}
	if err := CheckEndpoint(ctx, "endpoint", spec.Endpoint, m.cfg.AllowPrivateStorage); err != nil {
		return StorageInfo{}, err
	}
	recs, err := m.cfg.Store.ReadStream(ctx, domain.BackupStorageStream(spec.Name), 1, 0)
	if err != nil {
		return StorageInfo{}, err
	}
	_, exists, version, err := domain.LoadBackupStorage(recs)
	if err != nil {
		return StorageInfo{}, err
	}
	sealed, err := m.cfg.Sealer.Seal(ctx, domain.BackupStorageKeyOwner(spec.Name), []byte(spec.SecretKey))
	if err != nil {
		return StorageInfo{}, fmt.Errorf("seal the secret key: %w", err)
	}
	events, err := domain.AddBackupStorage(exists, spec, sealed)
	if err != nil {
		return StorageInfo{}, err
	}
	added := events[0].Data.(domain.BackupStorageAdded)
	b, err := OpenBucket(added, spec.SecretKey, m.cfg.AllowPrivateStorage)
	if err != nil {
		return StorageInfo{}, err
	}
	if err := b.Ensure(ctx); err != nil {
		return StorageInfo{}, domain.Invalid("bucket", "cannot be reached or created: "+reason(err, spec.SecretKey))
	}
	if _, err := m.append(ctx, md, domain.ExpectVersion(version), events); err != nil {
		return StorageInfo{}, err
	}
	return storageInfo(added), nil
}

// RemoveStorage records backupstorage.removed; the objects stay.
func (m *Manager) RemoveStorage(ctx context.Context, md domain.Metadata, name string) (int64, error) {
	if err := domain.ValidateName("name", name); err != nil {
		return 0, err
	}
	recs, err := m.cfg.Store.ReadStream(ctx, domain.BackupStorageStream(name), 1, 0)
	if err != nil {
		return 0, err
	}
	_, exists, version, err := domain.LoadBackupStorage(recs)
	if err != nil {
		return 0, err
	}
	if !exists {
		return 0, fmt.Errorf("%s: %w", name, domain.ErrBackupStorageNotFound)
	}
	return m.append(ctx, md, domain.ExpectVersion(version), []domain.Event{{StreamID: domain.BackupStorageStream(name),
		Type: domain.EventBackupStorageRemoved, Data: domain.BackupStorageRemoved{Storage: name}}})
}

// Storages lists the backup storages.
func (m *Manager) Storages(ctx context.Context) ([]StorageInfo, error) {
	names, err := m.names(ctx, domain.CategoryBackupStorage, domain.EventBackupStorageAdded, domain.EventBackupStorageRemoved, "storage")
	if err != nil {
		return nil, err
	}
	out := []StorageInfo{}
	for _, n := range names {
		s, err := m.storage(ctx, n)
		if err != nil {
			continue
		}
		out = append(out, storageInfo(s))
	}
	return out, nil
}

func (m *Manager) storage(ctx context.Context, name string) (domain.BackupStorageAdded, error) {
	if err := domain.ValidateName("storage", name); err != nil {
		return domain.BackupStorageAdded{}, err
	}
	recs, err := m.cfg.Store.ReadStream(ctx, domain.BackupStorageStream(name), 1, 0)
	if err != nil {
		return domain.BackupStorageAdded{}, err
	}
	s, exists, _, err := domain.LoadBackupStorage(recs)
	if err != nil {
		return s, err
	}
	if !exists {
		return s, fmt.Errorf("%s: %w", name, domain.ErrBackupStorageNotFound)
	}
	return s, nil
}

// OpenStorage opens backup storage name with its unsealed secret key.
func (m *Manager) OpenStorage(ctx context.Context, name string) (*Bucket, domain.BackupStorageAdded, error) {
	s, err := m.storage(ctx, name)
	if err != nil {
		return nil, s, err
	}
	secret, err := m.cfg.Sealer.Open(ctx, domain.BackupStorageKeyOwner(name), s.SealedSecretKey)
	if err != nil {
		return nil, s, fmt.Errorf("open the secret key of %s: %w", name, err)
	}
	b, err := OpenBucket(s, string(secret), m.cfg.AllowPrivateStorage)
	return b, s, err
}

func dumpExt(engine string) string {
	switch engine {
	case domain.EngineRedis:
		return "rdb"
	case domain.EngineMongo:
		return "archive"
	}
	return "sql"
}

// BackupRequest is the body of POST /api/v1/databases/{name}/backups.
type BackupRequest struct {
	Storage string `json:"storage"`
}

// Backup runs the engine's dump tool in the database's container (the
// exec API, argv only), gzip-compresses its output and streams it to the
// storage, then records database.backup_succeeded with size, SHA-256 and
// object key, or database.backup_failed with the reason (returned as
// *BackupError).
func (m *Manager) Backup(ctx context.Context, md domain.Metadata, name, storage string, scheduled bool) (domain.Backup, error) {
	d, err := m.existing(ctx, name)
	if err != nil {
		return domain.Backup{}, err
	}
	if err := domain.ValidateName("storage", storage); err != nil {
		return domain.Backup{}, err
	}
	b, s, err := m.OpenStorage(ctx, storage)
	if err != nil {
		return domain.Backup{}, err
	}
	c := d.Created()
	id := uuid.NewString()
	started := time.Now().UTC()
	key := b.Key(fmt.Sprintf("%s/%s-%s.%s.gz", name, started.Format("20060102T150405Z"), id[:8], dumpExt(c.Engine)))
	pw, err := m.open(ctx, c)
	var w Written
	var rt Runtime
	if err == nil {
		rt, err = m.runtime(ctx, c)
	}
	if err == nil {
		if d.State() != domain.DatabaseRunning {
			err = fmt.Errorf("%s is %s, not running", name, d.State())
		} else {
			e := connOf(c, pw).dump()
			w, err = b.Upload(ctx, key, func(out io.Writer) error {
				e.Stdout = out
				return rt.Exec(ctx, domain.DatabaseContainer(name), e)
			})
		}
	}
	if err != nil {
		why := reason(err, pw)
		ev := domain.Event{StreamID: domain.DatabaseStream(name), Type: domain.EventBackupFailed,
			Data: domain.BackupFailed{Database: name, Backup: id, Storage: storage, Reason: why, Scheduled: scheduled}}
		if _, aerr := m.append(context.WithoutCancel(ctx), outcomeMeta(md), domain.ExpectAny, []domain.Event{ev}); aerr != nil {
			return domain.Backup{}, errors.Join(err, aerr)
		}
		m.log.WarnContext(ctx, "backup failed", slog.String("database", name), slog.String("backup", id), slog.String("reason", why))
		return domain.Backup{}, &BackupError{Backup: id, Reason: why}
	}
	ok := domain.BackupSucceeded{Database: name, Backup: id, Engine: c.Engine, Storage: storage, Bucket: s.Bucket, ObjectKey: key,
		Size: w.Size, SHA256: w.SHA256, Scheduled: scheduled, StartedAt: started, DurationMS: time.Since(started).Milliseconds()}
	if _, err := m.append(ctx, outcomeMeta(md), domain.ExpectAny, []domain.Event{{StreamID: domain.DatabaseStream(name),
		Type: domain.EventBackupSucceeded, Data: ok}}); err != nil {
		return domain.Backup{}, err
	}
	return domain.Backup{BackupSucceeded: ok}, nil
}

// BackupError is a backup that failed and was recorded so.
type BackupError struct {
	Backup string
	Reason string
}

func (e *BackupError) Error() string { return "backup " + e.Backup + " failed: " + e.Reason }

// RestoreRequest is the body of POST .../backups/{id}/restore: the target
// database (empty: the database the backup was made of). A target that
// does not exist is created with the source's engine, version, database
// name and user (its own new password).
type RestoreRequest struct {
	Target string `json:"target,omitempty"`
	// Server names the server a new target is created on; empty: the
	// server (or swarm node) of the backup's database. Ignored for an
	// existing target.
	Server string `json:"server,omitempty"`
}

// Restore restores backup id of database name into target, recording
// database.restored or database.restore_failed on the target's stream.
func (m *Manager) Restore(ctx context.Context, md domain.Metadata, name, id string, req RestoreRequest) (Info, error) {
	target := req.Target
	src, err := m.existing(ctx, name)
	if err != nil {
		return Info{}, err
	}
	bk, err := src.Backup(id)
	if err != nil {
		return Info{}, err
	}
	if target == "" {
		target = name
	}
	if err := domain.ValidateName("target", target); err != nil {
		return Info{}, err
	}
	t, err := m.load(ctx, target)
	if err != nil {
		return Info{}, err
	}
	if !t.Exists() {
		sc := src.Created()
		p := place{server: sc.ServerID(), swarm: sc.Swarm, node: sc.Node}
		if req.Server != "" {
			if p.server, err = m.placement(ctx, "server", req.Server); err != nil {
				return Info{}, err
			}
			p.swarm, p.node = "", ""
		}
		if _, err := m.create(ctx, md, CreateRequest{Name: target, Engine: sc.Engine, Version: sc.Version, Image: sc.Image,
			DBName: sc.DBName, User: sc.User, Resources: sc.Resources}, p); err != nil {
			return Info{}, err
		}
		if t, err = m.existing(ctx, target); err != nil {
			return Info{}, err
		}
	} else if t.Created().Engine != src.Created().Engine {
		return Info{}, domain.Invalid("target", "is a "+t.Created().Engine+" database; the backup is of "+src.Created().Engine)
	}
	if t.State() != domain.DatabaseRunning {
		return Info{}, fmt.Errorf("target %s is %s, not running: %w", target, t.State(), domain.ErrConflict)
	}
	unlock := m.lock(target)
	defer unlock()
	tc := t.Created()
	pw, err := m.open(ctx, tc)
	var rt Runtime
	if err == nil {
		rt, err = m.runtime(ctx, tc)
	}
	if err == nil {
		err = m.restoreInto(ctx, rt, bk, domain.DatabaseContainer(target), connOf(tc, pw))
	}
	var ev domain.Event
	if err != nil {
		ev = domain.Event{StreamID: domain.DatabaseStream(target), Type: domain.EventDatabaseRestoreFailed,
			Data: domain.DatabaseRestoreFailed{Database: target, Source: name, Backup: id, Reason: reason(err, pw)}}
	} else {
		ev = domain.Event{StreamID: domain.DatabaseStream(target), Type: domain.EventDatabaseRestored,
			Data: domain.DatabaseRestored{Database: target, Source: name, Backup: id}}
	}
	if _, aerr := m.append(context.WithoutCancel(ctx), outcomeMeta(md), domain.ExpectAny, []domain.Event{ev}); aerr != nil {
		return Info{}, errors.Join(err, aerr)
	}
	if err != nil {
		return Info{}, fmt.Errorf("restore %s into %s: %s: %w", id, target, reason(err, pw), domain.ErrConflict)
	}
	return m.Get(ctx, target)
}

// restoreInto streams backup bk from storage into the engine of container.
func (m *Manager) restoreInto(ctx context.Context, rt Runtime, bk domain.Backup, container string, c conn) error {
	b, _, err := m.OpenStorage(ctx, bk.Storage)
	if err != nil {
		return err
	}
	if c.engine == domain.EngineRedis {
		// Saving is turned off so nothing overwrites the file being
		// written; the engine then stops without saving and loads it.
		if _, err := m.execOut(ctx, rt, container, Exec{Argv: []string{"redis-cli", "--no-auth-warning", "config", "set", "save", ""},
			Env: []string{"REDISCLI_AUTH=" + c.password}}); err != nil {
			return err
		}
	}
	e := c.restore()
	err = b.Download(ctx, bk.ObjectKey, bk.SHA256, func(r io.Reader) error {
		e.Stdin = r
		return rt.Exec(ctx, container, e)
	})
	if err != nil {
		return err
	}
	if c.engine == domain.EngineRedis {
		_ = rt.Exec(ctx, container, Exec{Argv: []string{"redis-cli", "--no-auth-warning", "shutdown", "nosave"},
			Env: []string{"REDISCLI_AUTH=" + c.password}})
		if err := rt.Start(ctx, container); err != nil {
			return err
		}
		return m.waitReady(ctx, rt, container, c)
	}
	return nil
}

// Drill restores backup id into a throwaway container of the same image,
// runs the engine's check and records database.backup_verified (the only
// way a backup becomes verified) or database.backup_drill_failed.
func (m *Manager) Drill(ctx context.Context, md domain.Metadata, name, id string) (domain.Backup, error) {
	d, err := m.existing(ctx, name)
	if err != nil {
		return domain.Backup{}, err
	}
	bk, err := d.Backup(id)
	if err != nil {
		return domain.Backup{}, err
	}
	c := d.Created()
	pw := password()
	throwaway := "berth-drill-" + name + "-" + uuid.NewString()[:8]
	svc := service(c, throwaway, pw)
	svc.Volume, svc.PublicPort = "", 0
	svc.Labels = map[string]string{LabelDatabase: name, "berth.drill": id}
	check, err := func() (string, error) {
		// The drill runs on the database's server: its image is there.
		rt, err := m.runtime(ctx, c)
		if err != nil {
			return "", err
		}
		defer func() { _ = rt.Remove(context.WithoutCancel(ctx), throwaway, "") }()
		if _, err := rt.Run(ctx, svc); err != nil {
			return "", err
		}
		cn := connOf(c, pw)
		if err := m.waitReady(ctx, rt, throwaway, cn); err != nil {
			return "", err
		}
		if err := m.restoreInto(ctx, rt, bk, throwaway, cn); err != nil {
			return "", err
		}
		out, err := m.execOut(ctx, rt, throwaway, cn.check())
		if err != nil {
			return "", err
		}
		return checkSummary(c.Engine, out)
	}()
	var ev domain.Event
	if err != nil {
		ev = domain.Event{StreamID: domain.DatabaseStream(name), Type: domain.EventBackupDrillFailed,
			Data: domain.BackupDrillFailed{Database: name, Backup: id, Reason: reason(err, pw)}}
	} else {
		ev = domain.Event{StreamID: domain.DatabaseStream(name), Type: domain.EventBackupVerified,
			Data: domain.BackupVerified{Database: name, Backup: id, Check: check}}
	}
	if _, aerr := m.append(context.WithoutCancel(ctx), outcomeMeta(md), domain.ExpectAny, []domain.Event{ev}); aerr != nil {
		return domain.Backup{}, errors.Join(err, aerr)
	}
	if err != nil {
		return domain.Backup{}, &BackupError{Backup: id, Reason: "restore drill: " + reason(err, pw)}
	}
	bk.Verified, bk.Check = true, check
	return bk, nil
}

// CronParser parses schedules: five fields (minute to weekday) or a
// descriptor such as @daily, in UTC.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// SetSchedule records database.backup_schedule_set after checking the cron
// expression and the storage.
func (m *Manager) SetSchedule(ctx context.Context, md domain.Metadata, name string, s domain.BackupSchedule) (Info, error) {
	unlock := m.lock(name)
	defer unlock()
	d, err := m.existing(ctx, name)
	if err != nil {
		return Info{}, err
	}
	s.Cron = strings.TrimSpace(s.Cron)
	_, cerr := CronParser.Parse(s.Cron)
	events, err := d.SetSchedule(s, cerr)
	if err != nil {
		return Info{}, err
	}
	if _, err := m.storage(ctx, s.Storage); err != nil {
		return Info{}, domain.Invalid("storage", "names no backup storage")
	}
	if _, err := m.append(ctx, md, domain.ExpectVersion(d.Version()), events); err != nil {
		return Info{}, err
	}
	return m.Get(ctx, name)
}

// RemoveSchedule records database.backup_schedule_removed.
func (m *Manager) RemoveSchedule(ctx context.Context, md domain.Metadata, name string) (Info, error) {
	unlock := m.lock(name)
	defer unlock()
	d, err := m.existing(ctx, name)
	if err != nil {
		return Info{}, err
	}
	events, err := d.RemoveSchedule()
	if err != nil {
		return Info{}, err
	}
	if _, err := m.append(ctx, md, domain.ExpectVersion(d.Version()), events); err != nil {
		return Info{}, err
	}
	return m.Get(ctx, name)
}

// expire deletes the scheduled backups of d beyond the schedule's Keep,
// oldest first, and records database.backup_expired for each.
func (m *Manager) expire(ctx context.Context, md domain.Metadata, d *domain.Database) error {
	s := d.Schedule()
	if s == nil || s.Keep == 0 {
		return nil
	}
	var live []domain.Backup
	for _, b := range d.Backups() {
		if b.Scheduled && !b.Expired {
			live = append(live, b)
		}
	}
	for len(live) > s.Keep {
		b := live[0]
		live = live[1:]
		bucket, _, err := m.OpenStorage(ctx, b.Storage)
		if err != nil {
			return err
		}
		if err := bucket.Remove(ctx, b.ObjectKey); err != nil {
			return err
		}
		if _, err := m.append(ctx, outcomeMeta(md), domain.ExpectAny, []domain.Event{{StreamID: domain.DatabaseStream(d.Name()),
			Type: domain.EventBackupExpired, Data: domain.BackupExpired{Database: d.Name(), Backup: b.Backup, ObjectKey: b.ObjectKey}}}); err != nil {
			return err
		}
	}
	return nil
}

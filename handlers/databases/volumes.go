package databases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"berth/domain"
)

// BackupVolume streams the named volume of application app (mounted in
// one of its containers) as a gzip-compressed tar archive to storage and
// records volume.backup_succeeded with its object key, size and SHA-256,
// or volume.backup_failed with the reason (returned as *BackupError).
func (m *Manager) BackupVolume(ctx context.Context, md domain.Metadata, app, volume, storage string) (domain.VolumeBackupSucceeded, error) {
	if err := domain.ValidateName("app", app); err != nil {
		return domain.VolumeBackupSucceeded{}, err
	}
	if err := domain.ValidateName("storage", storage); err != nil {
		return domain.VolumeBackupSucceeded{}, err
	}
	recs, err := m.cfg.Store.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err != nil {
		return domain.VolumeBackupSucceeded{}, fmt.Errorf("read application %s: %w", app, err)
	}
	if len(recs) == 0 {
		return domain.VolumeBackupSucceeded{}, fmt.Errorf("application %s: %w", app, domain.ErrNotFound)
	}
	a, err := domain.LoadApplication(recs)
	if err != nil {
		return domain.VolumeBackupSucceeded{}, err
	}
	path := ""
	for _, v := range a.Config().Runtime.Volumes {
		if v.Name == volume {
			path = v.Path
		}
	}
	if path == "" {
		return domain.VolumeBackupSucceeded{}, fmt.Errorf("application %s has no volume %q: %w", app, volume, domain.ErrNotFound)
	}
	b, s, err := m.OpenStorage(ctx, storage)
	if err != nil {
		return domain.VolumeBackupSucceeded{}, err
	}
	id := uuid.NewString()
	started := time.Now().UTC()
	key := b.Key(fmt.Sprintf("apps/%s/%s/%s-%s.tar.gz", app, volume, started.Format("20060102T150405Z"), id[:8]))
	// The volume is on the server the application runs on.
	rt, err := m.runtimeOn(ctx, a.Config().Runtime.ServerID())
	var c string
	if err == nil {
		c, err = rt.AppContainer(ctx, app)
	}
	var w Written
	if err == nil {
		w, err = b.Upload(ctx, key, func(out io.Writer) error { return rt.CopyVolume(ctx, c, path, out) })
	}
	stream := domain.VolumeBackupStream(app)
	if err != nil {
		why := reason(err)
		ev := domain.Event{StreamID: stream, Type: domain.EventVolumeBackupFailed,
			Data: domain.VolumeBackupFailed{App: app, Volume: volume, Backup: id, Storage: storage, Reason: why}}
		if _, aerr := m.append(context.WithoutCancel(ctx), outcomeMeta(md), domain.ExpectAny, []domain.Event{ev}); aerr != nil {
			return domain.VolumeBackupSucceeded{}, errors.Join(err, aerr)
		}
		return domain.VolumeBackupSucceeded{}, &BackupError{Backup: id, Reason: why}
	}
	ok := domain.VolumeBackupSucceeded{App: app, Volume: volume, Backup: id, Storage: storage, Bucket: s.Bucket, ObjectKey: key,
		Size: w.Size, SHA256: w.SHA256, StartedAt: started, DurationMS: time.Since(started).Milliseconds()}
	if _, err := m.append(ctx, outcomeMeta(md), domain.ExpectAny, []domain.Event{{StreamID: stream, Type: domain.EventVolumeBackupSucceeded, Data: ok}}); err != nil {
		return domain.VolumeBackupSucceeded{}, err
	}
	return ok, nil
}

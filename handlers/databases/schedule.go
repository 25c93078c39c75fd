package databases

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"berth/domain"
)

// SchedulerLease is the lease under which one berth process runs the
// backup schedules (internal/leases).
const SchedulerLease = "databases/backup-scheduler"

// RunSchedules runs the databases' backup schedules until ctx ends: each
// database's backup is made when its cron expression comes due (evaluated
// in UTC from when this process took the work), followed by a restore drill
// when the schedule asks for one and by the retention (Keep). Run it under
// SchedulerLease so exactly one process does this work; tick is how often
// the schedules are looked at (0: 10 seconds).
func (m *Manager) RunSchedules(ctx context.Context, tick time.Duration) error {
	if tick <= 0 {
		tick = 10 * time.Second
	}
	next := map[string]time.Time{}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		m.runDue(ctx, next, time.Now().UTC())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Manager) runDue(ctx context.Context, next map[string]time.Time, now time.Time) {
	list, err := m.List(ctx)
	if err != nil {
		m.log.WarnContext(ctx, "backup schedules: list databases", slog.Any("error", err))
		return
	}
	seen := map[string]bool{}
	for _, db := range list {
		if db.Schedule == nil || db.State != domain.DatabaseRunning {
			continue
		}
		s := *db.Schedule
		key := db.Name + "\x00" + s.Cron + "\x00" + s.Storage
		seen[key] = true
		sched, err := CronParser.Parse(s.Cron)
		if err != nil {
			continue
		}
		due, ok := next[key]
		if !ok {
			next[key] = sched.Next(now)
			continue
		}
		if now.Before(due) {
			continue
		}
		next[key] = sched.Next(now)
		md := domain.Metadata{Actor: SystemActor, CorrelationID: uuid.NewString()}
		b, err := m.Backup(ctx, md, db.Name, s.Storage, true)
		if err != nil {
			continue // recorded as database.backup_failed
		}
		if s.Drill {
			_, _ = m.Drill(ctx, md, db.Name, b.Backup)
		}
		if d, err := m.existing(ctx, db.Name); err == nil {
			if err := m.expire(ctx, md, d); err != nil {
				m.log.WarnContext(ctx, "backup retention", slog.String("database", db.Name), slog.Any("error", err))
			}
		}
	}
	for k := range next {
		if !seen[k] {
			delete(next, k)
		}
	}
}

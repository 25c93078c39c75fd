package monitor

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Sample is one target's measures at one instant (tier 0) or averaged over
// one bucket (tiers 1 and 2).
type Sample struct {
	Kind   string    `json:"kind"`
	Target string    `json:"target"`
	At     time.Time `json:"at"`
	// CPUPercent: an application's share of one core in percent (200 is
	// two cores busy, as `docker stats` shows); a server's share of all its
	// cores.
	CPUPercent     float64 `json:"cpu_percent"`
	MemBytes       int64   `json:"mem_bytes"`
	MemLimitBytes  int64   `json:"mem_limit_bytes"`
	NetRxBps       float64 `json:"net_rx_bps"`
	NetTxBps       float64 `json:"net_tx_bps"`
	Restarts       int64   `json:"restarts"`
	Containers     int     `json:"containers"`
	DiskUsedBytes  int64   `json:"disk_used_bytes"`
	DiskTotalBytes int64   `json:"disk_total_bytes"`
}

// Tiers of the samples table: raw samples, then one-minute and ten-minute
// averages.
const (
	TierRaw = 0
	Tier1m  = 1
	Tier10m = 2
)

// Retention of each tier.
var tierRetention = [3]time.Duration{2 * time.Hour, 48 * time.Hour, 31 * 24 * time.Hour}

// tierStep is the bucket of tiers 1 and 2.
var tierStep = [3]time.Duration{0, time.Minute, 10 * time.Minute}

// Ranges the API serves, and the tier each reads.
var ranges = map[string]struct {
	span time.Duration
	tier int
}{
	"1h":  {time.Hour, TierRaw},
	"6h":  {6 * time.Hour, Tier1m},
	"1d":  {24 * time.Hour, Tier1m},
	"7d":  {7 * 24 * time.Hour, Tier10m},
	"30d": {30 * 24 * time.Hour, Tier10m},
}

// ErrUnknownTarget: no samples of that target in the range's retention.
var ErrUnknownTarget = fmt.Errorf("monitored target: %w", domain.ErrNotFound)

// sampleDB reads and writes the samples table.
type sampleDB struct{ pool *pgxpool.Pool }

const sampleColumns = `cpu_percent, mem_bytes, mem_limit_bytes, net_rx_bps, net_tx_bps, restarts, containers, disk_used_bytes, disk_total_bytes`

// insert writes raw samples in one round trip.
func (d *sampleDB) insert(ctx context.Context, samples []Sample) error {
	if len(samples) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, s := range samples {
		b.Queue(`INSERT INTO monitor_samples (kind, target, tier, at, `+sampleColumns+`)
VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`,
			s.Kind, s.Target, s.At, s.CPUPercent, s.MemBytes, s.MemLimitBytes, s.NetRxBps, s.NetTxBps, s.Restarts, s.Containers,
			s.DiskUsedBytes, s.DiskTotalBytes)
	}
	if err := d.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("monitor: insert samples: %w", err)
	}
	return nil
}

// rollup averages tier-1 samples in [from, to) into buckets of tier. It is
// idempotent: a bucket computed again is replaced.
func (d *sampleDB) rollup(ctx context.Context, tier int, from, to time.Time) error {
	step := fmt.Sprintf("%d seconds", int(tierStep[tier].Seconds()))
	_, err := d.pool.Exec(ctx, `INSERT INTO monitor_samples (kind, target, tier, at, `+sampleColumns+`)
SELECT kind, target, $1, date_bin($2::interval, at, 'epoch'::timestamptz),
       avg(cpu_percent), avg(mem_bytes)::bigint, max(mem_limit_bytes), avg(net_rx_bps), avg(net_tx_bps),
       max(restarts), max(containers), avg(disk_used_bytes)::bigint, max(disk_total_bytes)
FROM monitor_samples WHERE tier = $3 AND at >= $4 AND at < $5
GROUP BY kind, target, date_bin($2::interval, at, 'epoch'::timestamptz)
ON CONFLICT (kind, target, tier, at) DO UPDATE SET
  cpu_percent = EXCLUDED.cpu_percent, mem_bytes = EXCLUDED.mem_bytes, mem_limit_bytes = EXCLUDED.mem_limit_bytes,
  net_rx_bps = EXCLUDED.net_rx_bps, net_tx_bps = EXCLUDED.net_tx_bps, restarts = EXCLUDED.restarts,
  containers = EXCLUDED.containers, disk_used_bytes = EXCLUDED.disk_used_bytes, disk_total_bytes = EXCLUDED.disk_total_bytes`,
		tier, step, tier-1, from, to)
	if err != nil {
		return fmt.Errorf("monitor: roll up tier %d: %w", tier, err)
	}
	return nil
}

// prune deletes the samples of every tier older than its retention.
func (d *sampleDB) prune(ctx context.Context, now time.Time) error {
	for tier, keep := range tierRetention {
		if _, err := d.pool.Exec(ctx, `DELETE FROM monitor_samples WHERE tier = $1 AND at < $2`, tier, now.Add(-keep)); err != nil {
			return fmt.Errorf("monitor: prune tier %d: %w", tier, err)
		}
	}
	return nil
}

// Series is one target's samples over a range, as columns (one entry per
// point, oldest first), for charts.
type Series struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
	Range  string `json:"range"`
	// StepSeconds is the resolution: the sampling interval for "1h", one
	// minute for "6h" and "1d", ten minutes beyond.
	StepSeconds    float64     `json:"step_seconds"`
	At             []time.Time `json:"at"`
	CPUPercent     []float64   `json:"cpu_percent"`
	MemBytes       []int64     `json:"mem_bytes"`
	MemLimitBytes  []int64     `json:"mem_limit_bytes"`
	NetRxBps       []float64   `json:"net_rx_bps"`
	NetTxBps       []float64   `json:"net_tx_bps"`
	Restarts       []int64     `json:"restarts"`
	DiskUsedBytes  []int64     `json:"disk_used_bytes"`
	DiskTotalBytes []int64     `json:"disk_total_bytes"`
}

// ValidRange reports whether r is a range the API serves.
func ValidRange(r string) bool { _, ok := ranges[r]; return ok }

// series reads one target's samples over rng, ending at now.
func (d *sampleDB) series(ctx context.Context, kind, target, rng string, now time.Time, interval time.Duration) (Series, error) {
	rd, ok := ranges[rng]
	if !ok {
		return Series{}, domain.Invalid("range", "must be one of 1h, 6h, 1d, 7d, 30d")
	}
	s := Series{Kind: kind, Target: target, Range: rng, StepSeconds: tierStep[rd.tier].Seconds(),
		At: []time.Time{}, CPUPercent: []float64{}, MemBytes: []int64{}, MemLimitBytes: []int64{}, NetRxBps: []float64{},
		NetTxBps: []float64{}, Restarts: []int64{}, DiskUsedBytes: []int64{}, DiskTotalBytes: []int64{}}
	if rd.tier == TierRaw {
		s.StepSeconds = interval.Seconds()
	}
	rows, err := d.pool.Query(ctx, `SELECT at, `+sampleColumns+` FROM monitor_samples
WHERE kind = $1 AND target = $2 AND tier = $3 AND at >= $4 ORDER BY at`, kind, target, rd.tier, now.Add(-rd.span))
	if err != nil {
		return Series{}, fmt.Errorf("monitor: series: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p Sample
		if err := rows.Scan(&p.At, &p.CPUPercent, &p.MemBytes, &p.MemLimitBytes, &p.NetRxBps, &p.NetTxBps, &p.Restarts,
			&p.Containers, &p.DiskUsedBytes, &p.DiskTotalBytes); err != nil {
			return Series{}, fmt.Errorf("monitor: series: %w", err)
		}
		s.At = append(s.At, p.At.UTC())
		s.CPUPercent = append(s.CPUPercent, p.CPUPercent)
		s.MemBytes = append(s.MemBytes, p.MemBytes)
		s.MemLimitBytes = append(s.MemLimitBytes, p.MemLimitBytes)
		s.NetRxBps = append(s.NetRxBps, p.NetRxBps)
		s.NetTxBps = append(s.NetTxBps, p.NetTxBps)
		s.Restarts = append(s.Restarts, p.Restarts)
		s.DiskUsedBytes = append(s.DiskUsedBytes, p.DiskUsedBytes)
		s.DiskTotalBytes = append(s.DiskTotalBytes, p.DiskTotalBytes)
	}
	if err := rows.Err(); err != nil {
		return Series{}, fmt.Errorf("monitor: series: %w", err)
	}
	return s, nil
}

// latest returns each target's newest raw sample.
func (d *sampleDB) latest(ctx context.Context) ([]Sample, error) {
	rows, err := d.pool.Query(ctx, `SELECT DISTINCT ON (kind, target) kind, target, at, `+sampleColumns+`
FROM monitor_samples WHERE tier = 0 ORDER BY kind, target, at DESC`)
	if err != nil {
		return nil, fmt.Errorf("monitor: latest: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Sample, error) {
		var p Sample
		err := row.Scan(&p.Kind, &p.Target, &p.At, &p.CPUPercent, &p.MemBytes, &p.MemLimitBytes, &p.NetRxBps, &p.NetTxBps,
			&p.Restarts, &p.Containers, &p.DiskUsedBytes, &p.DiskTotalBytes)
		p.At = p.At.UTC()
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("monitor: latest: %w", err)
	}
	if out == nil {
		out = []Sample{}
	}
	return out, nil
}

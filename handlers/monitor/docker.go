package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// LabelApp is the label berth puts on application containers.
const LabelApp = "berth.app"

// containerStats is what berth reads of the Engine's one-shot stats.
type containerStats struct {
	CPUStats struct {
		CPUUsage struct {
			TotalUsage uint64 `json:"total_usage"`
		} `json:"cpu_usage"`
		SystemUsage uint64 `json:"system_cpu_usage"`
		OnlineCPUs  uint32 `json:"online_cpus"`
	} `json:"cpu_stats"`
	MemoryStats struct {
		Usage uint64            `json:"usage"`
		Limit uint64            `json:"limit"`
		Stats map[string]uint64 `json:"stats"`
	} `json:"memory_stats"`
	Networks map[string]struct {
		RxBytes uint64 `json:"rx_bytes"`
		TxBytes uint64 `json:"tx_bytes"`
	} `json:"networks"`
}

// containerReading is one container's counters at one instant.
type containerReading struct {
	id, app               string
	cpuTotal, systemTotal uint64
	cpus                  uint32
	mem, memLimit         uint64
	rx, tx                uint64
	restarts              int64
	at                    time.Time
}

// dockerSource reads the application containers of one Engine.
type dockerSource struct {
	cli         *client.Client
	parallelism int
}

// read lists the running application containers and reads each one's
// one-shot stats and restart count, parallelism at a time.
func (d *dockerSource) read(ctx context.Context) ([]containerReading, error) {
	list, err := d.cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelApp))})
	if err != nil {
		return nil, fmt.Errorf("monitor: list containers: %w", err)
	}
	out := make([]containerReading, len(list))
	ok := make([]bool, len(list))
	sem := make(chan struct{}, max(d.parallelism, 1))
	var wg sync.WaitGroup
	for i, c := range list {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r, err := d.readOne(ctx, c.ID, c.Labels[LabelApp])
			if err == nil {
				out[i], ok[i] = r, true
			}
		})
	}
	wg.Wait()
	res := out[:0]
	for i := range out {
		if ok[i] {
			res = append(res, out[i])
		}
	}
	return res, nil
}

func (d *dockerSource) readOne(ctx context.Context, id, app string) (containerReading, error) {
	r := containerReading{id: id, app: app}
	st, err := d.cli.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return r, fmt.Errorf("monitor: stats of %s: %w", id, err)
	}
	var s containerStats
	err = json.NewDecoder(st.Body).Decode(&s)
	st.Body.Close()
	if err != nil {
		return r, fmt.Errorf("monitor: decode stats of %s: %w", id, err)
	}
	r.at = time.Now()
	r.cpuTotal, r.systemTotal, r.cpus = s.CPUStats.CPUUsage.TotalUsage, s.CPUStats.SystemUsage, s.CPUStats.OnlineCPUs
	// Like `docker stats`: the page cache that can be reclaimed is not
	// counted as used.
	inactive := s.MemoryStats.Stats["inactive_file"]
	if v, ok := s.MemoryStats.Stats["total_inactive_file"]; ok {
		inactive = v
	}
	r.mem = s.MemoryStats.Usage
	if inactive < r.mem {
		r.mem -= inactive
	}
	r.memLimit = s.MemoryStats.Limit
	for _, n := range s.Networks {
		r.rx += n.RxBytes
		r.tx += n.TxBytes
	}
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return r, fmt.Errorf("monitor: inspect %s: %w", id, err)
	}
	r.restarts = int64(info.RestartCount)
	return r, nil
}

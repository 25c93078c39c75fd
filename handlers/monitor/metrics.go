package monitor

import (
	"github.com/prometheus/client_golang/prometheus"

	"berth/domain"
)

var (
	descAppCPU = prometheus.NewDesc("berth_app_cpu_percent",
		"CPU of an application's containers, percent of one core, at the last sample.", []string{"app"}, nil)
	descAppMem = prometheus.NewDesc("berth_app_memory_bytes",
		"Memory used by an application's containers (without reclaimable page cache).", []string{"app"}, nil)
	descAppMemLimit = prometheus.NewDesc("berth_app_memory_limit_bytes",
		"Memory limit of an application's containers (the host's memory when unlimited).", []string{"app"}, nil)
	descAppRx = prometheus.NewDesc("berth_app_network_receive_bytes_per_second",
		"Bytes per second an application's containers received over the last interval.", []string{"app"}, nil)
	descAppTx = prometheus.NewDesc("berth_app_network_transmit_bytes_per_second",
		"Bytes per second an application's containers sent over the last interval.", []string{"app"}, nil)
	descAppRestarts = prometheus.NewDesc("berth_app_container_restarts",
		"Restarts of an application's running containers, as the Engine counts them.", []string{"app"}, nil)
	descAppContainers = prometheus.NewDesc("berth_app_containers",
		"Running containers of an application.", []string{"app"}, nil)
	descServerCPU = prometheus.NewDesc("berth_server_cpu_percent",
		"CPU used on a server, percent of all its cores, over the last interval.", []string{"server"}, nil)
	descServerMem = prometheus.NewDesc("berth_server_memory_used_bytes",
		"Memory used on a server (total minus available).", []string{"server"}, nil)
	descServerMemTotal = prometheus.NewDesc("berth_server_memory_total_bytes",
		"Memory of a server.", []string{"server"}, nil)
	descServerDisk = prometheus.NewDesc("berth_server_disk_used_bytes",
		"Bytes used on the file system of berth's data directory.", []string{"server"}, nil)
	descServerDiskTotal = prometheus.NewDesc("berth_server_disk_total_bytes",
		"Size of the file system of berth's data directory.", []string{"server"}, nil)
	descServerRx = prometheus.NewDesc("berth_server_network_receive_bytes_per_second",
		"Bytes per second a server received (every interface but loopback).", []string{"server"}, nil)
	descServerTx = prometheus.NewDesc("berth_server_network_transmit_bytes_per_second",
		"Bytes per second a server sent (every interface but loopback).", []string{"server"}, nil)
	descRounds = prometheus.NewDesc("berth_monitor_samples_taken_total",
		"Sampling rounds this process completed.", nil, nil)
)

var _ prometheus.Collector = (*Monitor)(nil)

// Describe implements prometheus.Collector.
func (m *Monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAppCPU, descAppMem, descAppMemLimit, descAppRx, descAppTx, descAppRestarts,
		descAppContainers, descServerCPU, descServerMem, descServerMemTotal, descServerDisk, descServerDiskTotal,
		descServerRx, descServerTx, descRounds} {
		ch <- d
	}
}

// Collect implements prometheus.Collector with the newest sample of each
// target this process took.
func (m *Monitor) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, label)
	}
	for _, s := range m.Latest() {
		switch s.Kind {
		case domain.MonitorKindApp:
			g(descAppCPU, s.CPUPercent, s.Target)
			g(descAppMem, float64(s.MemBytes), s.Target)
			g(descAppMemLimit, float64(s.MemLimitBytes), s.Target)
			g(descAppRx, s.NetRxBps, s.Target)
			g(descAppTx, s.NetTxBps, s.Target)
			g(descAppRestarts, float64(s.Restarts), s.Target)
			g(descAppContainers, float64(s.Containers), s.Target)
		case domain.MonitorKindServer:
			g(descServerCPU, s.CPUPercent, s.Target)
			g(descServerMem, float64(s.MemBytes), s.Target)
			g(descServerMemTotal, float64(s.MemLimitBytes), s.Target)
			g(descServerDisk, float64(s.DiskUsedBytes), s.Target)
			g(descServerDiskTotal, float64(s.DiskTotalBytes), s.Target)
			g(descServerRx, s.NetRxBps, s.Target)
			g(descServerTx, s.NetTxBps, s.Target)
		}
	}
	m.mu.Lock()
	rounds := m.rounds
	m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descRounds, prometheus.CounterValue, float64(rounds))
}

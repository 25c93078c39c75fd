package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/monitor"
	"berth/handlers/notify"
	"berth/internal/leases"
	"berth/webui"
)

// ObserveConfig configures notifications and monitoring.
type ObserveConfig struct {
	// NotificationsAllowPrivate lets notification channels reach loopback,
	// private and link-local hosts: --notifications-allow-private,
	// BERTH_NOTIFICATIONS_ALLOW_PRIVATE.
	NotificationsAllowPrivate bool
	// MonitorInterval is how often containers and the server are sampled:
	// --monitor-interval, BERTH_MONITOR_INTERVAL (10s; 0 turns sampling off).
	MonitorInterval time.Duration
	// Thresholds (percent, raise:clear) that raise notifications:
	// --threshold-cpu, --threshold-memory, --threshold-disk.
	CPU, Memory, Disk Threshold
}

// Threshold is a raise level and a lower clear level, in percent.
type Threshold struct{ Raise, Clear float64 }

func (t *Threshold) String() string {
	if t == nil {
		return ""
	}
	return strconv.FormatFloat(t.Raise, 'f', -1, 64) + ":" + strconv.FormatFloat(t.Clear, 'f', -1, 64)
}

// Set parses "RAISE:CLEAR" (e.g. "90:80"); "0" turns the threshold off.
func (t *Threshold) Set(s string) error {
	if strings.TrimSpace(s) == "0" {
		*t = Threshold{}
		return nil
	}
	r, c, ok := strings.Cut(s, ":")
	raise, err1 := strconv.ParseFloat(strings.TrimSpace(r), 64)
	clear, err2 := strconv.ParseFloat(strings.TrimSpace(c), 64)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("want RAISE:CLEAR percentages such as 90:80, or 0 for off")
	}
	if err := domain.ValidateThreshold("threshold", raise, clear); err != nil {
		return err
	}
	*t = Threshold{Raise: raise, Clear: clear}
	return nil
}

// DefaultObserveConfig is the configuration without flags.
func DefaultObserveConfig() ObserveConfig {
	return ObserveConfig{
		MonitorInterval: 10 * time.Second,
		CPU:             Threshold{Raise: 90, Clear: 80},
		Memory:          Threshold{Raise: 90, Clear: 80},
		Disk:            Threshold{Raise: 90, Clear: 85},
	}
}

// bindObserveFlags registers the notification and monitoring flags.
func bindObserveFlags(fs *flag.FlagSet, c *ObserveConfig, getenv func(string) string) error {
	*c = DefaultObserveConfig()
	if v := getenv("BERTH_NOTIFICATIONS_ALLOW_PRIVATE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("BERTH_NOTIFICATIONS_ALLOW_PRIVATE: %w", err)
		}
		c.NotificationsAllowPrivate = b
	}
	fs.BoolVar(&c.NotificationsAllowPrivate, "notifications-allow-private", c.NotificationsAllowPrivate,
		"let notification channels (URLs, SMTP hosts) reach loopback, private and link-local addresses (env BERTH_NOTIFICATIONS_ALLOW_PRIVATE)")
	if v := getenv("BERTH_MONITOR_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 0 && d < time.Second {
			return fmt.Errorf("BERTH_MONITOR_INTERVAL: want a duration of at least 1s, or 0 for off")
		}
		c.MonitorInterval = d
	}
	fs.DurationVar(&c.MonitorInterval, "monitor-interval", c.MonitorInterval,
		"how often containers and the server are sampled; 0 turns monitoring off (env BERTH_MONITOR_INTERVAL)")
	for _, t := range []struct {
		p         *Threshold
		name, env string
	}{
		{&c.CPU, "threshold-cpu", "BERTH_THRESHOLD_CPU"},
		{&c.Memory, "threshold-memory", "BERTH_THRESHOLD_MEMORY"},
		{&c.Disk, "threshold-disk", "BERTH_THRESHOLD_DISK"},
	} {
		if v := getenv(t.env); v != "" {
			if err := t.p.Set(v); err != nil {
				return fmt.Errorf("%s: %w", t.env, err)
			}
		}
		fs.Var(t.p, t.name, "RAISE:CLEAR percentages of a threshold that notifies (hysteresis), 0 for off (env "+t.env+")")
	}
	return nil
}

// validateObserve checks the observe flags.
func (c ObserveConfig) validate() error {
	if c.MonitorInterval < 0 || c.MonitorInterval > 0 && c.MonitorInterval < time.Second {
		return fmt.Errorf("--monitor-interval %s: want at least 1s, or 0 for off", c.MonitorInterval)
	}
	return nil
}

// newNotifier builds the notification worker (its CheckURL is given to
// the command handler before the handler exists).
func newNotifier(m *Main, sealer domain.SecretSealer, ls *leases.Leases) (*notify.Worker, error) {
	w, err := notify.New(notify.Config{AllowPrivate: m.Config.Observe.NotificationsAllowPrivate, Leases: ls, Logger: m.Logger}, m.Store, m.Pool, sealer)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	return w, nil
}

// wireNotifications returns the ports of the notification endpoints and
// the sender's runner.
func wireNotifications(m *Main, cmds webui.NotificationCommands, w *notify.Worker) (webui.Notifications, Runner, error) {
	reader, err := notify.NewReader(m.Store, m.Pool)
	if err != nil {
		return webui.Notifications{}, Runner{}, err
	}
	return webui.Notifications{Commands: cmds, Reads: reader, Tester: w}, Runner{Name: "notifications", Run: w.Run}, nil
}

// wireMonitor builds the sampler of this process's server (named by
// --deploy-host) and, unless --monitor-interval is 0, its runner.
func wireMonitor(m *Main, ls *leases.Leases) (*monitor.Monitor, []Runner, error) {
	c := m.Config.Observe
	interval := c.MonitorInterval
	if interval == 0 {
		interval = monitor.DefaultInterval // reads only: nothing samples
	}
	mon, err := monitor.New(monitor.Config{
		Server: m.Config.DeployHost, DockerHost: m.Config.DockerHost, Interval: interval, DataDir: m.Config.DataDir,
		Thresholds: monitor.Thresholds{
			CPU:    monitor.Threshold(c.CPU),
			Memory: monitor.Threshold(c.Memory),
			Disk:   monitor.Threshold(c.Disk),
		},
		Leases: ls,
		Logger: m.Logger,
	}, m.Store, m.Pool)
	if err != nil {
		return nil, nil, fmt.Errorf("monitoring: %w", err)
	}
	m.closers = append(m.closers, mon.Close)
	if c.MonitorInterval == 0 {
		return mon, nil, nil
	}
	return mon, []Runner{{Name: "monitor", Run: mon.Run}}, nil
}

package domain

import "fmt"

// CategoryMonitor is the category of threshold streams: one per watched
// target and metric, "monitor-<kind>.<target>.<metric>". Samples themselves
// are not events (they live in a samples table with retention); only a
// threshold being crossed or cleared is.
const CategoryMonitor = "monitor"

// Kinds of monitored targets.
const (
	MonitorKindApp    = "app"
	MonitorKindServer = "server"
)

// Monitored metrics that thresholds watch.
const (
	MetricCPU    = "cpu"    // percent of the CPUs available (an app: of one core per CPU)
	MetricMemory = "memory" // percent of the memory available (an app: of its limit or the host's)
	MetricDisk   = "disk"   // percent of the data directory's file system used
)

// Event type names of thresholds. Stored in the log: never renamed.
const (
	EventThresholdCrossed = "monitor.threshold_crossed"
	EventThresholdCleared = "monitor.threshold_cleared"
)

// ThresholdStream is the stream of one target's metric thresholds.
func ThresholdStream(kind, target, metric string) string {
	return CategoryMonitor + "-" + kind + "." + target + "." + metric
}

// ThresholdCrossed is recorded ("monitor.threshold_crossed") when a metric
// stayed above its raise level for the configured number of samples.
// Project is the application's project (empty for a server).
type ThresholdCrossed struct {
	Kind    string  `json:"kind"`
	Target  string  `json:"target"`
	Project string  `json:"project,omitempty"`
	Metric  string  `json:"metric"`
	Value   float64 `json:"value"`
	Raise   float64 `json:"raise"`
	Clear   float64 `json:"clear"`
}

// ThresholdCleared is recorded ("monitor.threshold_cleared") when the metric
// of a crossed threshold fell below its clear level (hysteresis: the clear
// level is below the raise level, so a value hovering at the limit does not
// flap).
type ThresholdCleared struct {
	Kind    string  `json:"kind"`
	Target  string  `json:"target"`
	Project string  `json:"project,omitempty"`
	Metric  string  `json:"metric"`
	Value   float64 `json:"value"`
	Clear   float64 `json:"clear"`
}

// ValidateThreshold checks a raise and clear level pair (percent).
func ValidateThreshold(field string, raise, clear float64) error {
	if raise <= 0 || raise > 100 {
		return Invalid(field, "the raise level must be a percentage above 0 and at most 100")
	}
	if clear < 0 || clear >= raise {
		return Invalid(field, fmt.Sprintf("the clear level must be at least 0 and below the raise level %g", raise))
	}
	return nil
}

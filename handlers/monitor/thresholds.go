package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"berth/domain"
)

// Threshold is a raise level and a lower clear level, in percent. A zero
// Raise turns it off.
type Threshold struct{ Raise, Clear float64 }

// Thresholds are the levels that raise notifications. A metric must stay
// beyond a level for Sustain consecutive samples (3 by default) before it
// counts, so a single spike neither raises nor clears.
type Thresholds struct {
	// CPU: a server's share of all its cores; an application's share of
	// the host's cores.
	CPU Threshold
	// Memory: a server's used memory; an application's memory against its
	// limit (the host's memory when it has none).
	Memory Threshold
	// Disk: the used share of the file system of berth's data directory.
	Disk    Threshold
	Sustain int
}

// Validate reports every invalid threshold.
func (t Thresholds) Validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		t    Threshold
	}{{"cpu", t.CPU}, {"memory", t.Memory}, {"disk", t.Disk}} {
		if c.t.Raise == 0 {
			continue
		}
		if err := domain.ValidateThreshold("thresholds."+c.name, c.t.Raise, c.t.Clear); err != nil {
			errs = append(errs, err)
		}
	}
	if t.Sustain < 0 {
		errs = append(errs, errors.New("monitor: Sustain must not be negative"))
	}
	return errors.Join(errs...)
}

// thState is the hysteresis state of one target's metric.
type thState struct {
	raised       bool
	above, below int
	version      int64
}

// check feeds one value of a metric to its threshold and appends
// monitor.threshold_crossed or monitor.threshold_cleared when the state
// changes. The state of a metric seen for the first time is read from its
// stream, so a restart neither repeats nor forgets a crossing.
func (m *Monitor) check(ctx context.Context, kind, target, metric string, value float64, th Threshold) error {
	if th.Raise == 0 {
		return nil
	}
	stream := domain.ThresholdStream(kind, target, metric)
	st, ok := m.thresholds[stream]
	if !ok {
		recs, err := m.store.ReadStream(ctx, stream, 1, 0)
		if err != nil {
			return fmt.Errorf("monitor: read %s: %w", stream, err)
		}
		st = &thState{}
		if n := len(recs); n > 0 {
			st.raised = recs[n-1].Type == domain.EventThresholdCrossed
			st.version = recs[n-1].StreamVersion
		}
		m.thresholds[stream] = st
	}
	sustain := max(m.cfg.Thresholds.Sustain, 1)
	var typ string
	var data any
	project := ""
	if kind == domain.MonitorKindApp {
		project = m.appProject(ctx, target)
	}
	if !st.raised {
		st.below = 0
		if value >= th.Raise {
			st.above++
		} else {
			st.above = 0
		}
		if st.above < sustain {
			return nil
		}
		typ = domain.EventThresholdCrossed
		data = domain.ThresholdCrossed{Kind: kind, Target: target, Project: project, Metric: metric, Value: value, Raise: th.Raise, Clear: th.Clear}
	} else {
		st.above = 0
		if value < th.Clear {
			st.below++
		} else {
			st.below = 0
		}
		if st.below < sustain {
			return nil
		}
		typ = domain.EventThresholdCleared
		data = domain.ThresholdCleared{Kind: kind, Target: target, Project: project, Metric: metric, Value: value, Clear: th.Clear}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	expected := domain.ExpectVersion(st.version)
	if st.version == 0 {
		expected = domain.ExpectNoStream
	}
	res, err := m.store.Append(ctx, domain.StreamAppend{StreamID: stream, Expected: expected, Events: []domain.EventData{{
		ID: uuid.NewString(), Type: typ, SchemaVersion: 1, Data: raw,
		Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "monitor"}},
	}}})
	if err != nil {
		delete(m.thresholds, stream) // read again next time
		return fmt.Errorf("monitor: append %s: %w", typ, err)
	}
	st.raised = typ == domain.EventThresholdCrossed
	st.above, st.below = 0, 0
	st.version = res.Streams[0].Version
	m.log.Info("monitor: threshold "+map[bool]string{true: "crossed", false: "cleared"}[st.raised],
		"kind", kind, "target", target, "metric", metric, "value", value)
	return nil
}

// appProject returns the project of app's current incarnation ("" when
// unknown), cached and brought up to date with what its stream recorded
// since (a name deleted and created again may be in another project).
func (m *Monitor) appProject(ctx context.Context, app string) string {
	c := m.projects[app]
	recs, err := m.store.ReadStream(ctx, domain.AppStream(app), c.version+1, 0)
	if err != nil {
		return c.project
	}
	for _, r := range recs {
		if r.Type == domain.EventAppCreated {
			var d domain.AppCreated
			if json.Unmarshal(r.Data, &d) == nil {
				c.project = d.Project
			}
		}
		c.version = r.StreamVersion
	}
	m.projects[app] = c
	return c.project
}

// appProject is an application's project and the stream version it was
// read up to.
type appProject struct {
	project string
	version int64
}

package projections

import (
	"bytes"
	"encoding/json"
	"reflect"
	"syscall"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore"
	"berth/projections/historytest"
)

// checkFast fails unless decodePayload, where it decodes, decodes what
// encoding/json does; it reports whether it decoded.
func checkFast(t *testing.T, typ string, data []byte) bool {
	t.Helper()
	e := domain.RecordedEvent{Type: typ, Data: data}
	got, ok := decodePayload(e)
	want, err := domain.DecodeEvent(e)
	if ok && (err != nil || !reflect.DeepEqual(got, want)) {
		t.Errorf("%s %s: decodePayload = %#v, encoding/json = %#v (%v)", typ, data, got, want, err)
	}
	return ok
}

// checkMetadata fails unless eventstore.DecodeMetadata, which rebuilds
// use, decodes what encoding/json does.
func checkMetadata(t *testing.T, raw []byte) {
	t.Helper()
	var got, want domain.Metadata
	gotErr := eventstore.DecodeMetadata(raw, &got)
	err := json.Unmarshal(raw, &want)
	if (gotErr == nil) != (err == nil) || got != want {
		t.Errorf("metadata %s: eventstore.DecodeMetadata = %#v (%v), encoding/json = %#v (%v)", raw, got, gotErr, want, err)
	}
}

// TestDecodeFastMatchesEncodingJSON decodes a generated history, compact as
// encoding/json writes it and spaced as PostgreSQL prints jsonb, both ways.
func TestDecodePayloadMatchesEncodingJSON(t *testing.T) {
	g := historytest.New(historytest.Config{Seed: 7, Projects: 3, Apps: 40})
	fast := map[string]int{}
	for range 3_000 {
		for _, ev := range g.Next() {
			d := ev.Data
			var spaced bytes.Buffer
			if err := json.Indent(&spaced, d.Data, "", " "); err != nil {
				t.Fatal(err)
			}
			for _, raw := range [][]byte{d.Data, spaced.Bytes()} {
				if checkFast(t, d.Type, raw) {
					fast[d.Type]++
				}
			}
			// Damaged payloads must fail or decode as encoding/json does.
			for i := range len(d.Data) {
				if (i+len(d.Data))%17 != 0 {
					continue
				}
				for _, c := range []byte(`"{}[],:0-. \\ae`) {
					bad := bytes.Clone(d.Data)
					bad[i] = c
					checkFast(t, d.Type, bad)
				}
				checkFast(t, d.Type, d.Data[:i])
			}
			md, err := json.Marshal(d.Metadata)
			if err != nil {
				t.Fatal(err)
			}
			checkMetadata(t, md)
		}
	}
	for _, typ := range []string{domain.EventDeploymentRequested, domain.EventDeploymentQueued, domain.EventDeploymentStarted,
		domain.EventDeploymentSourceFetched, domain.EventAppDomainAdded, domain.EventAppUpdated, domain.EventAppEnvSet, domain.EventAppDomainRemoved, domain.EventAppStopped} {
		if fast[typ] == 0 {
			t.Errorf("no %s payload took the fast path", typ)
		}
	}
}

// TestDecodePayloadOddPayloads checks payloads decodePayload must leave to
// encoding/json, or decode exactly as it does.
func TestDecodePayloadOddPayloads(t *testing.T) {
	tests := []struct {
		typ, data string
		fast      bool
	}{
		{domain.EventDeploymentQueued, `{"deployment_id":"d1","app":"a"}`, true},
		{domain.EventDeploymentQueued, ` { "app" : "a" , "deployment_id" : "d1" } `, true},
		{domain.EventDeploymentQueued, `{}`, true},
		{domain.EventDeploymentQueued, `{"deployment_id":"d1","deployment_id":"d2"}`, true},
		{domain.EventDeploymentQueued, `{"App":"a"}`, false},
		{domain.EventDeploymentQueued, `{"app":"a","extra":1}`, false},
		{domain.EventDeploymentQueued, `{"app":null}`, false},
		{domain.EventDeploymentQueued, `{"app":"a\"b"}`, false},
		{domain.EventDeploymentQueued, `{"app":"a\u00e9"}`, false},
		{domain.EventDeploymentQueued, "{\"app\":\"caf\xc3\xa9\"}", false},
		{domain.EventDeploymentQueued, "{\"app\":\"bad\xff\"}", false},
		{domain.EventDeploymentQueued, `{"app":"a",}`, false},
		{domain.EventDeploymentQueued, `{"app":"a"}x`, false},
		{domain.EventDeploymentQueued, `{"app":"a"`, false},
		{domain.EventDeploymentQueued, `{"app" "a"}`, false},
		{domain.EventDeploymentQueued, `{"app":"a" "deployment_id":"d"}`, false},
		{domain.EventDeploymentQueued, `[]`, false},
		{domain.EventDeploymentQueued, ``, false},
		{domain.EventDeploymentQueued, `{"app":1}`, false},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":-12}`, true},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":0}`, true},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":-0}`, true},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":012}`, false},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":1.5}`, false},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":1e3}`, false},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":-}`, false},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":"5"}`, false},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":99999999999999999999}`, false},
		{domain.EventDeploymentHealthPassed, `{"duration_ms":9223372036854775807}`, true},
		{domain.EventDeploymentRequested, `{"deployment_id":"d","app":"a","app_version":3,"trigger":{"kind":"manual","detail":"x"},"ref":"main","rollback_of":"r","image_id":"i","retry_of":"t"}`, true},
		{domain.EventDeploymentRequested, `{"trigger":{"kind":"manual","extra":1}}`, false},
		{domain.EventDeploymentRequested, `{"trigger":null}`, false},
		{domain.EventDeploymentRequested, `{"trigger":{}}`, true},
		{domain.EventAppDomainAdded, `{"app":"a","route":{"host":"h.example.com","path_prefix":"/x","https":true,"port":8080}}`, true},
		{domain.EventAppDomainAdded, `{"app":"a","route":{"host":"h","https":false}}`, true},
		{domain.EventAppDomainAdded, `{"app":"a","route":{"host":"h","https":1}}`, false},
		{domain.EventAppDomainAdded, `{"app":"a","route":{"host":"h","https":tru}}`, false},
		{domain.EventAppStarted, `{"app":"a","container_id":"c","upstream_host":"u"}`, true},
		{domain.EventAppStopRequested, `{"app":"a"}`, true},
		{domain.EventAppStopRequested, `{"app":"a","other":"b"}`, false},
		{domain.EventDeploymentSucceeded, `{"deployment_id":"d","app":"a","image_id":"i","container_id":"c","duration_ms":5,"log_lines":3,"log_digest":"x"}`, true},
		{domain.EventDeploymentCancelled, `{"deployment_id":"d","app":"a","step":"build","log_lines":3}`, true},
		{domain.EventDeploymentFailed, `{"deployment_id":"d","app":"a","step":"build","reason":"r"}`, false},
		{domain.EventAppUpdated, `{"app":"a"}`, true},
		{domain.EventAppUpdated, `{"app":"a","changed":[]}`, true},
		{domain.EventAppUpdated, `{"app":"a","changed":["x", "y"]}`, true},
		{domain.EventAppUpdated, `{"app":"a","changed":null}`, false},
		{domain.EventAppUpdated, `{"app":"a","changed":["x",]}`, false},
		{domain.EventAppUpdated, `{"app":"a","changed":["x" "y"]}`, false},
		{domain.EventAppUpdated, `{"app":"a","changed":[1]}`, false},
		{domain.EventAppUpdated, `{"source":{"git_url":"u","git_ref":"r","image":"i"},"build":{"dockerfile":"D","context":".","target":"t","args":[{"key":"K","value":"V"}]},` +
			`"runtime":{"port":80,"volumes":[{"name":"n","path":"/p"}],"resources":{"cpu_millis":500,"memory_bytes":1048576},"replicas":2,"health_check":{"path":"/h","timeout_seconds":5},"restart_policy":"always"}}`, true},
		{domain.EventAppUpdated, `{"runtime":{"volumes":[]}}`, true},
		{domain.EventAppUpdated, `{"runtime":{"resources":{"cpu_millis":1.5}}}`, false},
		{domain.EventAppUpdated, `{"build":{"args":[{"key":"K","other":"V"}]}}`, false},
		{domain.EventAppEnvSet, `{"app":"a","env":[{"key":"MODE","value":"production"},{"key":"TOKEN","sealed":"Y2lwaGVy","secret":true}]}`, true},
		{domain.EventAppEnvSet, `{"app":"a","env":[]}`, true},
		{domain.EventAppEnvSet, `{"app":"a","env":[{"key":"K","sealed":""}]}`, true},
		{domain.EventAppEnvSet, `{"app":"a","env":[{"key":"K","sealed":"!!"}]}`, false},
		{domain.EventAppEnvSet, `{"app":"a","env":[{"key":"K","sealed":"Y2l\/"}]}`, false},
		{domain.EventAppEnvSet, `{"app":"a","env":[{"key":"K","secret":null}]}`, false},
	}
	for _, tt := range tests {
		checkFast(t, tt.typ, []byte(tt.data))
	}
	for _, raw := range []string{
		`{"actor":{"kind":"user","id":"u1","name":"alice"},"correlation_id":"c","causation_id":"d","command_id":"e","origin":"10.0.0.9"}`,
		`{"actor": {"id": "deployer", "kind": "system"}, "correlation_id": "corr-1"}`,
		`{"actor":{"kind":"user","ID":"u1"}}`,
		`{"actor":null}`,
		`{"origin":"a\/b"}`,
		`{"unknown":"x"}`,
	} {
		checkMetadata(t, []byte(raw))
	}
}

// BenchmarkDecodeFast decodes the payloads and metadata of a generated
// history, compact as encoding/json writes them and spaced, b.N times
// over; it reports the time per event, and the CPU time per event too,
// which other processes on a busy machine disturb less.
func BenchmarkDecodePayload(b *testing.B) {
	g := historytest.New(historytest.Config{Seed: 11, Projects: 3, Apps: 40})
	var compact, spaced []domain.RecordedEvent
	var metadata [][]byte
	for len(compact) < 20_000 {
		for _, ev := range g.Next() {
			d := ev.Data
			compact = append(compact, domain.RecordedEvent{Type: d.Type, Data: d.Data})
			var buf bytes.Buffer
			if err := json.Indent(&buf, d.Data, "", " "); err != nil {
				b.Fatal(err)
			}
			spaced = append(spaced, domain.RecordedEvent{Type: d.Type, Data: buf.Bytes()})
			md, err := json.Marshal(d.Metadata)
			if err != nil {
				b.Fatal(err)
			}
			metadata = append(metadata, md)
		}
	}
	for _, bc := range []struct {
		name   string
		events []domain.RecordedEvent
	}{{"compact", compact}, {"spaced", spaced}} {
		b.Run(bc.name, func(b *testing.B) {
			fast := 0
			cpu := cpuTime()
			for b.Loop() {
				fast = 0
				for _, e := range bc.events {
					if _, ok := decodePayload(e); ok {
						fast++
					}
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*len(bc.events)), "cpu-ns/event")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bc.events)), "ns/event")
			b.ReportMetric(float64(fast)/float64(len(bc.events)), "fast/event")
		})
	}
	b.Run("metadata", func(b *testing.B) {
		var md domain.Metadata
		cpu := cpuTime()
		for b.Loop() {
			for _, raw := range metadata {
				md = domain.Metadata{}
				if err := eventstore.DecodeMetadata(raw, &md); err != nil {
					b.Fatalf("metadata %s: %v", raw, err)
				}
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*len(metadata)), "cpu-ns/event")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(metadata)), "ns/event")
	})
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

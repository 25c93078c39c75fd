package projections

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// copyDeployments COPYs deps into table (rm_deployments or its fresh copy)
// in PostgreSQL's binary COPY format, encoded here without boxing every
// value: a rebuild copies every deployment ever requested. The values are
// those deploymentRow gives the live projection, in deploymentColumns
// order; the rebuild-equals-live test holds the two together.
func copyDeployments(ctx context.Context, tx pgx.Tx, table string, deps []*Deployment) error {
	r := &copyReader{buf: append(make([]byte, 0, 64<<10), "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"...)}
	r.fill = func(b []byte) ([]byte, bool, error) {
		for len(b) < 60<<10 && len(deps) > 0 {
			var err error
			if b, err = appendDeploymentTuple(b, deps[0]); err != nil {
				return nil, false, err
			}
			deps = deps[1:]
		}
		if len(deps) > 0 {
			return b, true, nil
		}
		return binary.BigEndian.AppendUint16(b, 0xffff), false, nil // trailer
	}
	sql := "COPY " + pgx.Identifier{table}.Sanitize() + " (" + cols(deploymentColumns) + ") FROM STDIN WITH (FORMAT binary)"
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, sql); err != nil {
		return fmt.Errorf("rebuild: copy into %s: %w", table, err)
	}
	return nil
}

// copyReader streams what fill appends, a buffer at a time.
type copyReader struct {
	buf  []byte
	off  int
	done bool
	fill func(b []byte) (out []byte, more bool, err error)
}

func (r *copyReader) Read(p []byte) (int, error) {
	if r.off == len(r.buf) {
		if r.done {
			return 0, io.EOF
		}
		b, more, err := r.fill(r.buf[:0])
		if err != nil {
			return 0, err
		}
		r.buf, r.off, r.done = b, 0, !more
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// postgresEpoch is 2000-01-01 UTC in microseconds since the Unix epoch.
const postgresEpoch = 946684800000000

func appendDeploymentTuple(b []byte, d *Deployment) ([]byte, error) {
	steps, err := encodeSteps(d.Steps)
	if err != nil {
		return nil, fmt.Errorf("encode steps of %s: %w", d.ID, err)
	}
	if d.Attempts > math.MaxInt32 || d.Attempts < math.MinInt32 {
		return nil, fmt.Errorf("deployment %s: %d attempts do not fit an integer", d.ID, d.Attempts)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(deploymentColumns)))
	for _, s := range []string{d.ID, d.App, d.Status, d.Step, d.Trigger.Kind, d.Trigger.Detail,
		d.Actor.Kind, d.Actor.ID, d.Actor.Name, d.CorrelationID} {
		b = copyText(b, s)
	}
	b = copyInt8(b, d.AppVersion)
	for _, s := range []string{d.Ref, d.CommitSHA, d.ImageID, d.ContainerID, d.ContainerName, d.RollbackOf, d.RetryOf, d.Worker} {
		b = copyText(b, s)
	}
	b = binary.BigEndian.AppendUint32(b, 4)
	b = binary.BigEndian.AppendUint32(b, uint32(int32(d.Attempts)))
	b = binary.BigEndian.AppendUint32(b, 1)
	if d.CancelRequested {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(steps))) // json: the text itself
	b = append(b, steps...)
	b = copyTime(b, &d.RequestedAt)
	b = copyTime(b, d.QueuedAt)
	b = copyTime(b, d.StartedAt)
	b = copyTime(b, d.FinishedAt)
	b = copyInt8(b, d.DurationMS)
	b = copyText(b, d.FailedStep)
	b = copyText(b, d.FailureReason)
	b = copyInt8(b, d.QueueSeq)
	b = copyInt8(b, d.Position)
	if d.Incarnation > math.MaxInt32 || d.Incarnation < math.MinInt32 {
		return nil, fmt.Errorf("deployment %s: incarnation %d does not fit an integer", d.ID, d.Incarnation)
	}
	b = binary.BigEndian.AppendUint32(b, 4)
	b = binary.BigEndian.AppendUint32(b, uint32(int32(d.Incarnation)))
	services := jsonObject(d.Services)
	b = binary.BigEndian.AppendUint32(b, uint32(len(services))) // json: the text itself
	return append(b, services...), nil
}

func copyText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func copyInt8(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// copyTime encodes a timestamptz as pgx does (microseconds since 2000,
// truncated); nil is NULL.
func copyTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	us := t.Unix()*1000000 + int64(t.Nanosecond())/1000 - postgresEpoch
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(us))
}

// Package buildlog keeps deployments' build logs in PostgreSQL: an
// append-only table of lines numbered gaplessly per deployment, an explicit
// end marker carrying the line count and a SHA-256 digest (which the
// deployment's final event records, so the event log's hash chain covers the
// build log), paged reads, and live following through LISTEN/NOTIFY with a
// polling fallback.
//
// Build output is not an event: it is large and noisy. The deployer is the
// single writer of a deployment's log; concurrent Appends to one deployment
// are serialised by a transaction-scoped advisory lock, so they stay correct
// but gain nothing.
package buildlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Channel is the PostgreSQL notification channel Append and Close notify on;
// the payload is the deployment id.
const Channel = "berth_deployment_logs"

// Streams a line can belong to.
const (
	StreamBuild  = "build"  // output of git and docker build
	StreamDeploy = "deploy" // the deployer's own progress lines
)

// Limits.
const (
	// MaxLineBytes is the longest stored line; longer ones are cut at a rune
	// boundary.
	MaxLineBytes = 64 << 10
	// DefaultPage and MaxPage bound Read's limit.
	DefaultPage = 1000
	MaxPage     = 10000
	// PollInterval is how often Follow re-reads when no notification came.
	PollInterval = time.Second
)

// ErrEnded reports an Append to a log that was already closed. It wraps
// domain.ErrConflict.
var ErrEnded = fmt.Errorf("deployment log already ended: %w", domain.ErrConflict)

// Line is one stored line.
type Line struct {
	Seq    int64 // 1, 2, 3, … per deployment, without gaps
	Text   string
	Stream string
	At     time.Time
}

// Summary is what Close records at the end of a log and what the
// deployment's final event carries.
type Summary struct {
	Lines  int64
	Digest string // hex SHA-256 over every line followed by "\n", in seq order
}

// Digest returns the digest of lines as Close computes it (lines as stored:
// see Sanitize).
func Digest(lines []string) string {
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Sanitize returns a line as it is stored: valid UTF-8 (invalid bytes and NUL,
// which PostgreSQL text cannot hold, become U+FFFD), without a trailing "\r",
// cut to MaxLineBytes.
func Sanitize(s string) string {
	s = strings.TrimSuffix(s, "\r")
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if len(s) > MaxLineBytes {
		cut := MaxLineBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// Store is the build-log store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool

	// Live-follow hub: one LISTEN connection while anyone follows.
	mu        sync.Mutex
	subs      map[string]map[chan struct{}]struct{}
	followers int
	stop      context.CancelFunc
}

// New returns a Store on pool, whose database has the migrations applied.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, subs: make(map[string]map[chan struct{}]struct{})}
}

func validateID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
		return domain.Invalid("deployment_id", "must be 1-128 characters without whitespace or control characters")
	}
	return nil
}

func validateStream(s string) error {
	if s == "" || len(s) > 16 || strings.ContainsFunc(s, func(r rune) bool { return r < 'a' || r > 'z' }) {
		return domain.Invalid("stream", "must be 1-16 letters a-z")
	}
	return nil
}

// Append adds lines to the build stream of deploymentID's log. See
// AppendStream.
func (s *Store) Append(ctx context.Context, deploymentID string, lines []string) error {
	return s.AppendStream(ctx, deploymentID, StreamBuild, lines)
}

// AppendStream adds lines (sanitized, see Sanitize) to deploymentID's log in
// one round trip, numbering them after the last stored line, and notifies
// followers. It returns ErrEnded once the log is closed.
func (s *Store) AppendStream(ctx context.Context, deploymentID, stream string, lines []string) error {
	if err := validateID(deploymentID); err != nil {
		return err
	}
	if err := validateStream(stream); err != nil {
		return err
	}
	if len(lines) == 0 {
		return nil
	}
	clean := make([]string, len(lines))
	for i, l := range lines {
		clean[i] = Sanitize(l)
	}
	// One batch is one implicit transaction: the lock, the insert and the
	// notification commit together.
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended('berth.buildlog:' || $1, 0))`, deploymentID)
	b.Queue(`
		WITH base AS (
			SELECT coalesce(max(seq), 0) AS s FROM deployment_logs WHERE deployment_id = $1
		), ins AS (
			INSERT INTO deployment_logs (deployment_id, seq, line, stream, at)
			SELECT $1, base.s + t.ord, t.line, $2, $3
			FROM base, unnest($4::text[]) WITH ORDINALITY AS t(line, ord)
			WHERE NOT EXISTS (SELECT 1 FROM deployment_log_ends WHERE deployment_id = $1)
			RETURNING 1
		)
		SELECT count(*) FROM ins`, deploymentID, stream, time.Now(), clean)
	b.Queue(`SELECT pg_notify($1, $2)::text`, Channel, deploymentID)
	br := s.pool.SendBatch(ctx, b)
	var inserted int64
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&inserted)
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to log of %s: %w", deploymentID, err)
	}
	if inserted == 0 {
		return fmt.Errorf("append to log of %s: %w", deploymentID, ErrEnded)
	}
	return nil
}

// Close marks the explicit end of deploymentID's log and returns its
// summary. Closing again returns the recorded summary; closing a log with no
// lines records zero lines.
func (s *Store) Close(ctx context.Context, deploymentID string) (Summary, error) {
	if err := validateID(deploymentID); err != nil {
		return Summary{}, err
	}
	var sum Summary
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('berth.buildlog:' || $1, 0))`, deploymentID); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT lines, digest FROM deployment_log_ends WHERE deployment_id = $1`, deploymentID).Scan(&sum.Lines, &sum.Digest)
		if err == nil {
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT seq, line FROM deployment_logs WHERE deployment_id = $1 ORDER BY seq`, deploymentID)
		if err != nil {
			return err
		}
		h := sha256.New()
		var n, seq int64
		var line string
		_, err = pgx.ForEachRow(rows, []any{&seq, &line}, func() error {
			n++
			if seq != n {
				return fmt.Errorf("log of %s has a gap at seq %d", deploymentID, n)
			}
			h.Write([]byte(line))
			h.Write([]byte{'\n'})
			return nil
		})
		if err != nil {
			return err
		}
		sum = Summary{Lines: n, Digest: hex.EncodeToString(h.Sum(nil))}
		if _, err := tx.Exec(ctx, `INSERT INTO deployment_log_ends (deployment_id, lines, digest) VALUES ($1, $2, $3)`, deploymentID, sum.Lines, sum.Digest); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, deploymentID)
		return err
	})
	if err != nil {
		return Summary{}, fmt.Errorf("close log of %s: %w", deploymentID, err)
	}
	return sum, nil
}

// Read returns up to limit lines of deploymentID's log with Seq > afterSeq
// (limit <= 0: DefaultPage; at most MaxPage), and whether the log has ended
// with nothing after them. An unknown deployment has no lines and has not
// ended.
func (s *Store) Read(ctx context.Context, deploymentID string, afterSeq int64, limit int) ([]Line, bool, error) {
	if err := validateID(deploymentID); err != nil {
		return nil, false, err
	}
	if limit <= 0 {
		limit = DefaultPage
	}
	limit = min(limit, MaxPage)
	// Read the end marker first: once it exists, every line is committed.
	endLines := int64(-1)
	err := s.pool.QueryRow(ctx, `SELECT lines FROM deployment_log_ends WHERE deployment_id = $1`, deploymentID).Scan(&endLines)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, false, fmt.Errorf("read log of %s: %w", deploymentID, err)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT seq, line, stream, at FROM deployment_logs
		WHERE deployment_id = $1 AND seq > $2
		ORDER BY seq LIMIT $3`, deploymentID, afterSeq, limit)
	if err != nil {
		return nil, false, fmt.Errorf("read log of %s: %w", deploymentID, err)
	}
	lines, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Line, error) {
		var l Line
		err := r.Scan(&l.Seq, &l.Text, &l.Stream, &l.At)
		return l, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("read log of %s: %w", deploymentID, err)
	}
	last := afterSeq
	if n := len(lines); n > 0 {
		last = lines[n-1].Seq
	}
	return lines, endLines >= 0 && last >= endLines, nil
}

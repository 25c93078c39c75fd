// Package certificates records in the log what happens to the certificates
// Traefik's ACME resolver obtains for berth's domains: a Watcher reads
// Traefik's ACME storage file (acme.json) for the certificates it holds and
// Traefik's log for the requests that failed, and appends
// domain.certificate_issued and domain.certificate_failed events to the
// host's stream whenever a domain's state changes, so the API, the UI, the
// event history and webhooks all see it.
package certificates

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"berth/domain"
)

// Component is the system actor named on the events a Watcher appends.
const Component = "certificates"

// Routes tells the Watcher which hosts get their certificate from ACME.
type Routes interface {
	// ACMEHosts returns host → owning application for every route that is
	// served over HTTPS with a certificate from the ACME resolver. Safe for
	// concurrent use.
	ACMEHosts(ctx context.Context) (map[string]string, error)
}

// RoutesFunc adapts a function to Routes.
type RoutesFunc func(ctx context.Context) (map[string]string, error)

// ACMEHosts calls f.
func (f RoutesFunc) ACMEHosts(ctx context.Context) (map[string]string, error) { return f(ctx) }

// Config configures a Watcher.
type Config struct {
	// Storage is Traefik's ACME storage file (certificatesResolvers.<r>.
	// acme.storage); required. It may not exist yet.
	Storage string
	// Resolver is the resolver's name, the key in Storage ("letsencrypt").
	Resolver string
	// LogFile is Traefik's log file, read for failed requests (JSON or
	// Traefik's common format); empty: failures are not recorded. It is
	// read from its start, then followed; a failure only counts while the
	// storage holds no valid certificate for the host.
	LogFile string
	// Interval is how often both are read (2 s).
	Interval time.Duration
	Logger   *slog.Logger
}

// Watcher turns what Traefik's ACME resolver does into events.
type Watcher struct {
	cfg    Config
	store  domain.EventStore
	routes Routes
	log    *slog.Logger

	mu       sync.Mutex
	offset   int64             // bytes of LogFile read so far; -1 before the first Sync
	failures map[string]string // host -> last failure reason read from the log
	// seen is, per host, what the log was last found to say (the owner and
	// the fingerprint or failure): a host whose observation has not
	// changed since is not read again.
	seen map[string]string
	// passes counts Syncs; every fullEvery-th reads every host again, so a
	// host removed and added back between two passes is not missed.
	passes int
}

// fullEvery is how often (in passes) every host's stream is read again.
const fullEvery = 30

// New returns a Watcher appending to store.
func New(cfg Config, store domain.EventStore, routes Routes) (*Watcher, error) {
	if cfg.Storage == "" {
		return nil, fmt.Errorf("certificates: %w", domain.Invalid("storage", "is required"))
	}
	if store == nil || routes == nil {
		return nil, fmt.Errorf("certificates: a store and routes are required: %w", domain.ErrInvalid)
	}
	if cfg.Resolver == "" {
		cfg.Resolver = "letsencrypt"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{cfg: cfg, store: store, routes: routes, log: cfg.Logger, offset: -1, failures: map[string]string{}, seen: map[string]string{}}, nil
}

// Run syncs every Interval until ctx ends. Errors of one pass are logged
// and the next pass tries again.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := w.Sync(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("certificates: sync failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync reads the storage file and the new lines of the log once and
// appends an event for each ACME host whose state changed. It returns how
// many events it appended. A host another writer touched meanwhile is left
// for the next pass.
func (w *Watcher) Sync(ctx context.Context) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.readLog(); err != nil {
		w.log.Warn("certificates: read Traefik's log", "file", w.cfg.LogFile, "err", err)
	}
	hosts, err := w.routes.ACMEHosts(ctx)
	if err != nil {
		return 0, fmt.Errorf("certificates: routes: %w", err)
	}
	held, err := ReadStorage(w.cfg.Storage, w.cfg.Resolver)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	n := 0
	var errs []error
	w.passes++
	for host := range w.seen {
		if _, ok := hosts[host]; !ok || w.passes%fullEvery == 0 {
			delete(w.seen, host)
		}
	}
	for host, app := range hosts {
		c, issued := held[host]
		issued = issued && now.Before(c.NotAfter)
		observed := app + " none"
		if issued {
			observed = app + " issued " + c.Fingerprint
		} else if reason, ok := w.failures[host]; ok {
			observed = app + " failed " + reason
		}
		if w.seen[host] == observed {
			continue
		}
		recs, err := w.store.ReadStream(ctx, domain.HostStream(host), 1, 0)
		if err != nil {
			return n, fmt.Errorf("certificates: read %s: %w", host, err)
		}
		h, err := domain.LoadHost(host, recs)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var events []domain.Event
		if issued {
			events = h.RecordIssued(app, c)
			delete(w.failures, host)
		} else if reason, ok := w.failures[host]; ok {
			events = h.RecordFailed(app, reason)
		}
		if len(events) == 0 {
			w.seen[host] = observed
			continue
		}
		if err := w.append(ctx, h, events); err != nil {
			if errors.Is(err, domain.ErrConcurrency) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		w.seen[host] = observed
		n += len(events)
	}
	return n, errors.Join(errs...)
}

func (w *Watcher) append(ctx context.Context, h *domain.Host, events []domain.Event) error {
	id := uuid.NewString()
	md := domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: Component}, CorrelationID: id, CausationID: id, CommandID: id}
	data := make([]domain.EventData, 0, len(events))
	for i, e := range events {
		eid := id
		if i > 0 {
			eid = uuid.NewString()
		}
		ed, err := e.Encode(eid, md)
		if err != nil {
			return err
		}
		data = append(data, ed)
	}
	_, err := w.store.Append(ctx, domain.StreamAppend{StreamID: domain.HostStream(h.Name()), Expected: domain.ExpectVersion(h.Version()), Events: data})
	if err != nil {
		return fmt.Errorf("certificates: record %s: %w", h.Name(), err)
	}
	return nil
}

// ReadStorage reads the certificates resolver holds in Traefik's ACME
// storage file, by host (the main domain and every SAN). A missing or
// empty file holds none.
func ReadStorage(path, resolver string) (map[string]domain.CertificateIssued, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(strings.TrimSpace(string(b))) == 0) {
		return map[string]domain.CertificateIssued{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	var file map[string]struct {
		Certificates []struct {
			Domain struct {
				Main string   `json:"main"`
				SANs []string `json:"sans"`
			} `json:"domain"`
			Certificate []byte `json:"certificate"`
		} `json:"Certificates"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("certificates: %s: %w", path, err)
	}
	out := map[string]domain.CertificateIssued{}
	for _, c := range file[resolver].Certificates {
		block, _ := pem.Decode(c.Certificate)
		if block == nil {
			continue
		}
		leaf, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		sum := sha256.Sum256(leaf.Raw)
		issued := domain.CertificateIssued{
			Source: domain.CertSourceACME, Fingerprint: hex.EncodeToString(sum[:]), Issuer: leaf.Issuer.String(),
			NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
		}
		for _, h := range append([]string{c.Domain.Main}, c.Domain.SANs...) {
			h = strings.ToLower(h)
			if h == "" || leaf.VerifyHostname(h) != nil {
				continue
			}
			if old, ok := out[h]; !ok || issued.NotAfter.After(old.NotAfter) {
				out[h] = issued
			}
		}
	}
	return out, nil
}

// failureMessage starts the message Traefik logs when a certificate
// request fails ("… for domains" or "… for domain").
const failureMessage = "Unable to obtain ACME certificate for domain"

var (
	commonDomains = regexp.MustCompile(`domains=\[([^\]]*)\]`)
	commonError   = regexp.MustCompile(`error="((?:[^"\\]|\\.)*)"`)
)

// ParseFailure reads one line of Traefik's log and returns the hosts and
// reason of a failed certificate request, or ok false for any other line.
// The reason leaves out the challenge token, which differs at every attempt,
// so that a request failing again for the same cause is the same failure.
func ParseFailure(line string) (hosts []string, reason string, ok bool) {
	hosts, reason, ok = parseFailure(line)
	return hosts, challengeToken.ReplaceAllString(reason, "${1}…"), ok
}

// challengeToken matches the token of an HTTP-01 challenge URL.
var challengeToken = regexp.MustCompile(`(/\.well-known/acme-challenge/)[A-Za-z0-9_-]+`)

func parseFailure(line string) (hosts []string, reason string, ok bool) {
	if !strings.Contains(line, failureMessage) {
		return nil, "", false
	}
	var j struct {
		Message string   `json:"message"`
		Error   string   `json:"error"`
		Domains []string `json:"domains"`
	}
	if strings.HasPrefix(strings.TrimSpace(line), "{") && json.Unmarshal([]byte(line), &j) == nil {
		return lower(j.Domains), j.Error, len(j.Domains) > 0
	}
	m := commonDomains.FindStringSubmatch(line)
	if m == nil {
		return nil, "", false
	}
	for _, f := range strings.Split(m[1], ",") {
		if h := strings.Trim(strings.TrimSpace(f), `"`); h != "" {
			hosts = append(hosts, h)
		}
	}
	if e := commonError.FindStringSubmatch(line); e != nil {
		if s, err := strconv.Unquote(`"` + e[1] + `"`); err == nil {
			reason = s
		} else {
			reason = e[1]
		}
	}
	return lower(hosts), reason, len(hosts) > 0
}

func lower(hosts []string) []string {
	for i, h := range hosts {
		hosts[i] = strings.ToLower(h)
	}
	return hosts
}

// maxLine bounds one line of Traefik's log.
const maxLine = 1 << 20

// readLog reads the lines appended to the log since the last call and
// remembers the failures among them. The caller holds w.mu.
func (w *Watcher) readLog() error {
	if w.cfg.LogFile == "" {
		return nil
	}
	f, err := os.Open(w.cfg.LogFile)
	if errors.Is(err, fs.ErrNotExist) {
		if w.offset < 0 {
			w.offset = 0
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if w.offset < 0 || fi.Size() < w.offset { // first read, or the log was truncated or rotated
		w.offset = 0
	}
	if _, err := f.Seek(w.offset, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// A partial last line is read again next time.
			return nil
		}
		w.offset += int64(len(line))
		if len(line) > maxLine {
			continue
		}
		if hosts, reason, ok := ParseFailure(line); ok {
			if reason == "" {
				reason = "Traefik could not obtain a certificate (no reason given)"
			}
			for _, h := range hosts {
				w.failures[h] = reason
			}
		}
	}
}

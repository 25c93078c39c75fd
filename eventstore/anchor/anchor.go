// Package anchor signs checkpoints of berth's event log, the position and
// hash of its head, with an Ed25519 key kept outside PostgreSQL, and
// publishes them where the database's owner cannot reach: a directory (one
// file per checkpoint), the log itself (domain.EventCheckpointSigned, which
// the live stream and webhooks carry) and the API. Check compares a log
// with any set of checkpoints, and names the first position where a
// rewrite or a truncation disagrees with them.
package anchor

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"berth/domain"
)

// Checkpoint is a signed (position, hash) of the log. An auditor's own note
// (see ParseExpect) has no key or signature.
type Checkpoint struct {
	Position  int64     `json:"position"`
	Hash      string    `json:"hash"` // hex SHA-256 of the event at Position
	Key       string    `json:"key,omitempty"`
	Signature string    `json:"signature,omitempty"`
	SignedAt  time.Time `json:"signed_at,omitzero"`
	// EventPosition is where the checkpoint's own event is in the log
	// (served by the API; not signed).
	EventPosition int64 `json:"event_position,omitempty"`
}

// Message returns the bytes a checkpoint's signature covers.
func Message(position int64, hash string) []byte {
	return fmt.Appendf(nil, "berth.checkpoint.v1\n%d\n%s\n", position, strings.ToLower(hash))
}

// Sign returns the checkpoint of position and hash signed with key.
func Sign(key ed25519.PrivateKey, position int64, hash []byte, now time.Time) Checkpoint {
	h := hex.EncodeToString(hash)
	return Checkpoint{
		Position:  position,
		Hash:      h,
		Key:       PublicKey(key.Public().(ed25519.PublicKey)),
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(key, Message(position, h))),
		SignedAt:  now.UTC().Truncate(time.Second),
	}
}

// PublicKey returns pub in the form checkpoints and `berth audit key` show:
// standard base64 of its 32 bytes.
func PublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// ParsePublicKey parses PublicKey's form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("anchor: public key %q: want %d bytes in standard base64", s, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// VerifySignature checks c's signature with want, or with the key c names
// when want is nil. A checkpoint without a signature (an auditor's note)
// passes.
func (c Checkpoint) VerifySignature(want ed25519.PublicKey) error {
	if c.Signature == "" && c.Key == "" {
		return nil
	}
	pub, err := ParsePublicKey(c.Key)
	if err != nil {
		return err
	}
	if want != nil && !pub.Equal(want) {
		return fmt.Errorf("anchor: checkpoint at %d is signed by key %s, not %s", c.Position, c.Key, PublicKey(want))
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, Message(c.Position, c.Hash), sig) {
		return fmt.Errorf("anchor: checkpoint at %d: the signature does not verify", c.Position)
	}
	return nil
}

func (c Checkpoint) validate() error {
	if c.Position < 1 {
		return fmt.Errorf("anchor: checkpoint position %d: must be at least 1", c.Position)
	}
	if b, err := hex.DecodeString(c.Hash); err != nil || len(b) != 32 {
		return fmt.Errorf("anchor: checkpoint at %d: hash must be 64 hex digits", c.Position)
	}
	return nil
}

// ParseExpect parses an auditor's note "POSITION:HASH" (hash in hex).
func ParseExpect(s string) (Checkpoint, error) {
	pos, hash, ok := strings.Cut(s, ":")
	p, err := strconv.ParseInt(pos, 10, 64)
	if !ok || err != nil {
		return Checkpoint{}, fmt.Errorf("%q: want POSITION:HASH", s)
	}
	c := Checkpoint{Position: p, Hash: strings.ToLower(strings.TrimSpace(hash))}
	if err := c.validate(); err != nil {
		return Checkpoint{}, fmt.Errorf("%q: %w", s, err)
	}
	return c, nil
}

// LoadOrCreateKey reads the Ed25519 key from path (PEM, PKCS #8), or
// generates one and writes it with mode 0600 when the file does not exist.
// It refuses a file other users can read or write. created reports whether
// the key was generated now.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := createKey(path)
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateKey(path)
		}
		return key, err == nil, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("anchor: read checkpoint key: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("anchor: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, false, fmt.Errorf("anchor: checkpoint key %s has mode %04o: other users can read or write it; chmod 600 it", path, perm)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("anchor: checkpoint key %s: want a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("anchor: checkpoint key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("anchor: checkpoint key %s is not an Ed25519 key", path)
	}
	return ek, false, nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("anchor: create checkpoint key directory: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("anchor: generate checkpoint key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("anchor: create checkpoint key: %w", err)
	}
	werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("anchor: write checkpoint key: %w", err)
	}
	return key, nil
}

// FileName is the name of c's file in an anchor directory.
func FileName(position int64) string { return fmt.Sprintf("checkpoint-%020d.json", position) }

// WriteFile writes c into dir as FileName, atomically (temporary file,
// fsync, rename), creating dir.
func WriteFile(dir string, c Checkpoint) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	f, err := os.CreateTemp(dir, ".checkpoint-*.tmp")
	if err != nil {
		return fmt.Errorf("anchor: %w", err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("anchor: write checkpoint: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, FileName(c.Position))); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("anchor: %w", err)
	}
	return nil
}

// Load reads checkpoints from src: an http(s) URL (an anchor served over
// HTTP, or GET /api/v1/audit/checkpoints, sending token as a bearer token
// when not empty), a directory (every *.json file in it) or one file. A
// document may hold one checkpoint, an array of them, or an object with a
// "checkpoints" array.
func Load(ctx context.Context, src, token string) ([]Checkpoint, error) {
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		return fetch(ctx, src, token)
	}
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("anchor: %w", err)
		}
		return parse(b, src)
	}
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	var out []Checkpoint
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("anchor: %w", err)
		}
		cps, err := parse(b, f)
		if err != nil {
			return nil, err
		}
		out = append(out, cps...)
	}
	return out, nil
}

// fetch GETs src, following next_after of the API's pages.
func fetch(ctx context.Context, src, token string) ([]Checkpoint, error) {
	var out []Checkpoint
	u, err := url.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("anchor: %w", err)
	}
	for range 100000 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("anchor: %w", err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("anchor: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("anchor: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("anchor: GET %s: %s", u.Redacted(), resp.Status)
		}
		cps, err := parse(b, u.Redacted())
		if err != nil {
			return nil, err
		}
		out = append(out, cps...)
		var page struct {
			NextAfter int64 `json:"next_after"`
		}
		if json.Unmarshal(b, &page) != nil || page.NextAfter <= 0 {
			return out, nil
		}
		q := u.Query()
		q.Set("after", strconv.FormatInt(page.NextAfter, 10))
		u.RawQuery = q.Encode()
	}
	return nil, fmt.Errorf("anchor: GET %s: too many pages", u.Redacted())
}

func parse(b []byte, src string) ([]Checkpoint, error) {
	b = bytes.TrimSpace(b)
	var out []Checkpoint
	var err error
	switch {
	case len(b) > 0 && b[0] == '[':
		err = json.Unmarshal(b, &out)
	case bytes.Contains(b, []byte(`"checkpoints"`)):
		var page struct {
			Checkpoints []Checkpoint `json:"checkpoints"`
		}
		err = json.Unmarshal(b, &page)
		out = page.Checkpoints
	default:
		var c Checkpoint
		err = json.Unmarshal(b, &c)
		out = []Checkpoint{c}
	}
	if err != nil {
		return nil, fmt.Errorf("anchor: %s: %w", src, err)
	}
	for _, c := range out {
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
	}
	return out, nil
}

// HashReader reads the stored hash of the event at a position, and the
// last position stored.
type HashReader interface {
	HashAt(ctx context.Context, position int64) ([]byte, bool, error)
	LastPosition(ctx context.Context) (int64, error)
}

// Disagreement is the first position where the log disagrees with a
// checkpoint.
type Disagreement struct {
	Position   int64 // first position that disagrees: a rewritten one, or the first one missing
	Checkpoint Checkpoint
	Cause      string
}

// Check compares the log with every checkpoint, in position order, and
// returns the first disagreement, or nil when the log holds every
// checkpoint's hash at its position. Each signed checkpoint must verify
// with key (or, when key is nil, with the key it names); one that does not
// is an error, not evidence.
//
// A checkpoint beyond the log's last position means the tail was removed:
// the first missing position is named. A checkpoint whose position holds
// another hash means the history at or before it was rewritten, after the
// last checkpoint that still agrees: that checkpoint's position is named.
func Check(ctx context.Context, log HashReader, cps []Checkpoint, key ed25519.PublicKey) (*Disagreement, error) {
	cps = append([]Checkpoint(nil), cps...)
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].Position < cps[j].Position })
	for _, c := range cps {
		if err := c.validate(); err != nil {
			return nil, err
		}
		if err := c.VerifySignature(key); err != nil {
			return nil, err
		}
	}
	last, err := log.LastPosition(ctx)
	if err != nil {
		return nil, err
	}
	agreed := int64(0)
	for _, c := range cps {
		if c.Position > last {
			return &Disagreement{Position: last + 1, Checkpoint: c, Cause: fmt.Sprintf(
				"the log ends at position %d but a checkpoint records position %d: the tail from position %d was removed",
				last, c.Position, last+1)}, nil
		}
		h, ok, err := log.HashAt(ctx, c.Position)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &Disagreement{Position: c.Position, Checkpoint: c, Cause: fmt.Sprintf("position %d, recorded by a checkpoint, is missing", c.Position)}, nil
		}
		if hex.EncodeToString(h) != strings.ToLower(c.Hash) {
			return &Disagreement{Position: c.Position, Checkpoint: c, Cause: fmt.Sprintf(
				"the hash at position %d is not the checkpoint's: the history after position %d (the last checkpoint that agrees) and up to %d was rewritten",
				c.Position, agreed, c.Position)}, nil
		}
		agreed = c.Position
	}
	return nil, nil
}

// checkpointEvent returns the event that publishes c on the log.
func checkpointEvent(c Checkpoint) domain.Event {
	return domain.Event{StreamID: domain.CheckpointStream, Type: domain.EventCheckpointSigned, Data: domain.CheckpointSigned{
		Position: c.Position, Hash: c.Hash, Key: c.Key, Signature: c.Signature, SignedAt: c.SignedAt,
	}}
}

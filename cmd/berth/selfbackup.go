package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/google/uuid"

	"berth/domain"
	"berth/handlers/databases"
)

// s3Flags are the flags of `berth backup` and `berth restore` naming the
// S3-compatible storage. The secret key comes from the environment only
// (BERTH_BACKUP_S3_SECRET_KEY), never from argv.
type s3Flags struct {
	endpoint, bucket, prefix, region, accessKey string
	insecure, allowPrivate                      bool
}

func (s *s3Flags) bind(fs *flag.FlagSet, getenv func(string) string) {
	def := func(env string) string { return getenv(env) }
	fs.StringVar(&s.endpoint, "s3-endpoint", def("BERTH_BACKUP_S3_ENDPOINT"), "S3 endpoint, host or host:port (env BERTH_BACKUP_S3_ENDPOINT)")
	fs.StringVar(&s.bucket, "s3-bucket", def("BERTH_BACKUP_S3_BUCKET"), "bucket (env BERTH_BACKUP_S3_BUCKET)")
	fs.StringVar(&s.prefix, "s3-prefix", def("BERTH_BACKUP_S3_PREFIX"), "key prefix (env BERTH_BACKUP_S3_PREFIX)")
	fs.StringVar(&s.region, "s3-region", def("BERTH_BACKUP_S3_REGION"), "region (env BERTH_BACKUP_S3_REGION)")
	fs.StringVar(&s.accessKey, "s3-access-key", def("BERTH_BACKUP_S3_ACCESS_KEY"), "access key (env BERTH_BACKUP_S3_ACCESS_KEY); the secret key is read from BERTH_BACKUP_S3_SECRET_KEY only")
	fs.BoolVar(&s.insecure, "s3-insecure", getenv("BERTH_BACKUP_S3_INSECURE") == "true", "plain HTTP instead of HTTPS (env BERTH_BACKUP_S3_INSECURE=true)")
	fs.BoolVar(&s.allowPrivate, "backup-allow-private", getenv("BERTH_BACKUP_ALLOW_PRIVATE") == "true", "let the endpoint be a loopback or private address (env BERTH_BACKUP_ALLOW_PRIVATE=true)")
}

// open validates the flags (a bad one is a usage error naming it), applies
// the outbound address rule and opens the bucket, creating it when create.
func (s *s3Flags) open(ctx context.Context, getenv func(string) string, create bool) (*databases.Bucket, error) {
	spec := domain.BackupStorageSpec{Name: "berth", Endpoint: s.endpoint, Insecure: s.insecure, Region: s.region,
		Bucket: s.bucket, Prefix: s.prefix, AccessKey: s.accessKey, SecretKey: getenv("BERTH_BACKUP_S3_SECRET_KEY")}
	flagOf := map[string]string{"endpoint": "--s3-endpoint", "bucket": "--s3-bucket", "prefix": "--s3-prefix",
		"region": "--s3-region", "access_key": "--s3-access-key", "secret_key": "BERTH_BACKUP_S3_SECRET_KEY"}
	check := func(err error) error {
		var ve *domain.ValidationError
		if errors.As(err, &ve) {
			return usagef("%s %s", flagOf[ve.Field], ve.Rule)
		}
		return err
	}
	if err := check(spec.Validate()); err != nil {
		return nil, err
	}
	if err := check(databases.CheckEndpoint(ctx, "endpoint", spec.Endpoint, s.allowPrivate)); err != nil {
		return nil, err
	}
	b, err := databases.OpenBucket(domain.BackupStorageAdded{Storage: "berth", Endpoint: spec.Endpoint, Insecure: spec.Insecure,
		Region: spec.Region, Bucket: spec.Bucket, Prefix: strings.Trim(spec.Prefix, "/"), AccessKey: spec.AccessKey}, spec.SecretKey, s.allowPrivate)
	if err != nil {
		return nil, err
	}
	if create {
		if err := b.Ensure(ctx); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// pgCommand runs a PostgreSQL client program (pg_dump, psql) on the
// database at dbURL: the password goes through PGPASSWORD, not argv.
func pgCommand(ctx context.Context, dbURL, program string, args ...string) (*exec.Cmd, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, usagef("--database-url: %v", err)
	}
	env := os.Environ()
	if pw, ok := u.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	cmd := exec.CommandContext(ctx, program, append(args, "--dbname", u.String())...)
	cmd.Env = env
	return cmd, nil
}

// runBackup is `berth backup`: pg_dump of berth's own database (the log,
// read models and keyring) streamed, gzip-compressed, to S3-compatible
// storage; it prints the object key, size and SHA-256. Every backup that
// gets past its flags is recorded on domain.SelfBackupStream: the object
// key, size and SHA-256 when it succeeded, the reason when it failed.
func runBackup(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "backup")
	var s3 s3Flags
	s3.bind(fs, e.getenv)
	key := fs.String("key", "", "object key (default: <prefix>/berth/<UTC time>.sql.gz)")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *key != "" && (strings.Contains(*key, "..") || strings.HasPrefix(*key, "/") || strings.ContainsFunc(*key, func(r rune) bool { return r < 0x21 || r == 0x7f })) {
		return usagef("--key must be a relative object key without '..', spaces or control characters")
	}
	b, openErr := s3.open(ctx, e.getenv, false)
	if ue := (usageError{}); errors.As(openErr, &ue) {
		return openErr
	}
	store, closeStore, err := openStandaloneStore(ctx, cfg, newLogger(e.stderr, cfg.LogLevel))
	if err != nil {
		return fmt.Errorf("backup: %w (nothing was backed up or recorded)", errors.Join(openErr, err))
	}
	defer closeStore()

	started := time.Now().UTC()
	id := uuid.NewString()
	k := *key
	if k == "" { // as Bucket.Key makes it, also when the bucket did not open
		k = "berth/" + started.Format("20060102T150405Z") + ".sql.gz"
		if p := strings.Trim(s3.prefix, "/"); p != "" {
			k = p + "/" + k
		}
	}
	w, head, err := dumpToBucket(ctx, cfg.DatabaseURL, store, b, openErr, k)
	md := domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "cli", Name: "berth command line"}, Origin: "cli", CorrelationID: id}
	if err != nil {
		// pg_dump gets the database password through PGPASSWORD, never in
		// its argv or messages; the S3 secret key is struck out in case a
		// client error echoes it.
		why := redactSecrets(err.Error(), e.getenv("BERTH_BACKUP_S3_SECRET_KEY"))
		ev := domain.Event{StreamID: domain.SelfBackupStream, Type: domain.EventSelfBackupFailed, Data: domain.SelfBackupFailed{
			Backup: id, Endpoint: s3.endpoint, Bucket: s3.bucket, ObjectKey: k, Reason: why, StartedAt: started}}
		if _, aerr := appendOutcome(context.WithoutCancel(ctx), store, md, ev); aerr != nil {
			return fmt.Errorf("backup: %s; recording the failure: %w", why, aerr)
		}
		return fmt.Errorf("backup: %s (recorded as %s)", why, domain.EventSelfBackupFailed)
	}
	ev := domain.Event{StreamID: domain.SelfBackupStream, Type: domain.EventSelfBackupSucceeded, Data: domain.SelfBackupSucceeded{
		Backup: id, Endpoint: s3.endpoint, Bucket: b.Name(), ObjectKey: k, Size: w.Size, SHA256: w.SHA256, LogHead: head,
		StartedAt: started, DurationMS: time.Since(started).Milliseconds()}}
	pos, err := appendOutcome(ctx, store, md, ev)
	if err != nil {
		return fmt.Errorf("backup %s/%s was written but not recorded: %w", b.Name(), k, err)
	}
	_, err = fmt.Fprintf(e.stdout, "ok: backup %s/%s: %d bytes, sha256 %s\nrecorded %s at position %d\n",
		b.Name(), k, w.Size, w.SHA256, domain.EventSelfBackupSucceeded, pos)
	return err
}

// dumpToBucket makes the bucket when missing and streams pg_dump of dbURL
// into it at key; it returns what was written and the log's head when the
// dump began. openErr is the error opening the bucket gave, if any.
func dumpToBucket(ctx context.Context, dbURL string, store domain.EventStore, b *databases.Bucket, openErr error, key string) (databases.Written, int64, error) {
	if openErr != nil {
		return databases.Written{}, 0, openErr
	}
	if err := b.Ensure(ctx); err != nil {
		return databases.Written{}, 0, err
	}
	head, err := store.Head(ctx)
	if err != nil {
		return databases.Written{}, 0, fmt.Errorf("read the log's head: %w", err)
	}
	var stderr strings.Builder
	w, err := b.Upload(ctx, key, func(out io.Writer) error {
		cmd, err := pgCommand(ctx, dbURL, "pg_dump", "--no-owner", "--no-privileges")
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = out, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("pg_dump: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	return w, head, err
}

// appendOutcome appends ev, an outcome that needs no expected version, and
// returns its position.
func appendOutcome(ctx context.Context, store domain.EventStore, md domain.Metadata, ev domain.Event) (int64, error) {
	ed, err := ev.Encode(uuid.NewString(), md)
	if err != nil {
		return 0, err
	}
	res, err := store.Append(ctx, domain.StreamAppend{StreamID: ev.StreamID, Expected: domain.ExpectAny, Events: []domain.EventData{ed}})
	if err != nil {
		return 0, err
	}
	return res.LastPosition(), nil
}

// redactSecrets replaces every non-empty secret in s, and truncates s to
// what an event's reason holds.
func redactSecrets(s string, secrets ...string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "xxxxx")
		}
	}
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// runRestore is `berth restore`: the backup streamed from storage into an
// empty database, then its log verified (hash chain, and the signed
// checkpoints given with --checkpoints), as `berth events verify` does.
func runRestore(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "restore")
	var s3 s3Flags
	s3.bind(fs, e.getenv)
	key := fs.String("key", "", "object key of the backup (required)")
	sum := fs.String("sha256", "", "the backup's SHA-256 (printed by berth backup); a mismatch fails the restore")
	var checkpoints stringList
	fs.Var(&checkpoints, "checkpoints", "verify the restored log against the signed checkpoints in this directory, file or URL (repeatable)")
	pub := fs.String("key-public", "", "the public key the checkpoints must be signed with (berth audit key)")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *key == "" {
		return usagef("--key is required")
	}
	if *sum != "" && len(*sum) != 64 {
		return usagef("--sha256 must be 64 hexadecimal digits")
	}
	b, err := s3.open(ctx, e.getenv, false)
	if err != nil {
		return err
	}
	var stderr strings.Builder
	err = b.Download(ctx, *key, strings.ToLower(*sum), func(r io.Reader) error {
		cmd, err := pgCommand(ctx, cfg.DatabaseURL, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction")
		if err != nil {
			return err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = r, io.Discard, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("psql: %w: %s (restore into an empty database)", err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(e.stdout, "ok: restored %s/%s\n", b.Name(), *key)
	verify := []string{"--database-url", cfg.DatabaseURL, "--backup"}
	for _, c := range checkpoints {
		verify = append(verify, "--checkpoints", c)
	}
	if *pub != "" {
		verify = append(verify, "--key", *pub)
	}
	return runEventsVerify(ctx, e, verify)
}

package domain

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// CategoryBackupStorage is the stream category of backup storages.
const CategoryBackupStorage = "backupstorage"

// BackupStorageStream is the stream of backup storage name.
func BackupStorageStream(name string) string { return CategoryBackupStorage + "-" + name }

// BackupStorageKeyOwner is the keyring owner whose data key seals the
// secret key of backup storage name.
func BackupStorageKeyOwner(name string) string { return "backupstorage--" + name }

// Event types of backup storages. Stored: never rename one.
const (
	EventBackupStorageAdded   = "backupstorage.added"
	EventBackupStorageRemoved = "backupstorage.removed"
)

// BackupStorageAdded is recorded when berth is given an S3-compatible
// bucket to write backups to. The secret key is sealed
// (BackupStorageKeyOwner); its plain text never enters the log.
type BackupStorageAdded struct {
	Storage string `json:"storage"`
	// Endpoint is host or host:port of the S3 API.
	Endpoint string `json:"endpoint"`
	// Insecure uses plain HTTP instead of HTTPS.
	Insecure  bool   `json:"insecure,omitempty"`
	Region    string `json:"region,omitempty"`
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix,omitempty"`
	AccessKey string `json:"access_key"`
	// SealedSecretKey is the secret key's ciphertext.
	SealedSecretKey []byte `json:"sealed_secret_key"`
}

// BackupStorageRemoved is recorded when a backup storage is removed; the
// objects in its bucket stay.
type BackupStorageRemoved struct {
	Storage string `json:"storage"`
}

// ErrBackupStorageNotFound: no backup storage has that name.
var ErrBackupStorageNotFound = fmt.Errorf("backup storage %w", ErrNotFound)

// BackupStorageSpec is the input of AddBackupStorage; SecretKey is plain
// text the caller seals.
type BackupStorageSpec struct {
	Name      string
	Endpoint  string
	Insecure  bool
	Region    string
	Bucket    string
	Prefix    string
	AccessKey string
	SecretKey string
}

var (
	bucketRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionRE    = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	s3PrefixRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$`)
	accessKeyRE = regexp.MustCompile(`^[\x21-\x7e]{1,256}$`)
)

// ValidateS3Endpoint checks an S3 endpoint's shape: host or host:port, no
// scheme, path or user (the outbound address rules are checked where the
// network is reached).
func ValidateS3Endpoint(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if len(s) > 255 || !imageDomainRE.MatchString(s) {
		return Invalid(fieldName, "must be host or host:port, such as s3.example.com or 127.0.0.1:7070 (no scheme or path)")
	}
	if host, port, ok := strings.Cut(s, ":"); ok && (host == "" || port == "" || len(port) > 5) {
		return Invalid(fieldName, "must be host or host:port")
	}
	return nil
}

// Validate checks a spec, naming the field that fails.
func (s BackupStorageSpec) Validate() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	if err := ValidateS3Endpoint("endpoint", s.Endpoint); err != nil {
		return err
	}
	if s.Region != "" && !regionRE.MatchString(s.Region) {
		return Invalid("region", "must be lowercase letters, digits and '-', at most 32 characters")
	}
	if !bucketRE.MatchString(s.Bucket) || strings.Contains(s.Bucket, "..") {
		return Invalid("bucket", "must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'")
	}
	if s.Prefix != "" && (!s3PrefixRE.MatchString(s.Prefix) || strings.Contains(s.Prefix, "..") || strings.Contains(s.Prefix, "//")) {
		return Invalid("prefix", "must be letters, digits, '.', '_', '-' and '/' segments, at most 200 characters")
	}
	if !accessKeyRE.MatchString(s.AccessKey) {
		return Invalid("access_key", "is required: printable characters without spaces, at most 256")
	}
	if s.SecretKey == "" || len(s.SecretKey) > 1024 || strings.ContainsFunc(s.SecretKey, isControl) {
		return Invalid("secret_key", "is required: at most 1024 characters without control characters")
	}
	return nil
}

// AddBackupStorage decides backupstorage.added; exists says whether a
// storage of that name exists.
func AddBackupStorage(exists bool, spec BackupStorageSpec, sealed []byte) ([]Event, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if exists {
		return nil, fmt.Errorf("backup storage %s already exists: %w", spec.Name, ErrConflict)
	}
	return []Event{{StreamID: BackupStorageStream(spec.Name), Type: EventBackupStorageAdded, Data: BackupStorageAdded{
		Storage: spec.Name, Endpoint: strings.ToLower(spec.Endpoint), Insecure: spec.Insecure, Region: spec.Region,
		Bucket: spec.Bucket, Prefix: strings.Trim(spec.Prefix, "/"), AccessKey: spec.AccessKey, SealedSecretKey: sealed,
	}}}, nil
}

// LoadBackupStorage folds a storage's stream: its record, whether it
// exists, and the stream version.
func LoadBackupStorage(events []RecordedEvent) (BackupStorageAdded, bool, int64, error) {
	var s BackupStorageAdded
	exists := false
	var v int64
	for _, e := range events {
		data, err := DecodeEvent(e)
		if err != nil {
			return s, false, 0, err
		}
		switch d := data.(type) {
		case BackupStorageAdded:
			s, exists = d, true
		case BackupStorageRemoved:
			exists = false
		}
		v = e.StreamVersion
	}
	return s, exists, v, nil
}

// CategoryVolumeBackup is the stream category of an application's volume
// backups.
const CategoryVolumeBackup = "volumebackup"

// VolumeBackupStream is the stream of the volume backups of app.
func VolumeBackupStream(app string) string { return CategoryVolumeBackup + "-" + app }

// Event types of volume backups. Stored: never rename one.
const (
	EventVolumeBackupSucceeded = "volume.backup_succeeded"
	EventVolumeBackupFailed    = "volume.backup_failed"
)

// VolumeBackupSucceeded is recorded when an application's named volume was
// streamed as a gzip-compressed tar archive to storage.
type VolumeBackupSucceeded struct {
	App        string    `json:"app"`
	Volume     string    `json:"volume"`
	Backup     string    `json:"backup"`
	Storage    string    `json:"storage"`
	Bucket     string    `json:"bucket"`
	ObjectKey  string    `json:"object_key"`
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
}

// VolumeBackupFailed is recorded when a volume backup failed.
type VolumeBackupFailed struct {
	App     string `json:"app"`
	Volume  string `json:"volume"`
	Backup  string `json:"backup"`
	Storage string `json:"storage"`
	Reason  string `json:"reason"`
}

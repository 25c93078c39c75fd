package domain

import "time"

// CategorySelfBackup is the stream category of berth's backups of its own
// database (`berth backup`).
const CategorySelfBackup = "selfbackup"

// SelfBackupStream is the stream every `berth backup` records its outcome
// on, succeeded or failed.
const SelfBackupStream = CategorySelfBackup + "-berth"

// Event types of berth's own backups. Stored: never rename one.
const (
	EventSelfBackupSucceeded = "berth.backup_succeeded"
	EventSelfBackupFailed    = "berth.backup_failed"
)

// SelfBackupSucceeded is recorded when pg_dump of berth's database was
// streamed, gzip-compressed, to storage. LogHead is the log's head when the
// dump began: the dump holds at least the events up to it (and not this
// one, which is appended after the upload). Size and SHA256 are those of
// the stored object, which `berth restore --sha256` checks.
type SelfBackupSucceeded struct {
	Backup     string    `json:"backup"`
	Endpoint   string    `json:"endpoint"`
	Bucket     string    `json:"bucket"`
	ObjectKey  string    `json:"object_key"`
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256"`
	LogHead    int64     `json:"log_head"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
}

// SelfBackupFailed is recorded when a `berth backup` that got past its
// flags failed: the bucket could not be reached or made, pg_dump failed, or
// the upload broke. Reason never holds a secret.
type SelfBackupFailed struct {
	Backup    string    `json:"backup"`
	Endpoint  string    `json:"endpoint"`
	Bucket    string    `json:"bucket"`
	ObjectKey string    `json:"object_key"`
	Reason    string    `json:"reason"`
	StartedAt time.Time `json:"started_at"`
}

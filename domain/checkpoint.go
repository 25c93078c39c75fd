package domain

import "time"

// EventCheckpointSigned records a signed checkpoint of the log: berth signed
// the hash of the event at Position with its checkpoint key. It is appended
// to CheckpointStream after the position it covers, so the live stream and
// webhooks carry every checkpoint out of the database's reach.
const EventCheckpointSigned = "audit.checkpoint_signed"

// CheckpointStream is the stream of the checkpoints berth signs.
const CheckpointStream = "audit-checkpoints"

// CheckpointSigned is the payload of EventCheckpointSigned. Hash is the
// event hash at Position in hex; Key is the Ed25519 public key and Signature
// the signature over the checkpoint's message, both in standard base64.
type CheckpointSigned struct {
	Position  int64     `json:"position"`
	Hash      string    `json:"hash"`
	Key       string    `json:"key"`
	Signature string    `json:"signature"`
	SignedAt  time.Time `json:"signed_at"`
}

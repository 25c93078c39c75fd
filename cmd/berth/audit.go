package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"strconv"
	"time"

	"berth/eventstore"
	"berth/eventstore/anchor"
)

// bindCheckpointFlags registers the signed-checkpoint flags of serve.
func bindCheckpointFlags(fs *flag.FlagSet, c *Config, getenv func(string) string) error {
	str := func(p *string, name, env, usage string) {
		def := *p
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	str(&c.CheckpointKeyFile, "checkpoint-key-file", "BERTH_CHECKPOINT_KEY_FILE",
		"Ed25519 key that signs checkpoints of the log, created on first start; keep it outside PostgreSQL (default: checkpoint.key beside the master key)")
	str(&c.AnchorDir, "anchor-dir", "BERTH_ANCHOR_DIR",
		"directory that receives one file per signed checkpoint; put it where the database's owner cannot write (default: <data-dir>/anchor)")
	every := c.CheckpointEvery
	if v := getenv("BERTH_CHECKPOINT_EVERY"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("BERTH_CHECKPOINT_EVERY: %w", err)
		}
		every = n
	}
	fs.Int64Var(&c.CheckpointEvery, "checkpoint-every", every, "sign a checkpoint once the log grew by this many events (env BERTH_CHECKPOINT_EVERY)")
	interval := c.CheckpointInterval
	if v := getenv("BERTH_CHECKPOINT_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("BERTH_CHECKPOINT_INTERVAL: %w", err)
		}
		interval = d
	}
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", interval,
		"sign a checkpoint at least this often while the log grows (env BERTH_CHECKPOINT_INTERVAL)")
	return nil
}

// openCheckpointKey loads the checkpoint key, creating it on first start.
func openCheckpointKey(m *Main) (ed25519.PrivateKey, error) {
	key, created, err := anchor.LoadOrCreateKey(m.Config.CheckpointKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--checkpoint-key-file: %w", err)
	}
	if created {
		m.Logger.Warn("created a new checkpoint key: back it up beside the master key, and give auditors its public key (berth audit key)",
			"file", m.Config.CheckpointKeyFile, "public_key", anchor.PublicKey(key.Public().(ed25519.PublicKey)))
	}
	return key, nil
}

// wireCheckpoints returns the runner that signs checkpoints, and the public
// key, or no runner when the store is not PostgreSQL.
func wireCheckpoints(m *Main) (*Runner, string, error) {
	key, err := openCheckpointKey(m)
	if err != nil {
		return nil, "", err
	}
	pub := anchor.PublicKey(key.Public().(ed25519.PublicKey))
	pg, ok := m.Store.(*eventstore.Postgres)
	if !ok {
		return nil, pub, nil
	}
	s := &anchor.Signer{Store: pg, Key: key, Dir: m.Config.AnchorDir, Every: m.Config.CheckpointEvery,
		Interval: m.Config.CheckpointInterval, Logger: m.Logger.With("component", "checkpoints")}
	return &Runner{Name: "checkpoints", Run: s.Run}, pub, nil
}

// runAuditKey is `berth audit key`: print the public key checkpoints are
// signed with (creating the key, as serve would, when it does not exist).
func runAuditKey(ctx context.Context, e env, args []string) error {
	_ = ctx
	fs := newFlagSet(e, "audit key")
	cfg, err := parseConfig(e, fs, flagsServer, args)
	if err != nil {
		return err
	}
	key, _, err := anchor.LoadOrCreateKey(cfg.CheckpointKeyFile)
	if err != nil {
		return fmt.Errorf("--checkpoint-key-file: %w", err)
	}
	_, err = fmt.Fprintln(e.stdout, anchor.PublicKey(key.Public().(ed25519.PublicKey)))
	return err
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return fmt.Sprint([]string(*l)) }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

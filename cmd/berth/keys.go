package main

import (
	"context"
	"fmt"

	"berth/eventstore/keyring"
)

// runKeysRotate is `berth keys rotate`: re-wrap every live data key under
// a new master key and replace the master key file, destroying the old key.
func runKeysRotate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "keys rotate")
	cfg, err := parseConfig(e, fs, flagsDB|flagsServer, args)
	if err != nil {
		return err
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := keyring.RotateMasterKeyFile(ctx, pool, cfg.MasterKeyFile)
	if err != nil {
		return fmt.Errorf("--master-key-file %s: %w", cfg.MasterKeyFile, err)
	}
	_, err = fmt.Fprintf(e.stdout, "ok: %d data keys re-wrapped under a new master key in %s; the old master key is gone from it.\n"+
		"Destroy every other copy of the old master key file (backups): then no copy of the database, however old, opens a secret shredded before this rotation.\n",
		n, cfg.MasterKeyFile)
	return err
}

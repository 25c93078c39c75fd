package keyring

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreateMasterKey reads the master key from path (64 hex digits), or,
// when the file does not exist, generates a random one and writes it with
// mode 0600 (creating the directory with 0700). It refuses a file that other
// users can read or write, and a key of the wrong size. created reports
// whether the key was generated now.
//
// WARNING: losing this file loses every secret; back it up apart from the
// database.
func LoadOrCreateMasterKey(path string) (key []byte, created bool, err error) {
	if path == "" {
		return nil, false, errors.New("keyring: master key file path is empty")
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := createMasterKey(path)
		if errors.Is(err, fs.ErrExist) { // another process created it first
			return LoadOrCreateMasterKey(path)
		}
		return key, err == nil, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("keyring: open master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("keyring: stat master key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("keyring: master key %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return nil, false, fmt.Errorf("keyring: master key %s has mode %04o: other users can read or write it; chmod 600 it", path, perm)
	}
	raw := make([]byte, 2*KeySize+2)
	n, err := f.Read(raw)
	if err != nil {
		return nil, false, fmt.Errorf("keyring: read master key: %w", err)
	}
	key, err = hex.DecodeString(strings.TrimSpace(string(raw[:n])))
	if err != nil || len(key) != KeySize {
		return nil, false, fmt.Errorf("keyring: master key %s must hold %d hex digits", path, 2*KeySize)
	}
	return key, false, nil
}

func createMasterKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keyring: create master key directory: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keyring: generate master key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keyring: create master key: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(key) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("keyring: write master key: %w", err)
	}
	return key, nil
}

package traefik

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"berth/domain"
)

const (
	filePrefix = "berth-"
	fileSuffix = ".yml"
	tempPrefix = ".berth-"
	tempSuffix = ".tmp"
	fileMode   = 0o644
)

// FileName returns the name of the file that holds app's configuration,
// "berth-<app>.yml".
func FileName(app string) string { return filePrefix + app + fileSuffix }

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Dir is the directory Traefik's file provider watches. It must exist.
	Dir string
	// Routing names the entry points and resolver the files refer to; zero
	// fields take DefaultConfig's values.
	Routing Config
}

// Writer keeps one file per application in the directory Traefik watches.
// Files are replaced atomically (a temp file in the same directory, fsync,
// rename, fsync of the directory), so Traefik never reads a half-written
// file. Temp files end in ".tmp", which the file provider ignores.
//
// Writer owns only the files named "berth-*.yml" (and its own
// ".berth-*.tmp" leftovers); other files in the directory are never
// touched. Its methods are safe for concurrent use.
type Writer struct {
	dir string
	cfg Config
	mu  sync.Mutex
}

// certMode is the mode of certificate and key files: the key is secret.
const certMode = 0o600

// putCerts writes the files of app's uploaded certificates (mode 0600,
// atomically) and returns their names. The caller holds w.mu.
func (w *Writer) putCerts(app App) (map[string]bool, error) {
	keep := map[string]bool{}
	for _, r := range app.Routes {
		c := r.Certificate
		if c == nil || !r.HTTPS {
			continue
		}
		if _, err := normalizeRoute(r); err != nil {
			return nil, fmt.Errorf("traefik: app %q: %w", app.Name, err)
		}
		if len(c.ChainPEM) == 0 || len(c.KeyPEM) == 0 {
			return nil, fmt.Errorf("traefik: app %q: %w", app.Name, domain.Invalid("certificate", "needs its chain and key"))
		}
		files := certFiles(w.cfg, app.Name, c.Fingerprint)
		if err := os.MkdirAll(w.cfg.CertDir, 0o700); err != nil {
			return nil, fmt.Errorf("traefik: certificates: %w", err)
		}
		for _, f := range []struct {
			path string
			data []byte
		}{{files.KeyFile, c.KeyPEM}, {files.CertFile, c.ChainPEM}} {
			if old, err := os.ReadFile(f.path); err != nil || !bytes.Equal(old, f.data) {
				if err := writeAtomicMode(w.cfg.CertDir, app.Name+".*"+tempSuffix, f.path, f.data, certMode); err != nil {
					return nil, fmt.Errorf("traefik: app %q: certificate: %w", app.Name, err)
				}
			}
			keep[filepath.Base(f.path)] = true
		}
	}
	return keep, nil
}

// pruneCerts removes the certificate files for which keep(owner app, file
// name) is false. The caller holds w.mu.
func (w *Writer) pruneCerts(keep func(owner, file string) bool) error {
	entries, err := os.ReadDir(w.cfg.CertDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("traefik: certificates: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		owner, rest, ok := strings.Cut(name, ".")
		if !ok || !e.Type().IsRegular() || ValidAppName(owner) != nil ||
			!(strings.HasSuffix(rest, ".crt") || strings.HasSuffix(rest, ".key") || strings.HasSuffix(rest, tempSuffix)) {
			continue
		}
		if strings.HasSuffix(rest, tempSuffix) || !keep(owner, name) {
			if err := os.Remove(filepath.Join(w.cfg.CertDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("traefik: certificates: %w", err)
			}
		}
	}
	return nil
}

// NewWriter returns a Writer for cfg.Dir. It fails with domain.ErrInvalid if
// the directory is empty or the routing names are invalid, and with the file
// system's error if the directory does not exist.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("traefik: writer: %w", domain.Invalid("dir", "must not be empty"))
	}
	routing := cfg.Routing.withDefaults()
	if _, err := Build(routing, App{Name: "check", Routes: []Route{{Host: "check.invalid", HTTPS: true}}}); err != nil {
		return nil, fmt.Errorf("traefik: writer: %w", err)
	}
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("traefik: writer: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("traefik: writer: %w", domain.Invalid("dir", "must be a directory"))
	}
	if routing.CertDir == "certs" {
		routing.CertDir = filepath.Join(filepath.Dir(filepath.Clean(cfg.Dir)), "certs")
	}
	if !filepath.IsAbs(routing.CertDir) {
		abs, err := filepath.Abs(routing.CertDir)
		if err != nil {
			return nil, fmt.Errorf("traefik: writer: %w", err)
		}
		routing.CertDir = abs
	}
	return &Writer{dir: cfg.Dir, cfg: routing}, nil
}

// Dir returns the directory the Writer manages.
func (w *Writer) Dir() string { return w.dir }

// Put writes app's file, or removes it when app has no routes. It does
// nothing when the file already holds exactly the rendered bytes. When Build
// rejects app, Put returns that error (wrapping domain.ErrInvalid) and leaves
// the directory as it was.
func (w *Writer) Put(app App) error {
	data, err := Render(w.cfg, app)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if data == nil {
		return w.remove(app.Name)
	}
	keep, err := w.putCerts(app)
	if err != nil {
		return err
	}
	if _, err = w.put(app.Name, data); err != nil {
		return err
	}
	return w.pruneCerts(func(owner, file string) bool { return owner != app.Name || keep[file] })
}

// Remove removes the file of the application called name, if there is one.
// An invalid name is an error wrapping domain.ErrInvalid.
func (w *Writer) Remove(name string) error {
	if err := ValidAppName(name); err != nil {
		return fmt.Errorf("traefik: remove: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.remove(name); err != nil {
		return err
	}
	return w.pruneCerts(func(owner, _ string) bool { return owner != name })
}

// Reconcile makes the berth-owned files of the directory exactly match apps:
// files of applications not in apps are removed, files whose content
// differs are rewritten and missing ones are written; leftover temp files
// are removed.
//
// An app that Build rejects is reported in the returned error and its file
// is left as it was (neither rewritten nor removed), as Put does; all other
// applications are still reconciled. Two apps with the same name are an
// error and nothing is changed.
func (w *Writer) Reconcile(apps []App) error {
	var errs []error
	want := make(map[string][]byte, len(apps)) // app name -> rendered bytes, nil = no file
	keep := make(map[string]bool, len(apps))   // file names not to delete
	for _, app := range apps {
		if _, dup := keep[FileName(app.Name)]; dup {
			return fmt.Errorf("traefik: reconcile: %w", domain.Invalid("apps", "duplicate application "+strconv.Quote(app.Name)))
		}
		data, err := Render(w.cfg, app)
		if err != nil {
			if ValidAppName(app.Name) == nil {
				keep[FileName(app.Name)] = true
			}
			errs = append(errs, err)
			continue
		}
		keep[FileName(app.Name)] = data != nil
		if data != nil {
			want[app.Name] = data
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	keepCerts := map[string]bool{}
	for _, app := range apps {
		if _, ok := want[app.Name]; !ok {
			continue
		}
		kept, err := w.putCerts(app)
		if err != nil {
			errs = append(errs, err)
			delete(want, app.Name)
			keep[FileName(app.Name)] = true
		}
		for f := range kept {
			keepCerts[f] = true
		}
	}
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("traefik: reconcile: %w", err)
	}
	changed := false
	for _, e := range entries {
		name := e.Name()
		owned := strings.HasPrefix(name, filePrefix) && strings.HasSuffix(name, fileSuffix)
		temp := strings.HasPrefix(name, tempPrefix) && strings.HasSuffix(name, tempSuffix)
		if !e.Type().IsRegular() || (!owned && !temp) || (owned && keep[name]) {
			continue
		}
		if err := os.Remove(filepath.Join(w.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("traefik: reconcile: %w", err))
			continue
		}
		changed = true
	}
	for name, data := range want {
		wrote, err := w.put(name, data)
		if err != nil {
			errs = append(errs, err)
		}
		changed = changed || wrote
	}
	if changed {
		if err := syncDir(w.dir); err != nil {
			errs = append(errs, fmt.Errorf("traefik: reconcile: %w", err))
		}
	}
	if err := w.pruneCerts(func(owner, file string) bool { return keepCerts[file] || (keep[FileName(owner)] && want[owner] == nil) }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// put writes data to app's file unless it already holds it, and reports
// whether it wrote. The caller holds w.mu.
func (w *Writer) put(app string, data []byte) (bool, error) {
	path := filepath.Join(w.dir, FileName(app))
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := writeAtomic(w.dir, path, data); err != nil {
		return false, fmt.Errorf("traefik: put %q: %w", app, err)
	}
	return true, nil
}

// remove deletes app's file if it exists. The caller holds w.mu.
func (w *Writer) remove(app string) error {
	err := os.Remove(filepath.Join(w.dir, FileName(app)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("traefik: remove %q: %w", app, err)
	}
	if err := syncDir(w.dir); err != nil {
		return fmt.Errorf("traefik: remove %q: %w", app, err)
	}
	return nil
}

// writeAtomic replaces path with data: it writes a temp file in dir, syncs
// it, renames it over path and syncs dir.
func writeAtomic(dir, path string, data []byte) error {
	return writeAtomicMode(dir, tempPrefix+"*"+tempSuffix, path, data, fileMode)
}

// writeAtomicMode is writeAtomic with the temp file's name pattern and the
// file's mode; the temp file has that mode before any byte is written.
func writeAtomicMode(dir, pattern, path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return err
	}
	if err = f.Chmod(mode); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return err
	}
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}

// ReadDynamic reads the dynamic configuration files the Writer owns in dir
// ("berth-*.yml"), file name: content, for a Traefik that cannot mount the
// directory (one on another machine).
func ReadDynamic(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}

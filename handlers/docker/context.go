package docker

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxSkipped bounds the skipped-entry notes writeContext reports.
const maxSkipped = 50

// writeContext writes dir as a tar stream to w: directories, regular files
// and symlinks whose target stays inside dir, never following a symlink,
// leaving out ".git" directories and what a top-level .dockerignore excludes
// (the Dockerfile and .dockerignore themselves are always sent). It returns
// notes about entries it left out for safety.
func writeContext(w io.Writer, dir, dockerfile string) (skipped []string, err error) {
	ignore, err := readDockerignore(filepath.Join(dir, ".dockerignore"))
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(w)
	note := func(s string) {
		if len(skipped) < maxSkipped {
			skipped = append(skipped, s)
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		relOS, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(relOS)
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if rel != dockerfile && rel != ".dockerignore" && ignore.excluded(rel) {
			if d.IsDir() && !ignore.hasExceptions() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		switch mode := fi.Mode(); {
		case mode.IsDir(), mode.IsRegular():
		case mode&fs.ModeSymlink != 0:
			link, err = os.Readlink(p)
			if err != nil {
				return err
			}
			if !linkStaysInside(rel, link) {
				note(fmt.Sprintf("%s (symlink pointing outside the build context)", rel))
				return nil
			}
		default:
			note(fmt.Sprintf("%s (not a regular file, directory or symlink)", rel))
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("tar %s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return skipped, fmt.Errorf("build context: %w", err)
	}
	if err := tw.Close(); err != nil {
		return skipped, fmt.Errorf("build context: %w", err)
	}
	return skipped, nil
}

// linkStaysInside reports whether a symlink at rel (slash-separated, inside
// the context) with target link resolves lexically inside the context.
func linkStaysInside(rel, link string) bool {
	if link == "" || filepath.IsAbs(link) || strings.HasPrefix(link, "/") {
		return false
	}
	target := path.Join(path.Dir(rel), filepath.ToSlash(link))
	return target != ".." && !strings.HasPrefix(target, "../")
}

// dockerignore is a minimal reading of a .dockerignore file.
type dockerignore struct {
	patterns []ignorePattern
}

type ignorePattern struct {
	pattern string
	negate  bool
}

func readDockerignore(p string) (dockerignore, error) {
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return dockerignore{}, nil
	}
	if err != nil {
		return dockerignore{}, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	var d dockerignore
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(line, "!")
		line = strings.Trim(path.Clean("/"+strings.TrimSpace(line)), "/")
		if line == "" || line == "." {
			continue
		}
		if _, err := path.Match(line, ""); err != nil {
			continue // a malformed pattern matches nothing
		}
		d.patterns = append(d.patterns, ignorePattern{pattern: line, negate: neg})
	}
	if err := sc.Err(); err != nil {
		return dockerignore{}, fmt.Errorf("read .dockerignore: %w", err)
	}
	return d, nil
}

func (d dockerignore) hasExceptions() bool {
	for _, p := range d.patterns {
		if p.negate {
			return true
		}
	}
	return false
}

// excluded applies the patterns in order (the last match wins) to rel and
// to each of its parent directories.
func (d dockerignore) excluded(rel string) bool {
	out := false
	for _, p := range d.patterns {
		if matchPathOrParent(p.pattern, rel) {
			out = !p.negate
		}
	}
	return out
}

func matchPathOrParent(pattern, rel string) bool {
	for cur := rel; cur != "." && cur != "/" && cur != ""; cur = path.Dir(cur) {
		if ok, _ := path.Match(pattern, cur); ok {
			return true
		}
	}
	return false
}

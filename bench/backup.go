package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"berth/domain"
	"berth/handlers/databases"
	"berth/internal/testenv"
)

// Backup targets: berth's backup throughput at least 0.8 of the same dump
// piped by hand (pg_dump | gzip | upload), and its memory growth during the
// backup at most 64 MiB.
const (
	BackupThroughputFloor = 0.8
	BackupRSSTargetMiB    = 64
)

// RunBackup builds berth from moduleDir and runs `berth serve` with a
// PostgreSQL database (the test image of scripts/dbimages.sh) holding about
// sizeMiB MiB of dump and versitygw (scripts/versitygw.sh) as its backup
// storage, then prints
//
//	BENCH backup.pg.throughput value=<MB/s> unit=MB/s baseline=<MB/s> ratio=<x>
//	BENCH backup.pg.rss value=<MiB> unit=MiB baseline=64 ratio=<x>
//
// the dump megabytes per second of a backup through the API against
// `docker exec pg_dump | gzip | upload` of the same database in the same
// run, and the growth of berth's resident memory during the backup (peak
// minus before).
func RunBackup(ctx context.Context, moduleDir, dbURL, redisURL string, sizeMiB int, out io.Writer) (err error) {
	if sizeMiB <= 0 {
		sizeMiB = 1024
	}
	gw := os.Getenv("BERTH_VERSITYGW_BIN")
	if gw == "" {
		gw = filepath.Join(moduleDir, ".cache", "versitygw", testenv.VersityGWVersion, "versitygw")
	}
	if _, err := os.Stat(gw); err != nil {
		return fmt.Errorf("versitygw: %w: build it with `go tool task versitygw` or set BERTH_VERSITYGW_BIN", err)
	}
	repo, version := testenv.DatabaseImages["postgres"][0], testenv.DatabaseImages["postgres"][1]
	if b, err := exec.CommandContext(ctx, "docker", "image", "inspect", repo+":"+version).CombinedOutput(); err != nil {
		return fmt.Errorf("image %s:%s: %w: build it with `go tool task dbimages`\n%s", repo, version, err, b)
	}
	work, err := os.MkdirTemp("", "berth-backup-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	s3, stopS3, err := testenv.RunS3(gw, work)
	if err != nil {
		return err
	}
	defer stopS3()

	bin := filepath.Join(work, "berth")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/berth")
	build.Dir = moduleDir
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build berth: %w\n%s", err, b)
	}
	freshURL, drop, err := freshDatabase(ctx, dbURL)
	if err != nil {
		return err
	}
	defer func() {
		if derr := drop(context.WithoutCancel(ctx)); err == nil {
			err = derr
		}
	}()
	if b, err := exec.CommandContext(ctx, bin, "migrate", "--database-url", freshURL).CombinedOutput(); err != nil {
		return fmt.Errorf("berth migrate: %w\n%s", err, b)
	}
	tok, err := exec.CommandContext(ctx, bin, "token", "create", "--database-url", freshURL, "--role", "admin", "--name", "bench").Output()
	if err != nil {
		return fmt.Errorf("berth token create: %w", err)
	}
	token := strings.TrimSpace(string(tok))

	addr, err := freePort()
	if err != nil {
		return err
	}
	suffix := randomSuffix()
	network, name := "berth-bench-"+suffix, "bench-"+suffix
	var logs bytes.Buffer
	serve := exec.Command(bin, "serve", "--database-url", freshURL, "--redis-url", redisURL, "--listen", addr,
		"--data-dir", filepath.Join(work, "data"), "--deploy-host", "backup-bench-"+suffix, "--log-level", "warn",
		"--docker-network", network, "--backup-allow-private", "--database-images", "postgres="+repo)
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		return fmt.Errorf("start berth serve: %w", err)
	}
	container := domain.DatabaseContainer(name)
	defer func() {
		cctx := context.WithoutCancel(ctx)
		_ = exec.CommandContext(cctx, "docker", "rm", "-f", container).Run()
		_ = exec.CommandContext(cctx, "docker", "volume", "rm", "-f", domain.DatabaseVolume(name)).Run()
		_ = exec.CommandContext(cctx, "docker", "network", "rm", network).Run()
		_ = serve.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = serve.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = serve.Process.Kill()
			<-done
		}
	}()
	base := "http://" + addr
	if err := waitHealthy(ctx, base); err != nil {
		return fmt.Errorf("%w\n%s", err, logs.String())
	}
	call := func(method, path string, body any, want int) ([]byte, error) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			return b, fmt.Errorf("%s %s: %s: %s", method, path, res.Status, b)
		}
		return b, nil
	}
	if _, err := call("POST", "/api/v1/backup-storages", map[string]any{"name": "bench", "endpoint": s3.Endpoint, "insecure": true,
		"bucket": "bench", "access_key": s3.AccessKey, "secret_key": s3.SecretKey}, http.StatusCreated); err != nil {
		return err
	}
	if _, err := call("POST", "/api/v1/databases", map[string]any{"name": name, "engine": "postgres", "version": version,
		"user": "bench", "db_name": "bench"}, http.StatusCreated); err != nil {
		return fmt.Errorf("%w\n%s", err, logs.String())
	}
	// About 74 bytes of dump per row: md5 text compresses about 2:1.
	rows := int64(sizeMiB) << 20 / 74
	fill := exec.CommandContext(ctx, "docker", "exec", container, "psql", "-X", "-q", "-U", "bench", "-d", "bench", "-v", "ON_ERROR_STOP=1", "-c",
		"CREATE TABLE big AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b FROM generate_series(1, "+strconv.FormatInt(rows, 10)+") g")
	if b, err := fill.CombinedOutput(); err != nil {
		return fmt.Errorf("fill the database: %w\n%s", err, b)
	}

	// By hand: docker exec pg_dump | gzip | upload.
	dumpBytes, handDur, err := backupByHand(ctx, container, s3)
	if err != nil {
		return err
	}

	// Through berth, sampling its resident memory meanwhile.
	before, err := rssMiB(serve.Process.Pid)
	if err != nil {
		return err
	}
	var peak atomic.Int64
	peak.Store(int64(before * 1024))
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if v, err := rssMiB(serve.Process.Pid); err == nil && int64(v*1024) > peak.Load() {
				peak.Store(int64(v * 1024))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start := time.Now()
	b, err := call("POST", "/api/v1/databases/"+name+"/backups", map[string]any{"storage": "bench"}, http.StatusCreated)
	berthDur := time.Since(start)
	stopSampling()
	<-sampled
	if err != nil {
		return fmt.Errorf("%w\n%s", err, logs.String())
	}
	var res struct {
		Backup struct {
			Size int64 `json:"size"`
		} `json:"backup"`
	}
	_ = json.Unmarshal(b, &res)

	mbps := func(d time.Duration) float64 { return float64(dumpBytes) / 1e6 / d.Seconds() }
	growth := float64(peak.Load())/1024 - before
	_, err = fmt.Fprintf(out, "BENCH backup.pg.throughput value=%.1f unit=MB/s baseline=%.1f ratio=%.2f\n", mbps(berthDur), mbps(handDur), mbps(berthDur)/mbps(handDur))
	if err == nil {
		_, err = fmt.Fprintf(out, "BENCH backup.pg.rss value=%.1f unit=MiB baseline=%d ratio=%.2f\n", growth, BackupRSSTargetMiB, growth/BackupRSSTargetMiB)
	}
	if err == nil {
		_, err = fmt.Fprintf(out, "# backup: %.0f MiB dump, %.0f MiB gzip through berth in %s, by hand in %s; rss %.1f MiB before\n",
			float64(dumpBytes)/(1<<20), float64(res.Backup.Size)/(1<<20), berthDur.Round(time.Millisecond), handDur.Round(time.Millisecond), before)
	}
	return err
}

// backupByHand pipes `docker exec <container> pg_dump` through gzip (the
// program, default level) into a streamed upload of the same part size as
// berth's, and returns the dump's size and the time taken.
func backupByHand(ctx context.Context, container string, s3 testenv.S3) (int64, time.Duration, error) {
	client, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""),
		Secure: false, BucketLookup: minio.BucketLookupPath, Transport: &http.Transport{}})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	dump := exec.CommandContext(ctx, "docker", "exec", container, "pg_dump", "-U", "bench", "-d", "bench", "--no-owner", "--no-privileges", "--clean", "--if-exists")
	gz := exec.CommandContext(ctx, "gzip", "-c")
	dumpOut, err := dump.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	n := &countingReader{r: dumpOut}
	gz.Stdin = n
	gzOut, err := gz.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := dump.Start(); err != nil {
		return 0, 0, err
	}
	if err := gz.Start(); err != nil {
		return 0, 0, err
	}
	_, uerr := client.PutObject(ctx, "bench", "by-hand.sql.gz", gzOut, -1, minio.PutObjectOptions{PartSize: databases.PartSize, DisableContentSha256: true})
	gerr := gz.Wait()
	derr := dump.Wait()
	if err := errors.Join(uerr, gerr, derr); err != nil {
		return 0, 0, fmt.Errorf("pg_dump | gzip | upload: %w", err)
	}
	return n.n.Load(), time.Since(start), nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

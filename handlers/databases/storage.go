package databases

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"berth/domain"
	"berth/internal/outbound"
)

// PartSize is the size of each part of a streamed upload: the only buffer
// a backup holds in memory.
const PartSize = 16 << 20

// Bucket is a backup storage opened for use.
type Bucket struct {
	client *minio.Client
	name   string
	prefix string
}

// OpenBucket returns a client of storage s whose secret key is secret.
// Unless allowPrivate, every connection it opens checks that the endpoint's
// address is public (internal/outbound), so a name resolving to a private
// address later is refused too.
func OpenBucket(s domain.BackupStorageAdded, secret string, allowPrivate bool) (*Bucket, error) {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return err
			}
			if !outbound.PublicAddress(ip) {
				return fmt.Errorf("backup storage %s: %s: %w", s.Storage, ip, outbound.ErrForbiddenAddress)
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy: nil, DialContext: dialer.DialContext, MaxIdleConnsPerHost: 4,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 2 * time.Minute,
	}
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, secret, ""), Secure: !s.Insecure, Region: s.Region,
		Transport: tr, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("backup storage %s: %w", s.Storage, err)
	}
	return &Bucket{client: c, name: s.Bucket, prefix: s.Prefix}, nil
}

// CheckEndpoint applies the outbound address rule to endpoint (host or
// host:port) as it resolves now, naming field in the error.
func CheckEndpoint(ctx context.Context, field, endpoint string, allowPrivate bool) error {
	if allowPrivate {
		return nil
	}
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		found, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return domain.Invalid(field, "does not resolve: "+err.Error())
		}
		ips = found
	}
	for _, ip := range ips {
		if !outbound.PublicAddress(ip) {
			return domain.Invalid(field, "resolves to "+ip.String()+", which is not a public address (allow private endpoints with --backup-allow-private)")
		}
	}
	return nil
}

// Key returns the object key of name under the storage's prefix.
func (b *Bucket) Key(name string) string {
	if b.prefix == "" {
		return name
	}
	return b.prefix + "/" + name
}

// Name is the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Ensure creates the bucket when it does not exist.
func (b *Bucket) Ensure(ctx context.Context) error {
	ok, err := b.client.BucketExists(ctx, b.name)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", b.name, err)
	}
	if ok {
		return nil
	}
	if err := b.client.MakeBucket(ctx, b.name, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("create bucket %s: %w", b.name, err)
	}
	return nil
}

// Written describes an object written by Upload.
type Written struct {
	Size   int64
	SHA256 string
}

// Upload runs produce with a writer whose bytes are gzip-compressed and
// streamed to the object key, part by part (PartSize), while their size
// and SHA-256 are measured. Nothing is staged whole on disk or in memory.
// A failure of produce aborts the upload; nothing of it stays.
func (b *Bucket) Upload(ctx context.Context, key string, produce func(io.Writer) error) (Written, error) {
	pr, pw := io.Pipe()
	sum := sha256.New()
	n := &counter{}
	go func() {
		gz, err := gzip.NewWriterLevel(io.MultiWriter(pw, sum, n), gzip.DefaultCompression)
		if err == nil {
			err = produce(gz)
			if cerr := gz.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	_, err := b.client.PutObject(ctx, b.name, key, pr, -1, minio.PutObjectOptions{
		PartSize: PartSize, ContentType: "application/gzip", DisableContentSha256: true,
	})
	_ = pr.CloseWithError(fmt.Errorf("upload ended"))
	if err != nil {
		_ = b.client.RemoveObject(context.WithoutCancel(ctx), b.name, key, minio.RemoveObjectOptions{})
		return Written{}, err
	}
	return Written{Size: n.n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}

// Download streams the object key, decompressed, to consume, and checks
// that the compressed bytes have the SHA-256 want (when not empty): a
// mismatch fails after consume saw the data, so a restore into a
// throwaway or a database being replaced reports it.
func (b *Bucket) Download(ctx context.Context, key, want string, consume func(io.Reader) error) error {
	obj, err := b.client.GetObject(ctx, b.name, key, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Close()
	sum := sha256.New()
	gz, err := gzip.NewReader(io.TeeReader(obj, sum))
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if err := consume(gz); err != nil {
		return err
	}
	// Drain what the gzip reader left (its trailer), so the sum covers all.
	if _, err := io.Copy(sum, obj); err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); want != "" && got != want {
		return fmt.Errorf("object %s has SHA-256 %s, the backup recorded %s: %w", key, got, want, domain.ErrConflict)
	}
	return nil
}

// Remove deletes the object key.
func (b *Bucket) Remove(ctx context.Context, key string) error {
	if err := b.client.RemoveObject(ctx, b.name, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("remove %s: %w", key, err)
	}
	return nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

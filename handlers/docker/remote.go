package docker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"berth/domain"
)

// Remote says how to reach a remote server's Docker Engine: over SSH,
// running "docker system dial-stdio" on the server for every connection of
// the Docker client, or over TCP with TLS client certificates. Key is the
// plain PEM private key, opened from the keyring for this client only:
// never log it.
type Remote struct {
	// URL is "ssh://user@host[:port]" or "tcp://host:port".
	URL string
	// HostKey is the pinned SSH host key (authorized_keys form). Empty
	// only for a first verification: TrustFirstKey must then be set.
	HostKey string
	// TrustFirstKey accepts any host key and reports it through
	// PresentedKey (trust on first verification, recorded as an event
	// by the caller before the key is used for anything else).
	TrustFirstKey bool
	Key           []byte
	// CAPEM and CertPEM are the TLS CA and client certificate (tcp).
	CAPEM, CertPEM []byte
	// DialTimeout bounds connecting (default 10 s).
	DialTimeout time.Duration
}

// RemoteDialer opens connections to a remote engine. For SSH it keeps one
// SSH connection and opens a session per Docker connection; it reconnects
// when the connection is lost. Safe for concurrent use.
type RemoteDialer struct {
	r                Remote
	kind, user, host string
	port             int
	sshCfg           *ssh.ClientConfig
	tlsCfg           *tls.Config

	mu        sync.Mutex
	conn      *ssh.Client
	presented string
}

// NewRemoteDialer validates r and returns its dialer. Errors wrap
// domain.ErrInvalid naming the field.
func NewRemoteDialer(r Remote) (*RemoteDialer, error) {
	kind, user, host, port, err := domain.ParseServerURL("url", r.URL)
	if err != nil {
		return nil, err
	}
	if r.DialTimeout == 0 {
		r.DialTimeout = 10 * time.Second
	}
	d := &RemoteDialer{r: r, kind: kind, user: user, host: host, port: port}
	switch kind {
	case domain.ServerSSH:
		signer, err := ssh.ParsePrivateKey(r.Key)
		if err != nil {
			return nil, domain.Invalid("key", "must be an unencrypted SSH private key")
		}
		cb, err := d.hostKeyCallback()
		if err != nil {
			return nil, err
		}
		d.sshCfg = &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: cb, Timeout: r.DialTimeout}
	case domain.ServerTCP:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(r.CAPEM) {
			return nil, domain.Invalid("ca_pem", "must be PEM certificates")
		}
		pair, err := tls.X509KeyPair(r.CertPEM, r.Key)
		if err != nil {
			return nil, domain.Invalid("cert_pem", "and the key must be a matching TLS client certificate and key")
		}
		d.tlsCfg = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	return d, nil
}

func (d *RemoteDialer) hostKeyCallback() (ssh.HostKeyCallback, error) {
	if d.r.HostKey != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(d.r.HostKey))
		if err != nil {
			return nil, domain.Invalid("host_key", "must be an SSH public key")
		}
		return ssh.FixedHostKey(pub), nil
	}
	if !d.r.TrustFirstKey {
		return nil, domain.Invalid("host_key", "is not pinned yet: verify the server first")
	}
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		d.mu.Lock()
		d.presented = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
		d.mu.Unlock()
		return nil
	}, nil
}

// PresentedKey is the host key the SSH server presented (authorized_keys
// form), "" before the first connection.
func (d *RemoteDialer) PresentedKey() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.presented == "" && d.r.HostKey != "" {
		return d.r.HostKey
	}
	return d.presented
}

// Address is the server's host name or IP address: where its published
// ports are reached.
func (d *RemoteDialer) Address() string { return d.host }

// ClientOpts returns the Docker client options that reach the engine.
func (d *RemoteDialer) ClientOpts() []client.Opt {
	hostPort := net.JoinHostPort(d.host, strconv.Itoa(d.port))
	if d.kind == domain.ServerTCP {
		tr := &http.Transport{
			TLSClientConfig:     d.tlsCfg,
			DialContext:         (&net.Dialer{Timeout: d.r.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: d.r.DialTimeout,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
		}
		return []client.Opt{client.WithHTTPClient(&http.Client{Transport: tr}), client.WithHost("tcp://" + hostPort)}
	}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}
	return []client.Opt{client.WithHTTPClient(&http.Client{Transport: tr}), client.WithHost("http://" + hostPort), client.WithDialContext(d.DialContext)}
}

// DialContext opens one connection to the remote engine over SSH: a
// session running "docker system dial-stdio".
func (d *RemoteDialer) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		c, err := d.client(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := openDialStdio(c)
		if err == nil {
			return conn, nil
		}
		d.drop(c)
		if attempt > 0 || ctx.Err() != nil {
			return nil, fmt.Errorf("ssh %s: docker system dial-stdio: %w", d.host, err)
		}
	}
}

// client returns the SSH connection, dialling it when needed.
func (d *RemoteDialer) client(ctx context.Context) (*ssh.Client, error) {
	d.mu.Lock()
	if c := d.conn; c != nil {
		d.mu.Unlock()
		return c, nil
	}
	d.mu.Unlock()
	addr := net.JoinHostPort(d.host, strconv.Itoa(d.port))
	nd := net.Dialer{Timeout: d.r.DialTimeout}
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	} else {
		_ = raw.SetDeadline(time.Now().Add(d.r.DialTimeout))
	}
	cc, chans, reqs, err := ssh.NewClientConn(raw, addr, d.sshCfg)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	_ = raw.SetDeadline(time.Time{})
	c := ssh.NewClient(cc, chans, reqs)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil { // another caller won
		c.Close()
		return d.conn, nil
	}
	d.conn = c
	go func() {
		_ = c.Wait()
		d.drop(c)
	}()
	return c, nil
}

func (d *RemoteDialer) drop(c *ssh.Client) {
	d.mu.Lock()
	if d.conn == c {
		d.conn = nil
	}
	d.mu.Unlock()
	_ = c.Close()
}

// Close closes the SSH connection.
func (d *RemoteDialer) Close() error {
	d.mu.Lock()
	c := d.conn
	d.conn = nil
	d.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

// openDialStdio runs "docker system dial-stdio" in a new session of c and
// returns its standard input and output as a connection.
func openDialStdio(c *ssh.Client) (net.Conn, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	in, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	out, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Start("docker system dial-stdio"); err != nil {
		s.Close()
		return nil, err
	}
	return &stdioConn{s: s, in: in, out: out, local: c.LocalAddr(), remote: c.RemoteAddr()}, nil
}

// stdioConn is a connection over an SSH session's standard streams.
// Deadlines are not supported (the Docker client uses contexts).
type stdioConn struct {
	s      *ssh.Session
	in     io.WriteCloser
	out    io.Reader
	local  net.Addr
	remote net.Addr
	once   sync.Once
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.out.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.in.Write(p) }

// CloseWrite ends the remote's input (half-close, used by hijacked
// connections).
func (c *stdioConn) CloseWrite() error { return c.in.Close() }

func (c *stdioConn) Close() error {
	c.once.Do(func() {
		_ = c.in.Close()
		_ = c.s.Close()
	})
	return nil
}
func (c *stdioConn) LocalAddr() net.Addr                { return c.local }
func (c *stdioConn) RemoteAddr() net.Addr               { return c.remote }
func (c *stdioConn) SetDeadline(t time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(t time.Time) error { return nil }

// Facts asks the engine about itself: version, CPUs, memory, and the disk
// its images, containers and volumes take.
func (e *Engine) Facts(ctx context.Context) (domain.ServerFacts, error) {
	info, err := e.docker.Info(ctx)
	if err != nil {
		return domain.ServerFacts{}, unavailable(fmt.Errorf("docker info: %w", err))
	}
	f := domain.ServerFacts{EngineVersion: info.ServerVersion, OS: info.OperatingSystem, CPUs: info.NCPU, MemoryBytes: info.MemTotal}
	// The disk figure is best effort: on a busy engine the sizes take long
	// to add up, and the engine answered already.
	duCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if du, err := e.docker.DiskUsage(duCtx, types.DiskUsageOptions{Types: []types.DiskUsageObject{types.ImageObject, types.ContainerObject}}); err == nil {
		f.DiskBytes = du.LayersSize
		for _, c := range du.Containers {
			if c != nil {
				f.DiskBytes += c.SizeRw
			}
		}
	} else if ctx.Err() != nil {
		return domain.ServerFacts{}, ctx.Err()
	}
	if len(f.OS) > 200 {
		f.OS = f.OS[:200]
	}
	if len(f.EngineVersion) > 100 {
		f.EngineVersion = f.EngineVersion[:100]
	}
	return f, nil
}

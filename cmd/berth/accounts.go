package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/accounts"
	"berth/eventstore/keyring"
	cmdhandlers "berth/handlers/commands"
	"berth/migrations"
	"berth/webui"
)

// wireAuth builds the account commands and the Guard over m's pool and
// store, gives the Guard to deps, and returns it; Register it on the server
// once built. It also returns the shredder runner that destroys deleted
// applications' data keys (nil when sealer is not a keyring).
// loginHashBudget is the memory the password checks of logins may use at
// once.
const loginHashBudget = 64 << 20

func wireAuth(m *Main, cmds *cmdhandlers.Handler, sealer domain.SecretSealer) (*webui.Guard, *cmdhandlers.Accounts, []Runner, error) {
	st, err := accounts.New(accounts.Config{Logger: m.Logger}, m.Pool)
	if err != nil {
		return nil, nil, nil, err
	}
	accts, err := cmdhandlers.NewAccounts(cmds, st, st)
	if err != nil {
		return nil, nil, nil, err
	}
	guard, err := webui.NewGuard(webui.GuardConfig{
		SecureCookies: m.Config.SecureCookies, TrustProxyHeaders: m.Config.TrustProxyHeaders,
		AllowedOrigins: m.Config.AllowedOrigins, Logger: m.Logger,
		// Password checks share a memory budget: each argon2id check
		// holds its memory cost (19 MiB by default) while it runs.
		MaxConcurrentHashes: max(1, loginHashBudget/(int(accounts.DefaultArgon2.Memory)<<10)),
	}, accts, st, st)
	if err != nil {
		return nil, nil, nil, err
	}
	var runners []Runner
	if k, ok := sealer.(*keyring.Keyring); ok {
		store, ok := m.Store.(*eventstore.Postgres)
		if ok {
			sh := &keyring.Shredder{Keyring: k, Log: m.Store, Checkpoints: store, Logger: m.Logger}
			runners = append(runners, Runner{Name: "keyring-shredder", Run: sh.Run})
		}
	}
	runners = append(runners, Runner{Name: "login-failures", Run: accts.RunLoginFailureFlusher})
	runners = append(runners, Runner{Name: "revocations", Run: func(ctx context.Context) error { return guard.RunRevocations(ctx, m.Store) }})
	runners = append(runners, Runner{Name: "setup-link", Run: func(ctx context.Context) error {
		logSetupLink(ctx, m, guard)
		<-ctx.Done()
		return ctx.Err()
	}})
	return guard, accts, runners, nil
}

// logSetupLink logs, when no user exists yet, a one-time link that lets the
// first administrator be created in the browser (POST /api/v1/setup).
func logSetupLink(ctx context.Context, m *Main, guard *webui.Guard) {
	link, err := guard.NewSetupLink(ctx, "http://"+m.Addr())
	if err != nil {
		m.Logger.Warn("cannot make a setup link", "err", err)
		return
	}
	if link != "" {
		m.Logger.Info("no user exists yet: create the first administrator at this one-time link, or run `berth user create --role admin`",
			"link", link, "expires_in", webui.DefaultSetupTTL.String())
	}
}

// IssueToken issues an API token of role on a running Main and returns its
// secret (end-to-end tests use it to call the API).
func (m *Main) IssueToken(ctx context.Context, role domain.Role, name string) (string, error) {
	if m.Pool == nil {
		return "", errors.New("berth: not running (call Run first)")
	}
	a, closeStore, err := accountsOver(m.Pool, m.Logger)
	if err != nil {
		return "", err
	}
	defer closeStore()
	t, _, err := a.CreateToken(ctx, cliMeta(), cmdhandlers.CreateToken{Name: name, Role: role})
	if err != nil {
		return "", err
	}
	return t.Secret, nil
}

func cliMeta() cmdhandlers.Meta {
	return cmdhandlers.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "cli", Name: "berth command line"}, Origin: "cli"}
}

// openAccounts opens the database (migrated) and returns the account
// commands with a closing function, for the CLI.
func openAccounts(ctx context.Context, cfg Config, log *slog.Logger) (*cmdhandlers.Accounts, func(), error) {
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := migrations.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, err
	}
	a, closeStore, err := accountsOver(pool, log)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return a, func() { closeStore(); pool.Close() }, nil
}

func accountsOver(pool *pgxpool.Pool, log *slog.Logger) (*cmdhandlers.Accounts, func(), error) {
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: log}, pool)
	if err != nil {
		return nil, nil, fmt.Errorf("open event store: %w", err)
	}
	cmds, err := cmdhandlers.New(cmdhandlers.Config{Logger: log}, store, nil)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	st, err := accounts.New(accounts.Config{Logger: log}, pool)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	a, err := cmdhandlers.NewAccounts(cmds, st, st)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return a, store.Close, nil
}

// runUserCreate is `berth user create --email … --role … --password-stdin`.
func runUserCreate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "user create")
	email := fs.String("email", "", "the user's e-mail address (required)")
	role := fs.String("role", "", "admin, deployer or auditor (required)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input (required)")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *email == "" || *role == "" || !*fromStdin {
		return usagef("--email, --role and --password-stdin are required")
	}
	r, err := domain.ParseRole("--role", *role)
	if err != nil {
		return usageError{err}
	}
	if _, err := domain.NormalizeEmail("--email", *email); err != nil {
		return usageError{err}
	}
	password, err := readPassword(e.stdin)
	if err != nil {
		return usageError{err}
	}
	a, closeAll, err := openAccounts(ctx, cfg, newLogger(e.stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer closeAll()
	u, res, err := a.CreateUser(ctx, cliMeta(), cmdhandlers.CreateUser{Email: *email, Role: r, Password: password})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "user %s created: id %s, role %s, position %d\n", u.Email, u.ID, u.Role, res.Position)
	return err
}

// readPassword reads one line (without its line ending) from r.
func readPassword(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("--password-stdin: no standard input")
	}
	line, err := bufio.NewReader(io.LimitReader(r, domain.MaxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("--password-stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if err := domain.ValidatePassword("password", []byte(line)); err != nil {
		return "", err
	}
	return line, nil
}

// runTokenCreate is `berth token create --role … --name … [--expires-in …]`:
// it prints the token's secret once.
func runTokenCreate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "token create")
	role := fs.String("role", "", "admin, deployer or auditor (required)")
	name := fs.String("name", "", "what the token is for (required)")
	expiresIn := fs.Duration("expires-in", 0, "lifetime, e.g. 720h (default: no expiry)")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *role == "" || *name == "" {
		return usagef("--role and --name are required")
	}
	r, err := domain.ParseRole("--role", *role)
	if err != nil {
		return usageError{err}
	}
	if *expiresIn < 0 {
		return usagef("--expires-in must not be negative")
	}
	var expires time.Time
	if *expiresIn > 0 {
		expires = time.Now().Add(*expiresIn)
	}
	a, closeAll, err := openAccounts(ctx, cfg, newLogger(e.stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer closeAll()
	t, _, err := a.CreateToken(ctx, cliMeta(), cmdhandlers.CreateToken{Name: *name, Role: r, ExpiresAt: expires})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "token %s (%s, role %s) created; it is shown only once:\n", t.ID, t.Name, t.Role)
	_, err = fmt.Fprintln(e.stdout, t.Secret)
	return err
}

// bindAuthFlags registers the session and origin flags of serve.
func bindAuthFlags(fs *flag.FlagSet, c *Config, getenv func(string) string) error {
	for _, b := range []struct {
		p         *bool
		name, env string
		usage     string
	}{
		{&c.SecureCookies, "secure-cookies", "BERTH_SECURE_COOKIES", "mark session cookies Secure (berth is reached over HTTPS only)"},
		{&c.TrustProxyHeaders, "trust-proxy-headers", "BERTH_TRUST_PROXY_HEADERS", "trust X-Forwarded-Proto and X-Forwarded-For (only behind a proxy that sets them)"},
	} {
		def := false
		if v := getenv(b.env); v != "" {
			parsed, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s: %w", b.env, err)
			}
			def = parsed
		}
		fs.BoolVar(b.p, b.name, def, b.usage+" (env "+b.env+")")
	}
	origins := getenv("BERTH_ALLOWED_ORIGINS")
	c.AllowedOrigins = splitOrigins(origins)
	fs.Func("allowed-origins", "comma-separated browser origins allowed besides berth's own, e.g. https://ops.example.com (env BERTH_ALLOWED_ORIGINS)", func(s string) error {
		c.AllowedOrigins = splitOrigins(s)
		return nil
	})
	return nil
}

func splitOrigins(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, strings.TrimRight(o, "/"))
		}
	}
	return out
}

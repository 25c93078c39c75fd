package commands

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"

	"berth/domain"
)

// basicAuthCost is the bcrypt cost of basic-auth password hashes. Traefik
// checks the hash on every request, so it stays at bcrypt's default.
const basicAuthCost = bcrypt.DefaultCost

// prepareRoute turns a route as a client sent it (field names under
// prefix) into one that may be recorded: plain basic-auth passwords hashed,
// no certificate (those are uploaded with SetDomainCertificate), and HTTPS
// only where a certificate can serve it.
func (h *Handler) prepareRoute(prefix string, r domain.Route) (domain.Route, error) {
	if r.Certificate != nil {
		return domain.Route{}, domain.Invalid(join(prefix, "certificate"), "is uploaded on its own: PUT /api/v1/apps/{app}/domains/{host}/certificate")
	}
	if len(r.BasicAuth) > domain.MaxBasicAuthUsers {
		return domain.Route{}, domain.Invalid(join(prefix, "basic_auth"), fmt.Sprintf("at most %d users", domain.MaxBasicAuthUsers))
	}
	users := make([]domain.BasicAuthUser, len(r.BasicAuth))
	for i, u := range r.BasicAuth {
		p := fmt.Sprintf("%s[%d]", join(prefix, "basic_auth"), i)
		switch {
		case u.Password != "" && u.Hash != "":
			return domain.Route{}, domain.Invalid(p+".password", "give either password or hash, not both")
		case u.Password != "":
			if err := domain.ValidateBasicAuthPassword(p+".password", u.Password); err != nil {
				return domain.Route{}, err
			}
			hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), basicAuthCost)
			if err != nil {
				return domain.Route{}, fmt.Errorf("hash basic-auth password: %w", err)
			}
			u.Password, u.Hash = "", string(hash)
		case u.Hash == "":
			return domain.Route{}, domain.Invalid(p+".password", "is required")
		}
		users[i] = u
	}
	if len(users) == 0 {
		users = nil
	}
	r.BasicAuth = users
	if err := r.CheckHTTPS(prefix, h.cfg.ACME); err != nil {
		return domain.Route{}, err
	}
	return r, nil
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// SetDomainCertificate uploads a certificate for one of an application's
// routes. The private key is sealed for the application before anything is
// recorded.
type SetDomainCertificate struct {
	App  string `json:"app"`
	Host string `json:"host"`
	// Certificate is the PEM chain, leaf first.
	Certificate string `json:"certificate"`
	// PrivateKey is the leaf's PEM private key.
	PrivateKey string `json:"private_key"`
}

// SetDomainCertificate validates the certificate (PEM, key matching the
// leaf, covering the host, not expired), seals the key and records the
// route, now served over HTTPS with that certificate (app.domain_changed).
// ErrDomainNotFound when the application does not route the host.
func (h *Handler) SetDomainCertificate(ctx context.Context, meta Meta, cmd SetDomainCertificate) (Result, error) {
	c, err := h.newCall("SetDomainCertificate", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	host, err := domain.NormalizeHost("host", cmd.Host, true)
	if err != nil {
		return Result{}, err
	}
	parsed, err := domain.ParseCertificate("", host, cmd.Certificate, cmd.PrivateKey, time.Now())
	if err != nil {
		return Result{}, err
	}
	if h.sealer == nil {
		return Result{}, domain.Invalid("private_key", "this server cannot seal secrets")
	}
	owner, err := h.keyOwner(ctx, cmd.App)
	if err != nil {
		return Result{}, err
	}
	sealed, err := h.sealer.Seal(ctx, owner, parsed.KeyPEM)
	if err != nil {
		return Result{}, fmt.Errorf("seal private key: %w", err)
	}
	cert := domain.Certificate{
		ChainPEM: parsed.ChainPEM, SealedKey: sealed, Fingerprint: parsed.Fingerprint,
		Issuer: parsed.Issuer, NotBefore: parsed.NotBefore, NotAfter: parsed.NotAfter,
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.AppStream(cmd.App), ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		events, err := app.SetCertificate(host, cert)
		if err != nil {
			return plan{}, err
		}
		return appPlan(app, events), nil
	})
}

// RemoveDomainCertificate removes the uploaded certificate of a route.
type RemoveDomainCertificate struct {
	App  string `json:"app"`
	Host string `json:"host"`
}

// RemoveDomainCertificate removes a route's uploaded certificate: the route
// then gets its certificate from ACME when ACME is configured, and is
// served over plain HTTP otherwise.
func (h *Handler) RemoveDomainCertificate(ctx context.Context, meta Meta, cmd RemoveDomainCertificate) (Result, error) {
	c, err := h.newCall("RemoveDomainCertificate", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	host, err := domain.NormalizeHost("host", cmd.Host, true)
	if err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.AppStream(cmd.App), ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		events, err := app.RemoveCertificate(host, h.cfg.ACME)
		if err != nil {
			return plan{}, err
		}
		return appPlan(app, events), nil
	})
}

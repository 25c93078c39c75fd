package webui

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/commands"
	"berth/projections"
)

// Certificates is what the domains screen reads besides the applications:
// whether ACME is configured, and what the log last recorded about each
// host's certificate. *CertificateReads implements it.
type Certificates interface {
	// ACME reports whether an ACME resolver (Let's Encrypt) is configured.
	ACME() bool
	// Records returns the last certificate record of each host that has
	// one.
	Records(ctx context.Context, hosts []string) (map[string]projections.CertificateEntry, error)
}

// CertificateReads implements Certificates over the projections' queries.
type CertificateReads struct {
	Queries *projections.Queries
	// ACMEEnabled says an ACME resolver is configured.
	ACMEEnabled bool
}

var _ Certificates = CertificateReads{}

// ACME reports whether an ACME resolver is configured.
func (c CertificateReads) ACME() bool { return c.ACMEEnabled }

// Records reads the hosts' certificate records from the log.
func (c CertificateReads) Records(ctx context.Context, hosts []string) (map[string]projections.CertificateEntry, error) {
	return c.Queries.CertificateRecords(ctx, hosts)
}

// DomainView is one domain (route) with its certificate state, as
// GET /api/v1/domains shows it.
type DomainView struct {
	App            string                        `json:"app"`
	Host           string                        `json:"host"`
	PathPrefix     string                        `json:"path_prefix,omitempty"`
	HTTPS          bool                          `json:"https"`
	Port           int                           `json:"port,omitempty"`
	RedirectTo     string                        `json:"redirect_to,omitempty"`
	BasicAuthUsers []string                      `json:"basic_auth_users"`
	Certificate    projections.CertificateStatus `json:"certificate"`
}

// ACMEView says whether ACME is configured and, when it is not, what that
// means for HTTPS.
type ACMEView struct {
	Enabled bool   `json:"enabled"`
	Message string `json:"message,omitempty"`
}

// noACMEMessage explains HTTPS without ACME, for the API and the UI.
const noACMEMessage = "ACME (Let's Encrypt) is not configured on this server, so HTTPS is off by default: " +
	"start berth serve with --acme-email (BERTH_ACME_EMAIL) and Traefik with berth traefik config --acme-email, " +
	"or upload a certificate for a domain."

func (s *Server) registerDomains() {
	s.api("GET /api/v1/domains", s.listDomains)
	s.api("PUT /api/v1/apps/{app}/domains/{host}/certificate", s.setDomainCertificate)
	s.api("DELETE /api/v1/apps/{app}/domains/{host}/certificate", s.removeDomainCertificate)
}

// listDomains answers every domain (of one application with ?app=) with
// its options and certificate state, sorted by host.
func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Certificates == nil {
		return errUnavailable
	}
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	filter := r.URL.Query().Get("app")
	if filter != "" {
		if err := domain.ValidateName("app", filter); err != nil {
			return err
		}
	}
	var apps []projections.App
	if filter != "" {
		a, err := s.deps.Reads.GetApp(r.Context(), filter)
		if err != nil {
			return err
		}
		apps = []projections.App{a}
	} else {
		var err error
		if apps, err = s.deps.Reads.ListApps(r.Context(), ""); err != nil {
			return err
		}
	}
	var hosts []string
	for _, a := range apps {
		for _, d := range a.Config.Domains {
			hosts = append(hosts, d.Host)
		}
	}
	recs, err := s.deps.Certificates.Records(r.Context(), hosts)
	if err != nil {
		return err
	}
	acme := s.deps.Certificates.ACME()
	now := time.Now()
	views := make([]DomainView, 0, len(hosts))
	for _, a := range apps {
		for _, d := range a.Config.Domains {
			v := DomainView{App: a.Name, Host: d.Host, PathPrefix: d.PathPrefix, HTTPS: d.HTTPS, Port: d.Port,
				RedirectTo: d.RedirectTo, BasicAuthUsers: []string{},
				Certificate: projections.Certificate(d, acme, recs[d.Host], now)}
			for _, u := range d.BasicAuth {
				v.BasicAuthUsers = append(v.BasicAuthUsers, u.Username)
			}
			views = append(views, v)
		}
	}
	slices.SortFunc(views, func(a, b DomainView) int { return strings.Compare(a.Host, b.Host) })
	body := map[string]any{"acme": ACMEView{Enabled: acme}, "domains": views}
	if !acme {
		body["acme"] = ACMEView{Message: noACMEMessage}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

type setCertificateRequest struct {
	Certificate string `json:"certificate"`
	PrivateKey  string `json:"private_key"`
}

func (s *Server) setDomainCertificate(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req setCertificateRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	name, host := r.PathValue("app"), r.PathValue("host")
	res, err := s.deps.Commands.SetDomainCertificate(r.Context(), m, commands.SetDomainCertificate{
		App: name, Host: host, Certificate: req.Certificate, PrivateKey: req.PrivateKey})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: name, Host: strings.ToLower(host)})
}

func (s *Server) removeDomainCertificate(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	name, host := r.PathValue("app"), r.PathValue("host")
	res, err := s.deps.Commands.RemoveDomainCertificate(r.Context(), m, commands.RemoveDomainCertificate{App: name, Host: host})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: name, Host: strings.ToLower(host)})
}

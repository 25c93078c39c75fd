package webui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// staticFiles is the embedded web UI: plain HTML, CSS and ES modules, no
// build step.
//
//go:embed static
var staticFiles embed.FS

// UIHandler serves the embedded web UI: index.html at "/" (and "/ui/") and
// its assets under "/ui/". The page talks to the API under /api/v1 and to the live
// socket /api/v1/ws of the same origin.
func UIHandler() http.Handler {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
			"connect-src 'self' ws://"+r.Host+" wss://"+r.Host+"; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		// "/ui/" is where the first administrator's setup link points
		// ("/ui/#setup=…").
		if r.URL.Path == "/" || r.URL.Path == "/index.html" || r.URL.Path == "/ui/" {
			http.ServeFileFS(w, r, sub, "index.html")
			return
		}
		p, ok := strings.CutPrefix(r.URL.Path, "/ui")
		if !ok || strings.HasSuffix(p, "/") {
			http.NotFound(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = p
		files.ServeHTTP(w, r2)
	})
}

// MountUI registers the embedded web UI on s: "GET /{$}" and "GET /ui/".
// They are pages, not API operations, so the OpenAPI document leaves them
// out; call MountUI where berth serve wires the server.
func (s *Server) MountUI() {
	ui := UIHandler()
	s.Handle("GET /{$}", ui)
	s.Handle("GET /ui/", ui)
}

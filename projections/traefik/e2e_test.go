package traefik_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"berth/internal/testenv"
	"berth/projections/traefik"
)

// upstream starts an HTTP server on 127.0.0.1 answering "<name> <path>" and
// returns its address.
func upstream(tb testing.TB, name string) traefik.Upstream {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	tb.Cleanup(srv.Close)
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	return traefik.Upstream{Host: host, Port: p}
}

// waitServed polls Traefik at addr with the Host header host until path
// answers with status and body (body "" matches any body), or fails after
// 15 s.
func waitServed(tb testing.TB, addr, host, path string, status int, body string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	client := &http.Client{
		Timeout:       2 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var gotStatus int
	var gotBody string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			tb.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			gotStatus, gotBody = resp.StatusCode, string(b)
			if gotStatus == status && (body == "" || gotBody == body) {
				return
			}
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("GET %s%s: got %d %q, want %d %q", host, path, gotStatus, gotBody, status, body)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestTraefikEndToEnd runs the real Traefik binary against the Writer's
// directory.
func TestTraefikEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with the real Traefik binary")
	}
	t.Parallel()
	dir := t.TempDir()
	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.StartTraefik(t, dir)

	shop := traefik.App{
		Name: "shop",
		Routes: []traefik.Route{
			{Host: "shop.test"},
			{Host: "shop.test", PathPrefix: "/api"},
		},
		Upstream: upstream(t, "shop"),
	}
	if err := w.Put(shop); err != nil {
		t.Fatalf("Put: %v", err)
	}
	waitServed(t, addr, "shop.test", "/hello", http.StatusOK, "shop /hello")
	waitServed(t, addr, "SHOP.test", "/api/items", http.StatusOK, "shop /items")
	waitServed(t, addr, "other.test", "/", http.StatusNotFound, "")

	t.Run("no upstream answers 503", func(t *testing.T) {
		if err := w.Put(traefik.App{Name: "idle", Routes: []traefik.Route{{Host: "idle.test"}}}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		waitServed(t, addr, "idle.test", "/", http.StatusServiceUnavailable, "")
	})

	t.Run("HTTPS route redirects plain HTTP", func(t *testing.T) {
		secure := traefik.App{Name: "secure", Routes: []traefik.Route{{Host: "secure.test", HTTPS: true}}, Upstream: shop.Upstream}
		if err := w.Put(secure); err != nil {
			t.Fatalf("Put: %v", err)
		}
		waitServed(t, addr, "secure.test", "/", http.StatusMovedPermanently, "")
	})

	t.Run("Remove stops routing", func(t *testing.T) {
		if err := w.Remove("shop"); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		waitServed(t, addr, "shop.test", "/hello", http.StatusNotFound, "")
	})

	t.Run("Reconcile removes a deleted app", func(t *testing.T) {
		if err := w.Put(shop); err != nil {
			t.Fatalf("Put: %v", err)
		}
		waitServed(t, addr, "shop.test", "/hello", http.StatusOK, "shop /hello")
		if err := w.Reconcile(nil); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		if got := dirFiles(t, dir); len(got) != 0 {
			t.Errorf("got files %v, want none", got)
		}
		waitServed(t, addr, "shop.test", "/hello", http.StatusNotFound, "")
	})

	t.Run("Reconcile puts back a file edited by hand", func(t *testing.T) {
		if err := w.Put(shop); err != nil {
			t.Fatalf("Put: %v", err)
		}
		waitServed(t, addr, "shop.test", "/hello", http.StatusOK, "shop /hello")
		other := upstream(t, "intruder")
		edited := fmt.Sprintf("http:\n  routers:\n    shop-1-http:\n      rule: \"Host(`shop.test`)\"\n      service: x\n"+
			"  services:\n    x:\n      loadBalancer:\n        servers:\n          - url: \"http://127.0.0.1:%d\"\n", other.Port)
		if err := os.WriteFile(filepath.Join(dir, traefik.FileName("shop")), []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		waitServed(t, addr, "shop.test", "/hello", http.StatusOK, "intruder /hello")
		if err := w.Reconcile([]traefik.App{shop}); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		waitServed(t, addr, "shop.test", "/hello", http.StatusOK, "shop /hello")
		waitServed(t, addr, "shop.test", "/api/x", http.StatusOK, "shop /x")
	})
}

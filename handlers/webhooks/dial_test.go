package webhooks_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"berth/handlers/webhooks"
)

// TestDialRefusesPrivateTargets: the check runs on the dialled address, so
// it holds whatever a name resolves to.
func TestDialRefusesPrivateTargets(t *testing.T) {
	t.Parallel()
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(local.Close)
	port := local.URL[len("http://127.0.0.1"):] // ":<port>"
	strict := webhooks.NewHTTPClient(false, 2*time.Second)
	for _, target := range []string{
		local.URL,                 // 127.0.0.1
		"http://localhost" + port, // a name resolving to loopback
		"http://10.0.0.1/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:1/",
		"http://0.0.0.0:1/",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, nil)
		res, err := strict.Do(req)
		cancel()
		if err == nil {
			res.Body.Close()
		}
		if !errors.Is(err, webhooks.ErrForbiddenAddress) {
			t.Errorf("POST %s: got %v, want ErrForbiddenAddress", target, err)
		}
	}
	// An administrator may allow private targets.
	res, err := webhooks.NewHTTPClient(true, 2*time.Second).Post(local.URL, "application/json", nil)
	if err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Errorf("got status %d, want 204", res.StatusCode)
	}
}

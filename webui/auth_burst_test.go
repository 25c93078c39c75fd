package webui_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"berth/domain"
	"berth/eventstore/accounts"
	"berth/handlers/commands"
	"berth/webui"
)

// TestLoginBurstIsBoundedInMemoryAndEvents sends 50 parallel wrong-password
// logins for one account with the real argon2id cost: the limiter lets only
// LoginFreeFailures of them reach a password check, the others answer 429
// with Retry-After; the memory the checks allocate stays that of a few
// checks, not fifty; and the log records the refused logins in bounded form,
// counting every one that was checked.
func TestLoginBurstIsBoundedInMemoryAndEvents(t *testing.T) {
	e := newAuthEnvArgon(t, webui.GuardConfig{LoginFreeFailures: 5, MaxConcurrentHashes: 2}, accounts.DefaultArgon2)
	id := e.user("burst@example.com", domain.RoleDeployer, "correct horse battery")
	body := `{"email": "burst@example.com", "password": "wrong password 123"}`

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 50
	statuses := make([]int, n)
	retryAfter := make([]string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			// No short client time-out: a loaded machine may be slow to
			// hash, and the test is about what happens, not how fast.
			res, err := e.http.Client().Post(e.http.URL+"/api/v1/login", "application/json", strings.NewReader(body))
			if err != nil {
				t.Errorf("login %d: %v", i, err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			statuses[i], retryAfter[i] = res.StatusCode, res.Header.Get("Retry-After")
		})
	}
	close(start)
	wg.Wait()
	runtime.ReadMemStats(&after)

	refused, limited := 0, 0
	for i, st := range statuses {
		switch st {
		case http.StatusUnauthorized:
			refused++
		case http.StatusTooManyRequests:
			limited++
			if retryAfter[i] == "" {
				t.Errorf("login %d: 429 without Retry-After", i)
			}
		default:
			t.Errorf("login %d: got %d, want 401 or 429", i, st)
		}
	}
	if refused < 1 || refused > 5 {
		t.Errorf("logins that reached a password check: got %d, want 1 to 5 (LoginFreeFailures)", refused)
	}
	// One check allocates the argon2id memory cost (19 MiB); fifty would
	// allocate about 950 MiB.
	perHash := uint64(accounts.DefaultArgon2.Memory) << 10
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*perHash {
		t.Errorf("memory allocated by the burst: %d MiB, want at most %d MiB (8 checks)", alloc>>20, 8*perHash>>20)
	}

	e.clock.Advance(commands.LoginFailureWindow)
	if err := e.accts.FlushLoginFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	events, err := e.env.store.ReadStream(context.Background(), domain.UserStream(id), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var failed []domain.RecordedEvent
	for _, ev := range events {
		if ev.Type == domain.EventUserLoginFailed {
			failed = append(failed, ev)
		}
	}
	if len(failed) > 2 {
		t.Errorf("user.login_failed events: got %d, want at most 2 for one account and window", len(failed))
	}
	if got := loginFailureCount(t, failed); got != refused {
		t.Errorf("refused logins the events count: got %d, want %d", got, refused)
	}
}

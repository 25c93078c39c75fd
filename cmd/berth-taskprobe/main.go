// Command berth-taskprobe requests each URL given and prints one JSON line
// per URL with the outcome: {"url":…,"ok":…,"status":…,"error":…}. A
// 2xx or 3xx answer is ok; redirects are not followed.
//
// berth runs it, in an image built FROM scratch, as a short-lived container
// on a swarm manager attached to the applications' overlay network, to
// request each new task's health check path on whichever node the task
// runs. Build it statically: CGO_ENABLED=0 go build ./cmd/berth-taskprobe.
//
// With -promote DIR it renames every file DIR/NAME.new to DIR/NAME instead,
// each in one atomic step: berth stages the dynamic configuration of a
// swarm's Traefik in its volume that way (Docker's archive API replaces a
// file by removing it first), so Traefik never reads a file half written
// or missing.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// result is one URL's outcome.
type result struct {
	URL    string `json:"url"`
	OK     bool   `json:"ok"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

func main() {
	fs := flag.NewFlagSet("berth-taskprobe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "time each request may take")
	promoteDir := fs.String("promote", "", "rename each `DIR`/NAME.new to DIR/NAME and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *promoteDir != "" {
		n, err := promote(*promoteDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "berth-taskprobe:", err)
			os.Exit(1)
		}
		fmt.Printf("{\"promoted\":%d}\n", n)
		return
	}
	if fs.NArg() == 0 || *timeout <= 0 {
		fmt.Fprintln(os.Stderr, "usage: berth-taskprobe [-timeout 3s] http://addr:port/path ...")
		os.Exit(2)
	}
	hc := &http.Client{
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       *timeout,
	}
	results := make([]result, fs.NArg())
	var wg sync.WaitGroup
	for i, raw := range fs.Args() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = probe(hc, raw)
		}()
	}
	wg.Wait()
	enc := json.NewEncoder(os.Stdout)
	for _, r := range results {
		_ = enc.Encode(r)
	}
}

func probe(hc *http.Client, raw string) result {
	r := result{URL: raw}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		r.Error = "not an http URL"
		return r
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, raw, nil)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	req.Header.Set("User-Agent", "berth-health-check")
	resp, err := hc.Do(req)
	if err != nil {
		r.Error = "GET " + u.Path + ": " + err.Error()
		return r
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	r.Status = resp.StatusCode
	r.OK = resp.StatusCode >= 200 && resp.StatusCode < 400
	if !r.OK {
		r.Error = fmt.Sprintf("GET %s answered %s", u.Path, resp.Status)
	}
	return r
}

// promote renames each regular file dir/NAME.new to dir/NAME and returns
// how many it renamed.
func promote(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".new")
		if !ok || name == "" || !e.Type().IsRegular() {
			continue
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, name)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

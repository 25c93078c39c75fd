// Command stackserver is the server the compose tests build into an image
// FROM scratch, one binary for every service of a test stack:
//
//	stackserver            serve on $PORT (default 8080): "/" answers
//	                       "<NAME> <VERSION>", followed by what $UPSTREAM's
//	                       "/" answers when set; "/healthz" answers "ok";
//	                       with $ADMIN_PORT, "/" there answers
//	                       "<NAME> admin <VERSION>"
//	stackserver check      exit 0 when the local server's /healthz answers
//	                       200 (a compose healthcheck without a shell)
//	stackserver once       print "<NAME> done" and exit 0 (a one-shot job)
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	name, version := os.Getenv("NAME"), os.Getenv("VERSION")
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "check":
			c := &http.Client{Timeout: 2 * time.Second}
			res, err := c.Get("http://127.0.0.1:" + port + "/healthz")
			if err != nil || res.StatusCode != http.StatusOK {
				os.Exit(1)
			}
			os.Exit(0)
		case "once":
			fmt.Printf("%s done\n", name)
			os.Exit(0)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		out := name + " " + version
		if up := os.Getenv("UPSTREAM"); up != "" {
			res, err := client.Get(up + "/")
			if err != nil {
				http.Error(w, out+" -> "+err.Error(), http.StatusBadGateway)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			out += " -> " + strings.TrimSpace(string(b))
		}
		fmt.Fprintln(w, out)
	})
	if admin := os.Getenv("ADMIN_PORT"); admin != "" {
		go func() {
			log.Fatal(http.ListenAndServe(":"+admin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintln(w, name+" admin "+version)
			})))
		}()
	}
	fmt.Printf("%s %s ready\n", name, version)
	log.Fatal(http.ListenAndServe(":"+port, mux))
}

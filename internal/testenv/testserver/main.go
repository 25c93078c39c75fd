// Command testserver is the tiny HTTP server the Docker tests build into an
// image FROM scratch. It listens on $PORT (default 8080), answers "/" with
// "hello <VERSION>" and "/healthz" with "ok", and logs one line per request.
// With HEALTH_FAIL set, /healthz answers 503. It writes one line to stdout
// when it starts; everything else it logs goes to stderr.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	version := os.Getenv("VERSION")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("healthz from %s", r.RemoteAddr)
		if os.Getenv("HEALTH_FAIL") != "" {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr)
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "hello %s\n", version)
	})
	fmt.Printf("testserver %s ready on stdout\n", version)
	log.Printf("testserver %s listening on :%s", version, port)
	log.Fatal(http.ListenAndServe(":"+port, mux))
}

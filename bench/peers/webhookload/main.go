// webhookload: the load generator of klua's webhook benchmark. It POSTs one
// AdmissionReview (a Widget CREATE) to a webhook URL over TLS from -conns
// keep-alive connections, each sending its next request when the previous
// answer is in, for -duration, and checks every answer says allowed.
//
//	webhookload -url https://127.0.0.1:PORT/validate/widget -ca CA.crt -body REVIEW.json
//	            [-conns 4] [-duration 5s] [-warmup 1s]
//
// Prints one JSON line: requests, errors, rps, p50_ms, p99_ms (latency of
// each round trip: request written to answer read).
//
// With -kubeconfig K -namespace NS it measures the whole admission round
// trip instead: each request is a server-side dry-run create of a Widget
// (POST .../widgets?dryRun=All) sent to the API server, which calls the
// webhook configured for NS. Before measuring it waits until a Widget named
// probe-deny is refused (the webhook configuration is in effect), unless
// -no-webhook.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"klua.dev/bench/internal/benchout"
)

func main() {
	url := flag.String("url", "", "webhook URL")
	caFile := flag.String("ca", "", "CA bundle that signed the server's certificate")
	bodyFile := flag.String("body", "", "AdmissionReview JSON to send")
	conns := flag.Int("conns", 4, "concurrent keep-alive connections")
	duration := flag.Duration("duration", 5*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", time.Second, "load before measuring")
	kubeconfig := flag.String("kubeconfig", "", "measure through this API server")
	namespace := flag.String("namespace", "", "the Widgets' namespace (with -kubeconfig)")
	noWebhook := flag.Bool("no-webhook", false, "with -kubeconfig: no webhook to wait for")
	flag.Parse()
	if *kubeconfig != "" {
		throughAPIServer(*kubeconfig, *namespace, *noWebhook, *conns, *duration, *warmup)
		return
	}
	ca, err := os.ReadFile(*caFile)
	check(err)
	body, err := os.ReadFile(*bodyFile)
	check(err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		check(fmt.Errorf("no certificate in %s", *caFile))
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: *conns,
		MaxConnsPerHost:     *conns,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	allowed := []byte(`"allowed":true`)
	var mu sync.Mutex
	var lat []time.Duration
	errors := 0
	start := time.Now()
	measureFrom := start.Add(*warmup)
	end := measureFrom.Add(*duration)
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				req, _ := http.NewRequest("POST", *url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				ok := false
				if err == nil {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					ok = rerr == nil && resp.StatusCode == 200 && bytes.Contains(b, allowed)
				}
				d := time.Since(t0)
				if t0.After(measureFrom) {
					if ok {
						mine = append(mine, d)
					} else {
						bad++
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errors += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	report(lat, errors, *duration)
}

// The same measurement through the API server (see the top).
func throughAPIServer(kubeconfig, ns string, noWebhook bool, conns int, duration,
	warmup time.Duration) {
	cfg, err := benchout.Config(kubeconfig, -1, 0)
	check(err)
	cfg.ContentType = "application/json"
	cfg.GroupVersion = &schema.GroupVersion{Group: "bench.klua.dev", Version: "v1"}
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	check(err)
	widget := func(name string) []byte {
		b, _ := json.Marshal(map[string]any{
			"apiVersion": "bench.klua.dev/v1", "kind": "Widget",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec":     map[string]any{"seq": 1, "payload": strings.Repeat("x", 800)},
		})
		return b
	}
	create := func(body []byte) error {
		return rc.Post().Namespace(ns).Resource("widgets").Param("dryRun", "All").
			Body(body).Do(context.Background()).Error()
	}
	if !noWebhook {
		deadline := time.Now().Add(60 * time.Second)
		for create(widget("probe-deny")) == nil {
			if time.Now().After(deadline) {
				check(fmt.Errorf("the webhook configuration did not take effect in 60 s"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	body := widget("w-1")
	var mu sync.Mutex
	var lat []time.Duration
	errors := 0
	measureFrom := time.Now().Add(warmup)
	end := measureFrom.Add(duration)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				err := create(body)
				d := time.Since(t0)
				if t0.After(measureFrom) {
					if err == nil {
						mine = append(mine, d)
					} else {
						bad++
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			errors += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	report(lat, errors, duration)
}

func report(lat []time.Duration, errors int, duration time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	out, _ := json.Marshal(map[string]any{
		"requests": len(lat), "errors": errors,
		"rps":    float64(len(lat)) / duration.Seconds(),
		"p50_ms": pct(0.50), "p99_ms": pct(0.99),
	})
	fmt.Println(string(out))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookload:", err)
		os.Exit(2)
	}
}

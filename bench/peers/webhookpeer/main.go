// webhookpeer: the controller-runtime peer of klua's webhook benchmark. A
// webhook server (sigs.k8s.io/controller-runtime/pkg/webhook) with one
// validating handler that allows every request, as a kubebuilder user
// writes a trivial validator for an unstructured kind: decode the
// AdmissionReview, decode the object, answer allowed.
//
//	webhookpeer -addr 127.0.0.1:PORT -cert-dir DIR
//
// Serves /validate/widget over TLS with DIR/tls.crt and DIR/tls.key;
// prints "BENCH ready" once it listens.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9444", "host:port to serve on")
	certDir := flag.String("cert-dir", "", "folder with tls.crt and tls.key")
	flag.Parse()
	log.SetLogger(zap.New(zap.UseDevMode(false)))
	host, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookpeer:", err)
		os.Exit(2)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookpeer:", err)
		os.Exit(2)
	}
	srv := webhook.NewServer(webhook.Options{Host: host, Port: port, CertDir: *certDir})
	decoder := admission.NewDecoder(runtime.NewScheme())
	srv.Register("/validate/widget", &webhook.Admission{Handler: admission.HandlerFunc(
		func(ctx context.Context, req admission.Request) admission.Response {
			obj := &unstructured.Unstructured{}
			if err := decoder.Decode(req, obj); err != nil {
				return admission.Errored(400, err)
			}
			if obj.GetName() == "probe-deny" { // lets the load generator see the webhook is on
				return admission.Denied("probe")
			}
			return admission.Allowed("")
		})})
	go func() {
		for {
			c, err := net.DialTimeout("tcp", *addr, time.Second)
			if err == nil {
				c.Close()
				fmt.Println("BENCH ready")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if err := srv.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "webhookpeer:", err)
		os.Exit(1)
	}
}

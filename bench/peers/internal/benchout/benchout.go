// Package benchout holds what the three benchmark programs share: the
// machine-readable lines they print (the harness bench/harness.py reads them),
// the Widget kind, and a kubeconfig loader with the same client settings.
//
// Lines, one per event, written unbuffered to stdout so the harness can stamp
// each one as it arrives (a Go logger writes the same way):
//
//	BENCH synced                            the watch cache holds the full list
//	BENCH reconciled_all n=N                the reconciler ran N times (N = -expect)
//	BENCH seen obj=NS/NAME seq=S t=NANOS    a reconcile saw spec.seq = S, at t (CLOCK_REALTIME)
//	METRIC name value                       a figure the program measured itself
package benchout

import (
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// GVR and GVK of the benchmark's custom resource (bench/crd.yaml).
var (
	GVR = schema.GroupVersionResource{Group: "bench.klua.dev", Version: "v1", Resource: "widgets"}
	GVK = schema.GroupVersionKind{Group: "bench.klua.dev", Version: "v1", Kind: "Widget"}
)

var mu sync.Mutex

// Printf writes one line to stdout at once (one write call per line).
func Printf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	mu.Lock()
	_, _ = os.Stdout.WriteString(s)
	mu.Unlock()
}

// Seen reports that a reconcile observed spec.seq of obj at this moment.
func Seen(key string, seq int64) {
	Printf("BENCH seen obj=%s seq=%d t=%d\n", key, seq, time.Now().UnixNano())
}

// Config loads a kubeconfig. qps < 0 switches client-side throttling off, as
// controller-runtime's ctrl.GetConfig does by default (API priority and
// fairness limits on the server instead).
func Config(path string, qps float32, burst int) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg.QPS = qps
	cfg.Burst = burst
	return cfg, nil
}

// WaitSynced polls hasSynced every millisecond and prints "BENCH synced" once
// it is true. (client-go's WaitForCacheSync polls every 100 ms, too coarse to
// time a sync that takes about a second.)
func WaitSynced(done <-chan struct{}, hasSynced func() bool) bool {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !hasSynced() {
		select {
		case <-done:
			return false
		case <-t.C:
		}
	}
	Printf("BENCH synced\n")
	return true
}

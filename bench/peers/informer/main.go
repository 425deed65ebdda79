// informer: the client-go floor of klua's benchmark. A dynamic shared
// informer for bench.klua.dev/v1 Widget whose handlers only count events
// (and report spec.seq of updates, for the event-latency floor).
//
//	informer -kubeconfig K [-namespace NS] [-expect N]
//
// Prints the lines described in internal/benchout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	toolscache "k8s.io/client-go/tools/cache"

	"klua.dev/bench/internal/benchout"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	namespace := flag.String("namespace", metav1.NamespaceAll, "watch only this namespace (default: all)")
	expect := flag.Int64("expect", -1, "print BENCH reconciled_all after this many add events")
	qps := flag.Float64("qps", -1, "client QPS (<0: no client-side throttling)")
	burst := flag.Int("burst", 0, "client burst")
	flag.Parse()
	if err := run(*kubeconfig, *namespace, *expect, float32(*qps), *burst); err != nil {
		fmt.Fprintln(os.Stderr, "informer:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, namespace string, expect int64, qps float32, burst int) error {
	cfg, err := benchout.Config(kubeconfig, qps, burst)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var adds, updates, deletes atomic.Int64
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, namespace, nil)
	inf := f.ForResource(benchout.GVR).Informer()
	seen := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		if seq, ok, _ := unstructured.NestedInt64(u.Object, "spec", "seq"); ok && seq > 0 {
			benchout.Seen(u.GetNamespace()+"/"+u.GetName(), seq)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if adds.Add(1) == expect {
				benchout.Printf("BENCH reconciled_all n=%d\n", expect)
			}
		},
		UpdateFunc: func(_, obj any) { updates.Add(1); seen(obj) },
		DeleteFunc: func(any) { deletes.Add(1) },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	benchout.WaitSynced(ctx.Done(), inf.HasSynced)
	<-ctx.Done()
	f.Shutdown()
	benchout.Printf("METRIC events_add %d\nMETRIC events_update %d\nMETRIC events_delete %d\n",
		adds.Load(), updates.Load(), deletes.Load())
	return nil
}

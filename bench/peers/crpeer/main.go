// crpeer: the controller-runtime peer of klua's benchmark. A manager with one
// controller for bench.klua.dev/v1 Widget, written as kubebuilder users write
// one for an unstructured kind: Get from the cache, and in -mode=status set
// status.run to the -run token (once per object and run) through a merge
// patch of the status subresource.
//
//	crpeer [-kubeconfig K] [-namespace NS] [-mode noop|status] [-run TOKEN] [-workers 4] [-expect N]
//
// Prints the lines described in internal/benchout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"klua.dev/bench/internal/benchout"
)

type reconciler struct {
	client.Client
	status bool
	run    string
	expect int64
	count  atomic.Int64
}

func newWidget() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(benchout.GVK)
	return u
}

func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	u := newWidget()
	if err := r.Get(ctx, req.NamespacedName, u); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if seq, ok, _ := unstructured.NestedInt64(u.Object, "spec", "seq"); ok && seq > 0 {
		benchout.Seen(req.String(), seq)
	}
	if r.status {
		if run, _, _ := unstructured.NestedString(u.Object, "status", "run"); run != r.run {
			orig := u.DeepCopy()
			if err := unstructured.SetNestedField(u.Object, r.run, "status", "run"); err != nil {
				return ctrl.Result{}, err
			}
			if err := r.Status().Patch(ctx, u, client.MergeFrom(orig)); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if n := r.count.Add(1); n == r.expect {
		benchout.Printf("BENCH reconciled_all n=%d\n", n)
	}
	return ctrl.Result{}, nil
}

func main() {
	namespace := flag.String("namespace", "", "watch only this namespace (default: all)")
	mode := flag.String("mode", "noop", "noop, or status (patch status.run once)")
	runToken := flag.String("run", "bench", "the value -mode=status writes to status.run")
	workers := flag.Int("workers", 4, "MaxConcurrentReconciles")
	expect := flag.Int64("expect", -1, "print BENCH reconciled_all after this many reconciles")
	qps := flag.Float64("qps", -1, "client QPS (<0: no client-side throttling, controller-runtime's default)")
	burst := flag.Int("burst", 0, "client burst")
	cpuprofile := flag.String("cpuprofile", "", "write a Go CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "crpeer:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	ctrl.SetLogger(zap.New())
	if err := run(*namespace, *mode == "status", *runToken, *workers, *expect, float32(*qps), *burst); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "crpeer:", err)
		os.Exit(1)
	}
}

func run(namespace string, status bool, runToken string, workers int, expect int64, qps float32, burst int) error {
	// -kubeconfig is controller-runtime's own flag (or $KUBECONFIG), as in a
	// kubebuilder main.go; GetConfig also switches client-side throttling off.
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	if qps >= 0 {
		cfg.QPS, cfg.Burst = qps, burst
	}
	opts := manager.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The manager's client reads unstructured objects live from the API
		// server unless told otherwise; typed objects (what kubebuilder
		// scaffolds) come from the cache. Read from the cache, as klua does.
		Client: client.Options{Cache: &client.CacheOptions{Unstructured: true}},
	}
	if namespace != "" {
		opts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}}
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	// Ask for the informer before the manager starts, so the sync marker below
	// waits for the very informer the controller uses.
	inf, err := mgr.GetCache().GetInformer(ctx, newWidget(), cache.BlockUntilSynced(false))
	if err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		benchout.WaitSynced(ctx.Done(), inf.HasSynced)
		<-ctx.Done()
		return nil
	})); err != nil {
		return err
	}
	r := &reconciler{Client: mgr.GetClient(), status: status, run: runToken, expect: expect}
	if err := ctrl.NewControllerManagedBy(mgr).For(newWidget()).Named("widget").
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).Complete(r); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

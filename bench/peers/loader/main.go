// loader: drives the API server side of klua's benchmark with client-go.
//
//	loader create      -kubeconfig K -namespace NS -count N [-concurrency 16] [-payload 440]
//	    Creates NS if missing and Widgets w-000000.. concurrently. Prints
//	    METRIC create_ms and METRIC create_per_s.
//	loader update      -kubeconfig K -namespace NS -count M -rate R -duration SECONDS -seq-start S
//	    Merge-patches spec.seq of w-000000..w-(M-1) round robin, R patches a
//	    second on a fixed schedule, seq counting up from S. For each accepted
//	    patch prints "ACK obj=NS/NAME seq=S t=NANOS sent=NANOS", t taken right after the
//	    response (CLOCK_REALTIME, the clock the reconcilers stamp "seen" with),
//	    sent right before the request, and at the end METRIC update_rtt_p50_ms,
//	    the median request round trip.
//	loader wait-status -kubeconfig K -namespace NS -count N -run TOKEN [-timeout 300s]
//	    Lists and watches NS until N Widgets have status.run == TOKEN, then
//	    prints "BENCH all_status n=N t=NANOS" and exits.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"klua.dev/bench/internal/benchout"
)

func name(i int) string { return fmt.Sprintf("w-%06d", i) }

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loader: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: loader create|update|wait-status [flags]")
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file")
	namespace := fs.String("namespace", "bench", "namespace of the Widgets")
	count := fs.Int("count", 100, "number of Widgets")
	concurrency := fs.Int("concurrency", 16, "requests in flight")
	payload := fs.Int("payload", 440, "bytes of spec.payload (the object is about 1 KB with metadata)")
	rate := fs.Float64("rate", 50, "updates per second")
	duration := fs.Float64("duration", 10, "seconds of updates")
	seqStart := fs.Int64("seq-start", 1, "first spec.seq written")
	timeout := fs.Duration("timeout", 300*time.Second, "give up after this long")
	runToken := fs.String("run", "bench", "wait-status: the status.run value to wait for")
	_ = fs.Parse(os.Args[2:])

	cfg, err := benchout.Config(*kubeconfig, -1, 0)
	if err != nil {
		die("%v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		die("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	widgets := dyn.Resource(benchout.GVR).Namespace(*namespace)
	switch cmd {
	case "create":
		err = create(ctx, dyn, widgets, *namespace, *count, *concurrency, *payload)
	case "update":
		err = update(ctx, widgets, *namespace, *count, *concurrency, *rate, *duration, *seqStart)
	case "wait-status":
		err = waitStatus(ctx, widgets, *count, *runToken)
	default:
		die("unknown command %q (create, update, wait-status)", cmd)
	}
	if err != nil {
		die("%s: %v", cmd, err)
	}
}

func ensureNamespace(ctx context.Context, dyn dynamic.Interface, ns string) error {
	nsObj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns},
	}}
	_, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).
		Create(ctx, nsObj, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// parallel runs fn(0..n-1) on `workers` goroutines; the first error wins.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func create(ctx context.Context, dyn dynamic.Interface, widgets dynamic.ResourceInterface,
	ns string, n, workers, payloadLen int) error {
	if err := ensureNamespace(ctx, dyn, ns); err != nil {
		return err
	}
	payload := strings.Repeat("klua-bench-", payloadLen/11+1)[:payloadLen]
	start := time.Now()
	err := parallel(n, workers, func(i int) error {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "bench.klua.dev/v1",
			"kind":       "Widget",
			"metadata": map[string]any{
				"name":   name(i),
				"labels": map[string]any{"app": "bench", "shard": fmt.Sprintf("s%02d", i%16)},
			},
			"spec": map[string]any{"seq": int64(0), "replicas": int64(1), "payload": payload},
		}}
		_, err := widgets.Create(ctx, obj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	el := time.Since(start)
	fmt.Printf("METRIC create_ms %d\nMETRIC create_per_s %.0f\n", el.Milliseconds(), float64(n)/el.Seconds())
	return nil
}

func update(ctx context.Context, widgets dynamic.ResourceInterface, ns string,
	m, workers int, rate, duration float64, seqStart int64) error {
	total := int(rate * duration)
	jobs := make(chan int, total)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	var mu sync.Mutex
	var rtts []time.Duration // request round trips of the accepted patches
	var errs atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				seq := seqStart + int64(i)
				key := name(i % m)
				patch := fmt.Appendf(nil, `{"spec":{"seq":%d}}`, seq)
				sent := time.Now()
				_, err := widgets.Patch(ctx, key, types.MergePatchType, patch, metav1.PatchOptions{})
				t := time.Now().UnixNano()
				rtt := time.Duration(t - sent.UnixNano())
				if err != nil {
					if errs.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "loader: update:", err)
					}
					continue
				}
				mu.Lock()
				fmt.Fprintf(out, "ACK obj=%s/%s seq=%d t=%d sent=%d\n", ns, key, seq, t, sent.UnixNano())
				rtts = append(rtts, rtt)
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < total; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	el := time.Since(start)
	slices.Sort(rtts)
	p50 := time.Duration(0)
	if len(rtts) > 0 {
		p50 = rtts[len(rtts)/2]
	}
	fmt.Fprintf(out, "METRIC updates_sent %d\nMETRIC update_errors %d\nMETRIC update_rate_achieved %.1f\n"+
		"METRIC update_rtt_p50_ms %.3f\n", total, errs.Load(), float64(total)/el.Seconds(),
		float64(p50)/float64(time.Millisecond))
	if err := out.Flush(); err != nil {
		return err
	}
	if errs.Load() > 0 {
		return fmt.Errorf("%d of %d updates failed", errs.Load(), total)
	}
	return nil
}

func waitStatus(ctx context.Context, widgets dynamic.ResourceInterface, n int, runToken string) error {
	done := map[string]bool{}
	note := func(u *unstructured.Unstructured) {
		if r, _, _ := unstructured.NestedString(u.Object, "status", "run"); r == runToken {
			done[u.GetName()] = true
		}
	}
	for {
		list, err := widgets.List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for i := range list.Items {
			note(&list.Items[i])
		}
		rv := list.GetResourceVersion()
		for len(done) < n {
			w, err := widgets.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				return err
			}
			gone := false
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					gone = true // e.g. 410 Gone: list again
					break
				}
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				rv = u.GetResourceVersion()
				if ev.Type != watch.Bookmark {
					note(u)
				}
				if len(done) >= n {
					break
				}
			}
			w.Stop()
			if ctx.Err() != nil {
				return errors.New("timed out: " + fmt.Sprint(len(done)) + " of " + fmt.Sprint(n) + " statuses written")
			}
			if gone {
				break
			}
		}
		if len(done) >= n {
			fmt.Printf("BENCH all_status n=%d t=%d\n", len(done), time.Now().UnixNano())
			return nil
		}
	}
}

// A real OTLP/HTTP trace receiver for the tracing tests: the OpenTelemetry Collector's own
// otlpreceiver (same code a collector deployment runs; it takes OTLP/protobuf and OTLP/JSON), with
// a consumer that appends every received batch to a file as one OTLP-JSON line. The tests read
// that file to check the spans the gateway exported, so nothing between the gateway's exporter and
// the check is ours.
//
// -count-only: each batch appends only its span count (one decimal line). Re-encoding every span
// as JSON and writing it out is work a collector elsewhere would do on its own cores (or not at
// all); on the benchmark's two shared cores it was most of the receiver's CPU, which then came out
// of the gateway's latency (bench:tracing, issue 15). The receiver still decodes every request.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

func main() {
	endpoint := flag.String("http", "127.0.0.1:4318", "OTLP/HTTP listen address")
	out := flag.String("out", "", "file the received traces are appended to (OTLP JSON, one batch a line)")
	countOnly := flag.Bool("count-only", false, "append each batch's span count instead of its spans")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "otlp-receiver: -out is required")
		os.Exit(2)
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlp-receiver:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	marshaler := &ptrace.JSONMarshaler{}
	cons, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		if *countOnly {
			mu.Lock()
			defer mu.Unlock()
			_, err := fmt.Fprintf(f, "%d\n", td.SpanCount())
			return err
		}
		b, err := marshaler.MarshalTraces(td)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		// One write per batch so a reader never sees half a line.
		_, err = f.Write(append(b, '\n'))
		return err
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlp-receiver:", err)
		os.Exit(1)
	}
	factory := otlpreceiver.NewFactory()
	cfg := factory.CreateDefaultConfig().(*otlpreceiver.Config)
	configure(cfg, *endpoint)
	ctx := context.Background()
	r, err := factory.CreateTraces(ctx, receivertest.NewNopSettings(), cfg, cons)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlp-receiver:", err)
		os.Exit(1)
	}
	if err := r.Start(ctx, componenttest.NewNopHost()); err != nil {
		fmt.Fprintln(os.Stderr, "otlp-receiver:", err)
		os.Exit(1)
	}
	// The test waits for this line before sending.
	fmt.Printf("listening on %s\n", *endpoint)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	_ = r.Shutdown(ctx)
	_ = f.Close()
}

// configure keeps OTLP/HTTP only (the gateway's exporter speaks it), on the given address.
func configure(cfg *otlpreceiver.Config, endpoint string) {
	cfg.GRPC = nil
	cfg.HTTP.Endpoint = endpoint
}

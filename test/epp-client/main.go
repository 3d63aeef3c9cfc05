// epp-client drives an Endpoint Picker the way Envoy's ext_proc filter does, using
// go-control-plane's generated types (none of our TypeScript): request headers (with
// protocol_config and the envoy.lb.subset_hint metadata), body chunks, end of stream; it then
// routes like Envoy's ORIGINAL_DST cluster (x-gateway-destination-endpoint, walking the fallbacks
// on connect failures), forwards the (possibly mutated) body to the picked pod over real HTTP,
// and feeds the pod's response headers (with envoy.lb/x-gateway-destination-endpoint-served) and
// body chunks back through the EPP, in FULL_DUPLEX_STREAMED or BUFFERED body mode.
//
//	epp-client run <spec.json>    one result JSON line per request on stdout
//	epp-client bench <spec.json>  decision latency percentiles as JSON on stdout
//	epp-client health <addr> <service>  grpc.health.v1 Check: prints the serving status
//	epp-client floor-server <addr>  a no-decision ext_proc server in Go (floor.go; bench:epp)
//
// With "pause": true a request prints {"event":"decided",...} on stderr after the decision and
// waits for a line on stdin before forwarding (tests look at the EPP's in-flight load meanwhile).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"
)

type Request struct {
	ID      string            `json:"id"`
	Mode    string            `json:"mode"` // "streamed" (FULL_DUPLEX_STREAMED) or "buffered"
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	// ChunkBytes splits the request body in streamed mode (Envoy forwards what it receives).
	ChunkBytes int `json:"chunkBytes"`
	// Subset: a JSON list or a comma string, sent as envoy.lb.subset_hint metadata as given.
	Subset *structpb.Value `json:"subset"`
	// NoProtocolConfig: do not announce the body modes (older Envoy).
	NoProtocolConfig bool `json:"noProtocolConfig"`
	// Forward: send to the picked pod and run the response phases (else stop after the decision).
	Forward bool `json:"forward"`
	// Reset: cancel the stream right after the decision (client gone before the upstream answered).
	Reset bool `json:"reset"`
	Pause bool `json:"pause"`
}

type Spec struct {
	Addr        string    `json:"addr"`
	Requests    []Request `json:"requests"`
	Concurrency int       `json:"concurrency"`
	// Bench: repeat Requests[0] this many times (after Warmup) and report latency percentiles.
	Iterations int `json:"iterations"`
	Warmup     int `json:"warmup"`
	// Timeline: bench also reports when each request-phase message was sent and each answer came,
	// from the headers' send (p50/p90 per message, µs): where a decision's time goes.
	Timeline bool `json:"timeline"`
	// Targets: bench alternates its streams over these servers (instead of Addr), one connection
	// each: an A/B at the same moments of the machine.
	Targets []string `json:"targets"`
}

// dialOptions: plaintext, and HTTP/2 flow-control windows as Envoy opens them towards an
// ext_proc server (its http2_protocol_options defaults: 256 MiB per stream and per connection).
// grpc-go's own defaults (64 KiB, grown by its BDP estimate) would make the EPP wait for this
// client's WINDOW_UPDATEs once a few 32 KiB bodies are in flight, which Envoy never asks of it.
func dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(256 << 20),
		grpc.WithInitialConnWindowSize(256 << 20),
	}
}

type Immediate struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type Result struct {
	ID                  string            `json:"id"`
	DestinationHeader   string            `json:"destinationHeader,omitempty"`
	MetadataDestination string            `json:"metadataDestination,omitempty"`
	ClearRouteCache     bool              `json:"clearRouteCache,omitempty"`
	SetHeaders          map[string]string `json:"setHeaders,omitempty"`
	UpstreamBody        string            `json:"upstreamBody,omitempty"`
	Immediate           *Immediate        `json:"immediate,omitempty"`
	Served              string            `json:"served,omitempty"`
	Tried               []string          `json:"tried,omitempty"`
	Status              int               `json:"status,omitempty"`
	ResponseBody        string            `json:"responseBody,omitempty"`
	ResponseHeaders     map[string]string `json:"responseHeaders,omitempty"`
	DecisionMicros      float64           `json:"decisionMicros,omitempty"`
	Error               string            `json:"error,omitempty"`
}

var stdin = bufio.NewReader(os.Stdin)
var stdinMu sync.Mutex

func main() {
	if len(os.Args) == 3 && os.Args[1] == "floor-server" {
		floorServe(os.Args[2])
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "health" {
		health(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) != 3 || (os.Args[1] != "run" && os.Args[1] != "bench") {
		fmt.Fprintln(os.Stderr, "usage: epp-client run|bench <spec.json> | health <addr> <service> | floor-server <addr>")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		fatal(err)
	}
	var spec Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		fatal(fmt.Errorf("spec: %w", err))
	}
	conn, err := grpc.NewClient(spec.Addr, dialOptions()...)
	if err != nil {
		fatal(err)
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	if os.Args[1] == "bench" {
		clients := []extprocv3.ExternalProcessorClient{client}
		if len(spec.Targets) > 0 {
			clients = clients[:0]
			for _, addr := range spec.Targets {
				c, err := grpc.NewClient(addr, dialOptions()...)
				if err != nil {
					fatal(err)
				}
				defer c.Close()
				clients = append(clients, extprocv3.NewExternalProcessorClient(c))
			}
		}
		bench(clients, spec)
		return
	}
	conc := spec.Concurrency
	if conc < 1 {
		conc = 1
	}
	results := make([]Result, len(spec.Requests))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range spec.Requests {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = one(client, spec.Requests[i])
		}(i)
	}
	wg.Wait()
	enc := json.NewEncoder(os.Stdout)
	for _, r := range results {
		_ = enc.Encode(r)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "epp-client:", err)
	os.Exit(1)
}

func bodyMode(mode string) filterv3.ProcessingMode_BodySendMode {
	if mode == "buffered" {
		return filterv3.ProcessingMode_BUFFERED
	}
	return filterv3.ProcessingMode_FULL_DUPLEX_STREAMED
}

func headerMap(h map[string]string) *corev3.HeaderMap {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := &corev3.HeaderMap{}
	for _, k := range keys {
		// Envoy sends raw_value (bytes), lower-case names.
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(h[k])})
	}
	return out
}

func subsetMetadata(v *structpb.Value) (*corev3.Metadata, error) {
	if v == nil {
		return nil, nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.lb.subset_hint": {Fields: map[string]*structpb.Value{"x-gateway-destination-endpoint-subset": v}},
	}}, nil
}

// decision is what the request phase produced.
type decision struct {
	res       Result
	body      []byte // what goes upstream
	endpoints []string
	// marks: each message of the request phase, sent or received, in order (bench timeline).
	marks []mark
}

type mark struct {
	name string
	at   time.Time
}

func (d *decision) mark(name string) {
	d.marks = append(d.marks, mark{name, time.Now()})
}

// requestPhase sends headers and body as Envoy does and reads the EPP's answers until the
// request may leave (destination known, body complete) or an ImmediateResponse came.
func requestPhase(stream grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse], r Request) (*decision, error) {
	d := &decision{res: Result{ID: r.ID, SetHeaders: map[string]string{}}}
	path := r.Path
	if path == "" {
		path = "/v1/chat/completions"
	}
	h := map[string]string{":method": "POST", ":path": path, ":scheme": "http", ":authority": "gateway", "content-type": "application/json", "content-length": strconv.Itoa(len(r.Body))}
	for k, v := range r.Headers {
		h[k] = v
	}
	md, err := subsetMetadata(r.Subset)
	if err != nil {
		return nil, err
	}
	first := &extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: headerMap(h), EndOfStream: r.Body == ""}},
		MetadataContext: md,
	}
	if !r.NoProtocolConfig {
		first.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: bodyMode(r.Mode), ResponseBodyMode: bodyMode(r.Mode)}
	}
	if err := stream.Send(first); err != nil {
		return nil, err
	}
	d.mark("sent request_headers")
	body := []byte(r.Body)
	sendBody := func() error {
		if len(body) == 0 {
			return nil
		}
		if r.Mode == "buffered" {
			err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}})
			d.mark("sent request_body")
			return err
		}
		size := r.ChunkBytes
		if size <= 0 {
			size = 16 * 1024
		}
		for at := 0; at < len(body); at += size {
			end := min(at+size, len(body))
			if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body[at:end], EndOfStream: end == len(body)}}}); err != nil {
				return err
			}
			d.mark(fmt.Sprintf("sent request_body %d", at/size+1))
		}
		return nil
	}
	// Full duplex: the body follows the headers at once. Buffered: Envoy waits for the headers answer.
	if r.Mode != "buffered" {
		if err := sendBody(); err != nil {
			return nil, err
		}
	}
	var upstream bytes.Buffer
	haveDest := false
	bodyDone := len(body) == 0
	for !(haveDest && bodyDone) {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("waiting for the request answers: %w", err)
		}
		d.mark(fmt.Sprintf("got %T", resp.Response))
		readDestination(d, resp)
		switch v := resp.Response.(type) {
		case *extprocv3.ProcessingResponse_ImmediateResponse:
			im := v.ImmediateResponse
			d.res.Immediate = &Immediate{Status: int(im.GetStatus().GetCode()), Body: string(im.GetBody()), Headers: map[string]string{}}
			for _, o := range im.GetHeaders().GetSetHeaders() {
				d.res.Immediate.Headers[o.GetHeader().GetKey()] = headerVal(o.GetHeader())
			}
			return d, nil
		case *extprocv3.ProcessingResponse_RequestHeaders:
			common := v.RequestHeaders.GetResponse()
			applyCommon(d, common)
			if r.Mode == "buffered" && !haveDest {
				if err := sendBody(); err != nil {
					return nil, err
				}
			}
		case *extprocv3.ProcessingResponse_RequestBody:
			common := v.RequestBody.GetResponse()
			applyCommon(d, common)
			if m := common.GetBodyMutation(); m != nil {
				if sr := m.GetStreamedResponse(); sr != nil {
					upstream.Write(sr.GetBody())
					if sr.GetEndOfStream() {
						bodyDone = true
					}
				} else if m.GetBody() != nil {
					upstream.Write(m.GetBody())
					bodyDone = true
				}
			} else if r.Mode == "buffered" {
				upstream.Write(body)
				bodyDone = true
			}
		default:
			return nil, fmt.Errorf("unexpected answer %T in the request phase", v)
		}
		haveDest = d.res.DestinationHeader != "" || d.res.MetadataDestination != ""
		if r.Mode == "buffered" && len(body) > 0 && !bodyDone {
			haveDest = false // the destination rides on the body answer
		}
	}
	if r.Mode != "buffered" && len(body) > 0 && upstream.Len() == 0 {
		return nil, errors.New("full-duplex: the EPP did not send the body back")
	}
	if upstream.Len() > 0 {
		d.body = upstream.Bytes()
	} else {
		d.body = body
	}
	d.res.UpstreamBody = string(d.body)
	dest := d.res.DestinationHeader
	if dest == "" {
		dest = d.res.MetadataDestination
	}
	for _, e := range strings.Split(dest, ",") {
		if e = strings.TrimSpace(e); e != "" {
			d.endpoints = append(d.endpoints, e)
		}
	}
	return d, nil
}

func headerVal(h *corev3.HeaderValue) string {
	if len(h.GetRawValue()) > 0 {
		return string(h.GetRawValue())
	}
	return h.GetValue()
}

func applyCommon(d *decision, c *extprocv3.CommonResponse) {
	if c == nil {
		return
	}
	if c.GetClearRouteCache() {
		d.res.ClearRouteCache = true
	}
	for _, o := range c.GetHeaderMutation().GetSetHeaders() {
		k := o.GetHeader().GetKey()
		d.res.SetHeaders[k] = headerVal(o.GetHeader())
		if k == "x-gateway-destination-endpoint" {
			d.res.DestinationHeader = headerVal(o.GetHeader())
		}
	}
}

func readDestination(d *decision, resp *extprocv3.ProcessingResponse) {
	lb := resp.GetDynamicMetadata().GetFields()["envoy.lb"].GetStructValue()
	if v := lb.GetFields()["x-gateway-destination-endpoint"]; v != nil {
		d.res.MetadataDestination = v.GetStringValue()
	}
}

func one(client extprocv3.ExternalProcessorClient, r Request) Result {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Process(ctx)
	if err != nil {
		return Result{ID: r.ID, Error: err.Error()}
	}
	t0 := time.Now()
	d, err := requestPhase(stream, r)
	if err != nil {
		return Result{ID: r.ID, Error: err.Error()}
	}
	d.res.DecisionMicros = float64(time.Since(t0).Nanoseconds()) / 1000
	if d.res.Immediate != nil || !r.Forward {
		if r.Reset || !r.Forward {
			cancel()
		}
		return d.res
	}
	if r.Pause {
		b, _ := json.Marshal(map[string]any{"event": "decided", "id": r.ID, "endpoints": d.endpoints})
		fmt.Fprintln(os.Stderr, string(b))
		stdinMu.Lock()
		_, _ = stdin.ReadString('\n')
		stdinMu.Unlock()
	}
	if r.Reset {
		cancel()
		return d.res
	}
	if err := responsePhase(stream, r, d); err != nil {
		d.res.Error = err.Error()
	}
	return d.res
}

var httpClient = &http.Client{Transport: &http.Transport{
	DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	DisableKeepAlives: false,
}}

// responsePhase routes like Envoy's ORIGINAL_DST cluster with retries on connect failure, then
// passes the pod's response through the EPP.
func responsePhase(stream grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse], r Request, d *decision) error {
	var resp *http.Response
	path := r.Path
	if path == "" {
		path = "/v1/chat/completions"
	}
	for _, ep := range d.endpoints {
		d.res.Tried = append(d.res.Tried, ep)
		req, err := http.NewRequest("POST", "http://"+ep+path, bytes.NewReader(d.body))
		if err != nil {
			return err
		}
		req.Header.Set("content-type", "application/json")
		resp, err = httpClient.Do(req)
		if err == nil {
			d.res.Served = ep
			break
		}
	}
	if resp == nil {
		return errors.New("no endpoint of the list answered")
	}
	defer resp.Body.Close()
	d.res.Status = resp.StatusCode
	hs := map[string]string{":status": strconv.Itoa(resp.StatusCode)}
	for k, v := range resp.Header {
		hs[strings.ToLower(k)] = strings.Join(v, ",")
	}
	served := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.lb": {Fields: map[string]*structpb.Value{"x-gateway-destination-endpoint-served": structpb.NewStringValue(d.res.Served)}},
	}}
	if err := stream.Send(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(hs)}},
		MetadataContext: served,
	}); err != nil {
		return err
	}
	got, err := stream.Recv()
	if err != nil {
		return err
	}
	rh, ok := got.Response.(*extprocv3.ProcessingResponse_ResponseHeaders)
	if !ok {
		return fmt.Errorf("expected a response_headers answer, got %T", got.Response)
	}
	d.res.ResponseHeaders = map[string]string{}
	for _, o := range rh.ResponseHeaders.GetResponse().GetHeaderMutation().GetSetHeaders() {
		d.res.ResponseHeaders[o.GetHeader().GetKey()] = headerVal(o.GetHeader())
	}
	var client bytes.Buffer
	if r.Mode == "buffered" {
		all, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: all, EndOfStream: true}}}); err != nil {
			return err
		}
		got, err := stream.Recv()
		if err != nil {
			return err
		}
		rb, ok := got.Response.(*extprocv3.ProcessingResponse_ResponseBody)
		if !ok {
			return fmt.Errorf("expected a response_body answer, got %T", got.Response)
		}
		if m := rb.ResponseBody.GetResponse().GetBodyMutation(); m != nil && m.GetBody() != nil {
			client.Write(m.GetBody())
		} else {
			client.Write(all)
		}
	} else {
		// Full duplex: every chunk as it arrives; what the client gets is what the EPP sends back.
		buf := make([]byte, 32*1024)
		for {
			n, rerr := resp.Body.Read(buf)
			end := rerr == io.EOF
			if rerr != nil && !end {
				return rerr
			}
			if n > 0 || end {
				chunk := append([]byte(nil), buf[:n]...)
				if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: chunk, EndOfStream: end}}}); err != nil {
					return err
				}
				got, err := stream.Recv()
				if err != nil {
					return err
				}
				rb, ok := got.Response.(*extprocv3.ProcessingResponse_ResponseBody)
				if !ok {
					return fmt.Errorf("expected a response_body answer, got %T", got.Response)
				}
				sr := rb.ResponseBody.GetResponse().GetBodyMutation().GetStreamedResponse()
				if sr == nil {
					return errors.New("full-duplex: the EPP did not send the response chunk back")
				}
				client.Write(sr.GetBody())
			}
			if end {
				break
			}
		}
	}
	d.res.ResponseBody = client.String()
	// Envoy half-closes the stream when the response is over.
	if err := stream.CloseSend(); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("expected the EPP to end the stream, got %v", err)
	}
	return nil
}

// bench: Requests[0] repeated; decision latency = request headers sent → destination and the
// whole body back (what Envoy waits for before it can send the request upstream). Each stream
// then gets a 200 response with usage so the EPP's in-flight load does not pile up. With more
// than one target (spec.Targets, one connection each) stream i goes to target i mod n, so the
// servers are measured at the same moments of the machine; "targets" then has each one's results.
func bench(clients []extprocv3.ExternalProcessorClient, spec Spec) {
	if len(spec.Requests) == 0 {
		fatal(errors.New("bench needs one request"))
	}
	r := spec.Requests[0]
	conc := max(spec.Concurrency, 1)
	total := spec.Warmup + spec.Iterations
	type acc struct {
		lat []float64
		// Timeline: per message (by its place in the phase), its offsets from the headers' send, µs.
		names   []string
		offsets [][]float64
		errors  int
	}
	accs := make([]*acc, len(clients))
	for k := range accs {
		accs[k] = &acc{}
	}
	var mu sync.Mutex
	next := 0
	var firstErr string
	var wg sync.WaitGroup
	start := time.Now()
	var measuredStart time.Time
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				if i == spec.Warmup {
					measuredStart = time.Now()
				}
				mu.Unlock()
				if i >= total {
					return
				}
				t := i % len(clients)
				us, marks, err := benchOne(clients[t], r)
				mu.Lock()
				a := accs[t]
				if err != nil {
					a.errors++
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else if i >= spec.Warmup {
					a.lat = append(a.lat, us)
					if spec.Timeline {
						for k, m := range marks {
							if k >= len(a.names) {
								a.names = append(a.names, m.name)
								a.offsets = append(a.offsets, nil)
							}
							if a.names[k] == m.name {
								a.offsets[k] = append(a.offsets[k], float64(m.at.Sub(marks[0].at).Nanoseconds())/1000)
							}
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(measuredStart)
	if measuredStart.IsZero() {
		elapsed = time.Since(start)
	}
	quantile := func(xs []float64, p float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		return xs[max(0, min(len(xs)-1, int(float64(len(xs))*p+0.999999)-1))]
	}
	result := func(a *acc) map[string]any {
		sort.Float64s(a.lat)
		out := map[string]any{
			"iterations": len(a.lat), "errors": a.errors, "concurrency": conc, "mode": r.Mode,
			"bodyBytes": len(r.Body), "p50Us": quantile(a.lat, 0.5), "p90Us": quantile(a.lat, 0.9),
			"p99Us": quantile(a.lat, 0.99), "maxUs": quantile(a.lat, 1),
			"perSecond": float64(len(a.lat)) / elapsed.Seconds(),
		}
		if spec.Timeline {
			tl := make([]map[string]any, 0, len(a.names))
			for k, name := range a.names {
				o := a.offsets[k]
				sort.Float64s(o)
				tl = append(tl, map[string]any{"message": name, "streams": len(o), "p50Us": quantile(o, 0.5), "p90Us": quantile(o, 0.9), "p99Us": quantile(o, 0.99)})
			}
			out["timeline"] = tl
		}
		return out
	}
	out := result(accs[0])
	if len(clients) > 1 {
		targets := make([]map[string]any, len(clients))
		for k, a := range accs {
			targets[k] = result(a)
			targets[k]["addr"] = spec.Targets[k]
		}
		out["targets"] = targets
	}
	if firstErr != "" {
		out["firstError"] = firstErr
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func benchOne(client extprocv3.ExternalProcessorClient, r Request) (float64, []mark, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Process(ctx)
	if err != nil {
		return 0, nil, err
	}
	t0 := time.Now()
	d, err := requestPhase(stream, r)
	if err != nil {
		return 0, nil, err
	}
	us := float64(time.Since(t0).Nanoseconds()) / 1000
	// The timeline's origin: the headers' send started (t0), not when it returned.
	marks := append([]mark{{"start", t0}}, d.marks...)
	if d.res.Immediate != nil {
		return 0, nil, fmt.Errorf("immediate response %d: %s", d.res.Immediate.Status, d.res.Immediate.Body)
	}
	served := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"envoy.lb": {Fields: map[string]*structpb.Value{"x-gateway-destination-endpoint-served": structpb.NewStringValue(d.endpoints[0])}},
	}}
	if err := stream.Send(&extprocv3.ProcessingRequest{
		Request:         &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(map[string]string{":status": "200", "content-type": "application/json"})}},
		MetadataContext: served,
	}); err != nil {
		return 0, nil, err
	}
	if _, err := stream.Recv(); err != nil {
		return 0, nil, err
	}
	body := []byte(`{"choices":[],"usage":{"prompt_tokens":8000,"completion_tokens":1}}`)
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}}); err != nil {
		return 0, nil, err
	}
	if _, err := stream.Recv(); err != nil {
		return 0, nil, err
	}
	_ = stream.CloseSend()
	_, _ = stream.Recv()
	return us, marks, nil
}

func health(addr, service string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		fatal(err)
	}
	fmt.Println(r.GetStatus().String())
}

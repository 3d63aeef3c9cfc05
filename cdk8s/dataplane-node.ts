// The data plane's Node flags, in a module of their own (no cdk8s import) so that the benchmarks
// start the data plane with what the Deployment runs (hack/bench/proxy-bundle.ts
// benchGatewayNodeArgs) without loading the manifest code.

/**
 * Node flags of the data-plane container, before the bundle in its args (the image's entrypoint
 * is `node --enable-source-maps`): a young generation fixed at Node's own cap, 16 MB semi-spaces,
 * and no memory reducer (below).
 *
 * A proxied request allocates 30-50 KB that dies young, so the data plane's collections are
 * scavenges. V8 starts the young generation at 1 MB, grows it only as bytes survive scavenges
 * (the proxy's garbage dies young, so it grows slowly) and shrinks it again after a mark-compact
 * or an idle spell: 4-7 scavenges per 1,000 requests after a shrink, each a pause of 2-3 ms for the
 * requests in flight. Fixed at 16 MB (`--min-semi-space-size` equal to the cap): 2 per 1,000
 * requests throughout; stream GC pause per request 5.6 -> 3.6 µs, no major collections, RSS as
 * the defaults' (docs/proxy-cost.md "Young generation").
 *
 * Not 32 MB: it halved the scavenges again, but in quiet proxy-cost.ts stream runs (2026-12-03
 * 12:45-12:50, both orders) V8 then ran 6-8 mark-compacts per 12,000 streams where the defaults
 * ran none (longest pause 9-26 ms against 3-12), CPU per request moved -2 / +3 %, and RSS at
 * 5,000 streams rose ~45 MB.
 *
 * Flags, not NODE_OPTIONS: Node (20 and 24) refuses `--min-semi-space-size` there. The cluster
 * workers of `--workers N` inherit them (dataplane/cluster/primary.ts forks with this process's
 * execArgv). The scrape and tracing worker threads are made with both flags lifted
 * (workerWithOwnHeap, dataplane/worker-heap.ts): V8 would give their isolates the same
 * fixed young generation, over a worker's resourceLimits.
 */
export const DATAPLANE_NODE_ARGS: readonly string[] = [
  '--max-semi-space-size=16',
  '--min-semi-space-size=16',
  // Optimized code kept through idle spells. V8's memory reducer runs a full collection when the
  // process idles (first ~100 s after start, then every ~100 s of quiet); one that fell between
  // two bursts of load threw away the optimized code of 131-154 hot functions (handleInference,
  // serveChain, pick, Node's HTTP parser callbacks: "weak objects"), and the next 2,000 requests
  // ran at 729-839 µs of CPU each against 300-500 around them while V8 compiled them again. A
  // gateway between bursts of traffic is exactly that process. Without the reducer the idle heap
  // stays ~18 MB larger (committed 79 against 61 MB); docs/proxy-cost.md "Warm-up: the first
  // windows" has the runs.
  '--no-memory-reducer',
]

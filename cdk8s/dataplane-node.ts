// The data plane's Node flags, in a module of their own (no cdk8s import) so that the benchmarks
// start the data plane with what the Deployment runs (hack/bench/proxy-bundle.ts
// benchGatewayNodeArgs) without loading the manifest code.

/**
 * Node flags of the data-plane container, before the bundle in its args (the image's entrypoint
 * is `node --enable-source-maps`): a young generation fixed at 32 MB semi-spaces.
 *
 * A proxied request allocates 30-50 KB that dies young, so the data plane's collections are
 * scavenges: about 2 per 1,000 requests (3 per 1,000 streams) with Node 20's 16 MB semi-spaces,
 * each a pause of 2-3 ms for the requests in flight, and more once V8 has shrunk the young
 * generation after a mark-compact or an idle spell. 32 MB fixed halves the scavenges; a pause got
 * somewhat longer, the pause time per request fell in most runs, RSS under load rose 30-50 MB,
 * CPU per request: non-stream unchanged, streams +2-9 % on a busy machine (docs/proxy-cost.md,
 * "Young generation"; to be confirmed on a quiet one).
 *
 * Both bounds: `--max-semi-space-size` alone raises only the cap, and V8 grows the young
 * generation toward it only once as many bytes have survived scavenges as it holds; the proxy's
 * garbage dies young (100-300 KB survive a scavenge), so it reached 32 MB only after ~80 s of
 * 500 req/s, and a mark-compact shrank it again. `--min-semi-space-size` starts it at 32 MB and
 * keeps it there (V8 clamps the minimum to the maximum: alone it gives the default 16 MB).
 *
 * Flags, not NODE_OPTIONS: Node (20 and 24) refuses `--min-semi-space-size` there. The cluster
 * workers of `--workers N` inherit them (dataplane/cluster/primary.ts forks with this process's
 * execArgv). The scrape and tracing worker threads are made with both flags lifted
 * (liftSemiSpaceFlags, dataplane/engines/scrape-thread.ts): V8 would give their isolates the same
 * fixed young generation, over a worker's resourceLimits.
 */
export const DATAPLANE_NODE_ARGS: readonly string[] = [
  '--max-semi-space-size=32',
  '--min-semi-space-size=32',
]

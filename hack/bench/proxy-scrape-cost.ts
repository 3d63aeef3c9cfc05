// `npx tsx hack/bench/proxy-scrape-cost.ts`: how long one engine scrape's parse holds the data
// plane's event loop (issue 11's tail: periodic work that blocks the loop for ≥ 0.3 ms delays every
// request that arrives meanwhile). Starts one `infer-gateway sim --zero-latency` engine, drives it
// with chat requests so that its counters move between scrapes (an engine under load: every
// exposition differs and is parsed; an idle engine's repeat is skipped), collects `--bodies`
// expositions and times `EngineMetricsTracker.ingestText` on each in turn (a fresh tracker per
// pass, the bodies in order, as a scraper sees them), `--passes` times. Prints per-call p50 / p90 /
// p99 / max in µs and the exposition's size. Run it from a bundle-free tsx: the parse is ours.
//
//   nice -n -15 npx tsx hack/bench/proxy-scrape-cost.ts --bodies 200 --passes 20
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { EngineMetricsTracker } from '../../dataplane/engines/tracker.js'
import { positiveArg } from './cli-args.js'
import { startZeroLatencySim } from './procs.js'
import { benchChatBody } from './proxy-bundle.js'

const { values: opts } = parseArgs({
  options: {
    bodies: { type: 'string', default: '200' },
    passes: { type: 'string', default: '20' },
  },
})
const nBodies = positiveArg('bodies', opts.bodies ?? '200')
const passes = positiveArg('passes', opts.passes ?? '20')
const HOST = '127.0.0.7'
const PORT = 18150
const MODEL = 'bench-model'

const sim = await startZeroLatencySim(HOST, PORT, MODEL)
try {
  const origin = `http://${HOST}:${PORT}`
  const bodies: string[] = []
  const chat = benchChatBody(MODEL, false)
  for (let i = 0; i < nBodies; i++) {
    // A few requests between scrapes, as 500 req/s does between 200 ms scrapes (fewer: the parse,
    // not the counters' values, is measured).
    for (let k = 0; k < 3; k++) {
      const r = await request(`${origin}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: chat,
      })
      await r.body.dump()
    }
    const m = await request(`${origin}/metrics`)
    bodies.push(await m.body.text())
  }
  const distinct = new Set(bodies).size
  const us: number[] = []
  for (let p = 0; p < passes; p++) {
    const t = new EngineMetricsTracker('vLLM')
    for (const b of bodies) {
      const t0 = process.hrtime.bigint()
      t.ingestText(b)
      us.push(Number(process.hrtime.bigint() - t0) / 1000)
    }
  }
  // The first pass tiers the parser up; a running data plane has done that long before.
  const warm = us.slice(bodies.length).sort((a, b) => a - b)
  const q = (f: number) =>
    warm[Math.min(warm.length - 1, Math.floor(f * warm.length))] ?? Number.NaN
  const size = Math.round(bodies.reduce((s, b) => s + b.length, 0) / bodies.length)
  process.stdout.write(
    `exposition ${size} bytes (${distinct} distinct of ${bodies.length}); ingestText µs per call ` +
      `(${warm.length} calls after a warm pass): p50 ${q(0.5).toFixed(0)} p90 ${q(0.9).toFixed(0)} ` +
      `p99 ${q(0.99).toFixed(0)} max ${q(1).toFixed(0)}\n`,
  )
} finally {
  await sim.stop()
}

// `tsx hack/bench/decision-gap.ts` (issue 9): one scheduling decision in-process (4 endpoints with
// engine metrics, the default profile, the routing bench's 1,500-token shared system prompts +
// 60-token questions), timed back to back and with time between decisions, as a data plane at
// a few requests per second has. What the gap does to the same code on the same data tells cold
// caches (the rest of the machine runs meanwhile) from the decision's own cost.
//
//   tsx hack/bench/decision-gap.ts [--warm 3000] [--gap-ms 0] [--spin] [--decisions 300]
// --warm: decisions before the timed ones (0 = a cold process); --spin: wait by spinning on the
// clock instead of sleeping (the thread keeps its core unless the kernel takes it away).
import { parseArgs } from 'node:util'
import type { PickContext } from '../../dataplane/picker.js'
import { Scheduler } from '../../dataplane/scheduler/index.js'
import { metrics, server, snapshot } from '../../dataplane/scheduler/testkit.js'
import { createRng } from '../sim/rng.js'
import { summary } from './decision-report.js'
import { words } from './words.js'

const { values: opts } = parseArgs({
  options: {
    warm: { type: 'string', default: '3000' },
    'gap-ms': { type: 'string', default: '0' },
    spin: { type: 'boolean', default: false },
    decisions: { type: 'string', default: '300' },
  },
})
const GAP_MS = Number(opts['gap-ms'])

const sched = new Scheduler({ scrape: { external: true } })
const eps = [0, 1, 2, 3].map((i) => ({
  name: `pod-${i}`,
  address: `127.0.0.${101 + i}`,
  port: 8000,
  ready: true,
  labels: {},
}))
const srv = server(eps, { attempts: 3 })
sched.onSnapshot(snapshot([srv]))
const systems = Array.from(
  { length: 16 },
  (_, g) => `Group ${g} policy. ${words(1500, createRng(100 + g))}`,
)
const r = createRng(10)
let q = 0
function ctxFor(): PickContext {
  q++
  // Through JSON, as the proxy parses a client's body.
  const body = JSON.parse(
    JSON.stringify({
      model: 'bench-llm',
      messages: [
        { role: 'system', content: systems[Math.floor(r() * 16)] },
        { role: 'user', content: words(60, r) },
      ],
      max_tokens: 16,
      stream: true,
    }),
  ) as Record<string, unknown>
  return {
    requestId: `r${q}`,
    model: 'bench-llm',
    isLora: false,
    server: srv,
    body,
    header: () => undefined,
  }
}
const ok = {
  status: 200,
  durationMs: 300,
  firstByteMs: 30,
  promptTokens: 1560,
  completionTokens: 16,
}

function scrape(i: number): void {
  for (const [k, e] of eps.entries()) {
    const id = `${e.address}:${e.port}`
    sched.scrapeStarted(id)
    sched.ingestScrape(id, {
      ok: true,
      durationMs: 1,
      metrics: metrics({
        running: (i + k) % 8,
        kvCacheUsage: 0.3,
        numGpuBlocks: 1024,
        blockSize: 16,
      }),
    })
  }
}

function decide(): number {
  const ctx = ctxFor()
  const t0 = performance.now()
  const [t] = sched.pick(ctx)
  const us = (performance.now() - t0) * 1000
  if (t !== undefined) {
    sched.onDispatch(ctx, t)
    sched.onComplete(ctx, t, ok)
  }
  return us
}

async function main(): Promise<void> {
  scrape(0)
  for (let i = 0; i < Number(opts.warm); i++) decide()
  const xs: number[] = []
  let spun = 0
  for (let i = 0; i < Number(opts.decisions); i++) {
    if (GAP_MS > 0 && opts.spin) {
      const end = performance.now() + GAP_MS
      while (performance.now() < end) spun++
    } else if (GAP_MS > 0) await new Promise((res) => setTimeout(res, GAP_MS))
    if (i % 10 === 0) scrape(i)
    xs.push(decide())
  }
  process.stdout.write(
    `warm ${opts.warm}, gap ${GAP_MS} ms ${opts.spin ? `spinning (${spun} turns)` : 'sleeping'}: first 5 ${xs
      .slice(0, 5)
      .map((x) => x.toFixed(0))
      .join(' ')} µs; ${summary(xs)} µs\n`,
  )
  await sched.close()
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})

// `npm run hardening:fuzz [-- --count 100000 --seed N --concurrency 32]`: the long form of the CI
// fuzz test. Same bodies (fuzz-bodies.ts; case i of seed s is always the same bytes), a real
// gateway process in front of simulated engines, and the gateway's RSS sampled throughout. Memory
// is judged after forced full GCs (through the gateway's inspector) at start and end: raw RSS is a
// sawtooth of uncollected garbage from large bodies, not what the gateway holds (report.ts).
// Writes the result into docs/benchmarks.md (hardening section) unless --no-write.
import { availableParallelism, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { runFuzz } from './fuzz-run.js'
import {
  chatBody,
  cpuSeconds,
  gatewayMemory,
  metric,
  rssBytes,
  runLoad,
  settledInflight,
  sleep,
} from './kit.js'
import { mb, type RunRecord, writeHardening } from './report.js'
import { STACK_MODEL, startStack } from './stack.js'

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '20261201' },
    concurrency: { type: 'string', default: '32' },
    from: { type: 'string', default: '0' },
    'max-string-bytes': { type: 'string', default: String(1024 * 1024) },
    'no-write': { type: 'boolean', default: false },
  },
  strict: true,
})

const count = Number(values.count)
const seed = Number(values.seed)
const concurrency = Number(values.concurrency)
const from = Number(values.from)
const command = `npm run hardening:fuzz -- --count ${count} --seed ${seed} --concurrency ${concurrency}${from > 0 ? ` --from ${from}` : ''}`

const cpuOf = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1e6
const fmt1 = (x: number): string => x.toFixed(1)

// Well-behaved engines: a long upstream timeout, so a 504 can only mean a stuck request path (on a
// busy machine a 2 s header timeout would count the load generator's own slowness).
const stack = await startStack({
  net: '127.0.20',
  engines: 2,
  upstreamTimeout: '30s',
  inspect: true,
})
const { gw } = stack
const inspector = gw.inspectorUrl as string
try {
  // Warm up (JIT, pools, scrapes) so the starting RSS is the gateway at work, not at rest.
  let n = 0
  await runLoad({
    url: gw.url,
    concurrency: 8,
    next: (i) =>
      i < 500 ? { path: '/v1/chat/completions', body: chatBody(STACK_MODEL, n++) } : undefined,
  })
  // And the fuzz's own paths (error answers, large bodies) from another seed, so code compiled
  // and pools grown on first use are in the baseline, not counted as growth.
  await runFuzz({ url: gw.url, model: STACK_MODEL, seed: seed + 1, count: 1000, concurrency })
  const memStart = await gatewayMemory(inspector, { gc: true })
  const rssStart = await rssBytes(gw.pid)
  const cpuStart = await cpuSeconds(gw.pid)
  const ownCpuStart = process.cpuUsage()
  let rssMax = rssStart
  let running = true
  const sampler = (async () => {
    while (running) {
      rssMax = Math.max(rssMax, await rssBytes(gw.pid).catch(() => 0))
      await sleep(1000)
    }
  })()
  const started = Date.now()
  const chunk = 10_000
  const total = {
    sent: 0,
    gateway5xx: 0,
    engine5xx: 0,
    transportErrors: 0,
    unshaped: 0,
    byStatus: {} as Record<number, number>,
    samples: [] as string[],
  }
  for (let at = 0; at < count; at += chunk) {
    const r = await runFuzz({
      url: gw.url,
      model: STACK_MODEL,
      seed,
      count: Math.min(chunk, count - at),
      from: from + at,
      concurrency,
      maxStringBytes: Number(values['max-string-bytes']),
    })
    total.sent += r.sent
    total.gateway5xx += r.gateway5xx
    total.engine5xx += r.engine5xx
    total.transportErrors += r.transportErrors
    total.unshaped += r.unshaped
    for (const [k, v] of Object.entries(r.byStatus))
      total.byStatus[Number(k)] = (total.byStatus[Number(k)] ?? 0) + v
    total.samples.push(...r.samples.slice(0, Math.max(0, 20 - total.samples.length)))
    // The trend of what the gateway holds (after a forced GC) beside raw RSS: a leak climbs here.
    const rssNow = await rssBytes(gw.pid)
    const held = await gatewayMemory(inspector, { gc: true })
    process.stdout.write(
      `${total.sent}/${count} in ${Math.round((Date.now() - started) / 1000)} s: gateway 5xx ${total.gateway5xx}, no answer ${total.transportErrors}, RSS ${mb(rssNow)} MB; after GC: RSS ${mb(held.rss)} MB, heap used ${mb(held.heapUsed)} MB\n`,
    )
  }
  running = false
  await sampler
  const inflight = await settledInflight(gw.url, 5000)
  const rssEnd = await rssBytes(gw.pid)
  const memEnd = await gatewayMemory(inspector, { gc: true })
  const afterGc = {
    rssStartMB: mb(memStart.rss),
    rssEndMB: mb(memEnd.rss),
    heapUsedStartMB: mb(memStart.heapUsed),
    heapUsedEndMB: mb(memEnd.heapUsed),
  }
  const requestsMetric = await metric(gw.url, 'infer_gateway_requests_total').catch(
    () => Number.NaN,
  )
  // What the gateway still holds: RSS and V8 heap in use after a full GC (a leak grows the heap).
  const rssGrowth = memEnd.rss / memStart.rss - 1
  const heapGrowth = memEnd.heapUsed / memStart.heapUsed - 1
  const pass =
    total.gateway5xx === 0 &&
    total.transportErrors === 0 &&
    total.unshaped === 0 &&
    inflight === 0 &&
    rssGrowth < 0.1 &&
    heapGrowth < 0.1 &&
    !gw.exited()
  const record: RunRecord = {
    command,
    date: new Date().toISOString().slice(0, 10),
    node: process.version,
    seconds: Math.round((Date.now() - started) / 1000),
    requests: total.sent,
    byStatus: total.byStatus,
    gateway5xx: total.gateway5xx,
    engine5xx: total.engine5xx,
    transportErrors: total.transportErrors,
    unshaped: total.unshaped,
    inflightAtEnd: inflight,
    rssStartMB: mb(rssStart),
    rssEndMB: mb(rssEnd),
    rssMaxMB: mb(rssMax),
    afterGc,
    gatewayCpuSeconds: Math.round(((await cpuSeconds(gw.pid)) - cpuStart) * 10) / 10,
    notes: [
      `seed ${seed}, cases ${from}–${from + count - 1}, ${concurrency} concurrent; 2 zero-latency simulated engines; the gateway counted ${requestsMetric} requests in \`infer_gateway_requests_total\` (warm-up included).`,
      `after a full GC: RSS ${afterGc.rssStartMB} → ${afterGc.rssEndMB} MB (${(rssGrowth * 100).toFixed(1)} %), V8 heap used ${afterGc.heapUsedStartMB} → ${afterGc.heapUsedEndMB} MB (${(heapGrowth * 100).toFixed(1)} %), V8 heap reserved ${mb(memStart.heapTotal)} → ${mb(memEnd.heapTotal)} MB; raw RSS (not judged) ${mb(rssStart)} → ${mb(rssEnd)} MB, max ${mb(rssMax)}.`,
      `load generator and engines (this process): ${fmt1(cpuOf(process.cpuUsage(ownCpuStart)))} CPU s.`,
      `machine load average (1 min) at the end: ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} cores (other work shares the machine)`,
      'Reproduce one case: `fuzzCase(seed, index, { model: "chat" })` from `hack/hardening/fuzz-bodies.ts`.',
    ],
    samples: total.samples,
    pass,
  }
  process.stdout.write(`${JSON.stringify(record, null, 2)}\n`)
  if (!values['no-write']) process.stdout.write(`wrote ${await writeHardening('fuzz', record)}\n`)
  if (!pass) process.exitCode = 1
} finally {
  await stack.stop()
}

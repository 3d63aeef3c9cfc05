// `npm run hardening:soak -- --minutes 30`: the long form of the hardening suite. For the whole
// run, a real gateway process gets at once: steady valid traffic (a quarter streamed), a trickle
// of fuzzed bodies, waves of idle and slow-header connections against its client timeouts, and
// its config file rewritten truncate-then-write, each rewrite a real change (an unrouted pool's
// endpoint renamed). With --with-bad-engine, one engine also cycles
// through the misbehaving modes (its 502/504s are then expected and reported apart).
// Pass: no gateway-made 5xx (without the bad engine), every request answered, in-flight 0 at the
// end, memory growth < 10 % after a full GC (RSS and V8 heap used, read through the gateway's
// inspector; raw RSS is reported beside) from a baseline taken after --warmup-minutes of the full
// mix (what every path allocates on first use is not growth), and with --with-bad-engine, the bad engine gets < 2 % of
// the dispatches from 2 s after each misbehaving period starts (it was in rotation before). Writes the hardening section of docs/benchmarks.md unless --no-write.
import { mkdir, open } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { MAX_BYTES } from '../../dataplane/scheduler/prompt-hasher.js'
import type { BadMode } from './bad-engine.js'
import { fuzzCase } from './fuzz-bodies.js'
import {
  chatBody,
  cpuSeconds,
  type GatewayMemory,
  gatewayMemory,
  type HeapSnapshotter,
  heapSnapshotter,
  type LoadResult,
  metric,
  percentile,
  rssBytes,
  runLoad,
  settledInflight,
  sleep,
  sleepUnlessAborted,
} from './kit.js'
import { promptCacheFillBodies } from './prompt-cache-fill.js'
import { mb, type RunRecord, writeHardening } from './report.js'
import { STACK_MODEL, startStack } from './stack.js'

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    // The memory baseline is taken after this much of the full mix (one cycle of the bad engine's
    // six modes is 3 minutes): what a first pass over every code path allocates once (compiled
    // code, object shapes, lazily loaded modules, the Node error classes) is not growth.
    'warmup-minutes': { type: 'string', default: '3' },
    seed: { type: 'string', default: '7' },
    'with-bad-engine': { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    // Leave the gateway's prompt-piece cache to fill with the traffic instead of filling it to
    // its cap before the baseline (see prompt-cache-fill.ts): diagnosis only.
    'no-prompt-cache-fill': { type: 'boolean', default: false },
    // Diagnosis: heap snapshots of the gateway (after a full GC) at these minutes of the run, and
    // one at its start, into --snapshot-dir; compare two with hack/hardening/heap-diff.ts.
    'heap-snapshots': { type: 'string', default: '' },
    'snapshot-dir': { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
})
if (values.help) {
  process.stdout.write(`Usage: npm run hardening:soak -- [--minutes 30] [--seed 7] [--with-bad-engine] [--no-write]
       [--warmup-minutes 3] [--no-prompt-cache-fill] [--heap-snapshots 2,6,12 --snapshot-dir DIR]

Runs a real gateway under valid, fuzzed, idle and slow traffic with config rewrites (and with
--with-bad-engine, one engine cycling through misbehaving modes) and judges errors and memory after a
full GC from a baseline read after --warmup-minutes of the full mix. --no-write prints the result only (docs/benchmarks.md untouched). --heap-snapshots writes
heap snapshots of the gateway at start and at the given minutes (diagnosis; each pauses it ~1-3 s).
Before the baseline, the gateway's cache of hashed long prompt pieces is filled to its cap (a
bounded cache the mix alone fills over hours); --no-prompt-cache-fill leaves it to the traffic.
`)
  process.exit(0)
}
const minutes = Number(values.minutes)
const warmupMinutes = Number(values['warmup-minutes'])
const snapshotAt = values['heap-snapshots']
  .split(',')
  .filter((x) => x.trim() !== '')
  .map(Number)
const snapshotDir = values['snapshot-dir']
if (snapshotAt.length > 0 && snapshotDir === '') {
  process.stderr.write('--heap-snapshots needs --snapshot-dir\n')
  process.exit(2)
}
const seed = Number(values.seed)
const withBad = values['with-bad-engine']
const fillPromptCache = !values['no-prompt-cache-fill']
const command = `npm run hardening:soak -- --minutes ${minutes}${warmupMinutes !== 3 ? ` --warmup-minutes ${warmupMinutes}` : ''}${withBad ? ' --with-bad-engine' : ''}${fillPromptCache ? '' : ' --no-prompt-cache-fill'}`
const RELOADS = 'infer_gateway_config_reloads_total'
const PROMPT_CACHE = 'infer_gateway_prompt_cache_bytes'
const LIMITS = [
  '--headers-timeout',
  '2000',
  '--request-timeout',
  '5000',
  '--keep-alive-timeout',
  '2000',
]

/** One misbehaving period of the bad engine (--with-bad-engine). */
interface BadPeriod {
  readonly mode: BadMode
  /** Its share of all dispatches in the 2 s before it turned bad (> 0: it was in rotation). */
  readonly warmShare: number
  /** Dispatches it got in the first 2 s (these may fail: the gateway learns from them). */
  readonly firstTwoSeconds: number
  /** Its share of all dispatches from 2 s after it turned bad to the end of the period. */
  readonly lateShare: number
  readonly lateDispatches: number
}
/** Issue 10: a misbehaving engine gets < 2 % of traffic 2 s after it starts misbehaving. */
const MAX_BAD_SHARE = 0.02
/** The modes the target names (hang, cut, garbage) and the body-size ones the suite adds. */
const JUDGED: readonly BadMode[] = ['hang', 'cut', 'garbage', 'endless', 'sse-no-newlines']
const share = (part: number, all: number): number => (all > 0 ? part / all : Number.NaN)
const pctOf = (x: number): string => `${(x * 100).toFixed(2)} %`

const stack = await startStack({
  net: '127.0.21',
  engines: 3,
  badEngines: withBad ? 1 : 0,
  // Well-behaved engines get a long header timeout (a 504 then means a stuck request path, not a
  // busy machine); with the bad engine, 2 s so a hang is noticed.
  upstreamTimeout: withBad ? '2s' : '30s',
  // With the bad engine, an 8 MiB upstream body cap as in the CI suite (misbehaving-engines):
  // every byte of an endless body is written by the bad engine and read by the load client, both
  // in this process with the simulated engines; at the default 64 MiB the few endless bodies
  // before the ejection starved them (73 dispatches in the judged 8 s instead of ~1,000-2,500),
  // which measured the harness, not the gateway. The cap's path (hold, pass through, cut) is the same.
  gatewayArgs: [
    ...LIMITS,
    '--poll-interval',
    '200',
    ...(withBad ? ['--max-upstream-body-bytes', String(8 * 1024 * 1024)] : []),
  ],
  inspect: true,
})
const { gw } = stack
const inspector = gw.inspectorUrl as string
const log = (s: string): void => {
  process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`)
}

try {
  let n = 0
  await runLoad({
    url: gw.url,
    concurrency: 8,
    next: (i) =>
      i < 500 ? { path: '/v1/chat/completions', body: chatBody(STACK_MODEL, n++) } : undefined,
  })
  const snapshotter = snapshotAt.length > 0 ? await heapSnapshotter(inspector) : undefined
  const memory = (): Promise<GatewayMemory> =>
    snapshotter !== undefined
      ? snapshotter.memory({ gc: true })
      : gatewayMemory(inspector, { gc: true })
  // Heap after 500 valid requests only: reported beside the judged baseline (after the warm-up).
  const memCold = await memory()
  // The prompt-piece cache filled to its cap before anything is judged (prompt-cache-fill.ts).
  let fillRequests = 0
  if (fillPromptCache) {
    const bodies = promptCacheFillBodies(STACK_MODEL)
    fillRequests = bodies.length
    await runLoad({
      url: gw.url,
      concurrency: 4,
      next: (i) => {
        const body = bodies[i]
        return body === undefined ? undefined : { path: '/v1/chat/completions', body }
      },
    })
  }
  const promptCache = (): Promise<number> => metric(gw.url, PROMPT_CACHE)
  const promptCacheCold = await promptCache()
  log(
    `prompt-piece cache: ${mb(promptCacheCold)} MB counted${fillPromptCache ? ` after ${fillRequests} fill requests` : ''}`,
  )
  let memStart = fillPromptCache && warmupMinutes <= 0 ? await memory() : memCold
  let promptCacheStart = promptCacheCold
  let rssStart = await rssBytes(gw.pid)
  const cpuStart = await cpuSeconds(gw.pid)
  let rssMax = rssStart
  const started = Date.now()
  const warmEnd = started + warmupMinutes * 60_000
  let warmedUp = warmupMinutes <= 0
  const end = warmEnd + minutes * 60_000
  const ac = new AbortController()
  const stopAt = setTimeout(() => ac.abort(), end - Date.now())
  // Set while the load is held for a quiet moment (the memory baseline after the warm-up is read
  // with nothing in flight, as the end figure is).
  let quiet: Promise<void> | undefined
  const gate = (): Promise<void> | undefined => quiet

  const valid = runLoad({
    url: gw.url,
    concurrency: 8,
    signal: ac.signal,
    timeoutMs: 15_000,
    next: (i) => ({
      path: '/v1/chat/completions',
      body: chatBody(STACK_MODEL, n++, i % 4 === 0 ? { stream: true } : {}),
    }),
    label: (i) => `valid ${i}`,
    gate,
    context: () => `bad engine ${stack.bad[0]?.mode() ?? 'none'}`,
  })
  const fuzz = runLoad({
    url: gw.url,
    concurrency: 2,
    signal: ac.signal,
    timeoutMs: 15_000,
    next: (i) => {
      const c = fuzzCase(seed, i, { model: STACK_MODEL, maxStringBytes: 64 * 1024 })
      return { path: c.path, body: c.body }
    },
    label: (i) => `fuzz case ${i} (seed ${seed})`,
    gate,
  })

  // Waves of idle and slowloris connections every 5 s; the gateway must close them itself.
  const sockets = { opened: 0, closedByGateway: 0 }
  const waves = (async () => {
    while (!ac.signal.aborted) {
      if (quiet !== undefined) await quiet
      const wave: Promise<void>[] = []
      for (let i = 0; i < 55; i++) {
        const s: Socket = connect({ host: gw.host, port: gw.port })
        sockets.opened++
        s.on('error', () => {})
        // Read what the gateway says (its 408, then its FIN): a socket nobody reads never sees the
        // end of the stream, so it would never 'close' however promptly the gateway closed it.
        s.resume()
        let trickle: NodeJS.Timeout | undefined
        if (i >= 50) {
          s.once('connect', () => {
            s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ')
            trickle = setInterval(() => s.writable && s.write('a'), 300)
          })
        }
        wave.push(
          new Promise<void>((r) => {
            // Not closed by the gateway within 15 s: we close it (and it counts as not closed).
            let gaveUp = false
            const giveUp = setTimeout(() => {
              gaveUp = true
              s.destroy()
            }, 15_000)
            s.once('close', () => {
              clearTimeout(giveUp)
              if (!gaveUp) sockets.closedByGateway++
              if (trickle) clearInterval(trickle)
              r()
            })
          }),
        )
      }
      await sleepUnlessAborted(5000, ac.signal)
      await Promise.all(wave)
    }
  })()

  // Config rewrites, truncate-then-write, every 10 s. Each one is a real change: an unrouted pool
  // whose endpoint gets a new name every time (what a reload leaves behind would show as growth:
  // old snapshots, metric children of endpoints gone, their scrapers and pools).
  let rewrites = 0
  const rewriter = (async () => {
    while (!ac.signal.aborted) {
      await sleep(10_000)
      const f = await open(stack.configFile, 'w')
      await sleep(50)
      await f.write(stack.configWithSpare(rewrites))
      await f.close()
      rewrites++
    }
  })()

  // The bad engine's cycle (optional): 20 s good, 10 s misbehaving. Each period measures issue
  // 10's target: the share of dispatches (all engines, retries included) the bad engine still
  // receives from 2 s after it turned bad to the end of the period; and its share in the 2 s
  // before, to show it was in use (an engine still ejected from the last period proves nothing).
  const modes: BadMode[] = ['hang', 'cut', 'garbage', 'endless', 'sse-no-newlines', 'error-500']
  let switches = 0
  const periods: BadPeriod[] = []
  const dispatches = (): number =>
    stack.fleet.sims.reduce((a, e) => a + e.stats().requests, 0) +
    stack.bad.reduce((a, e) => a + e.stats().requests, 0)
  const cycler = (async () => {
    const bad = stack.bad[0]
    if (bad === undefined) return
    while (!ac.signal.aborted) {
      await sleep(18_000)
      // Held load: the share before the period would be measured on nothing.
      if (quiet !== undefined) await quiet
      const warm = { bad: bad.stats().requests, all: dispatches() }
      await sleep(2000)
      if (ac.signal.aborted) break
      const m = modes[switches % modes.length] as BadMode
      const start = { bad: bad.stats().requests, all: dispatches() }
      bad.setMode(m)
      switches++
      await sleep(2000)
      const late = { bad: bad.stats().requests, all: dispatches() }
      await sleep(8000)
      const end = { bad: bad.stats().requests, all: dispatches() }
      bad.setMode('ok')
      // Cut short by the end of the run (the load stopped): not a measurement.
      if (ac.signal.aborted) break
      const p: BadPeriod = {
        mode: m,
        warmShare: share(start.bad - warm.bad, start.all - warm.all),
        firstTwoSeconds: start.bad === late.bad ? 0 : late.bad - start.bad,
        lateShare: share(end.bad - late.bad, end.all - late.all),
        lateDispatches: end.all - late.all,
      }
      periods.push(p)
      log(
        `bad engine ${m}: share before ${pctOf(p.warmShare)}, ${p.firstTwoSeconds} dispatches in its first 2 s, share from 2 s on ${pctOf(p.lateShare)} of ${p.lateDispatches}`,
      )
    }
  })()

  const snapshot = async (label: string): Promise<void> => {
    const file = join(snapshotDir, `gateway-${label}.heapsnapshot`)
    const bytes = await (snapshotter as HeapSnapshotter).take(file)
    log(`heap snapshot ${file} (${mb(bytes)} MB)`)
  }
  if (snapshotAt.length > 0) {
    await mkdir(snapshotDir, { recursive: true })
    await snapshot('0m')
  }
  const snapshotsLeft = [...snapshotAt].sort((a, b) => a - b)
  let tick = 0
  while (!ac.signal.aborted) {
    await sleepUnlessAborted(10_000, ac.signal)
    if (ac.signal.aborted) break
    const rss = await rssBytes(gw.pid)
    rssMax = Math.max(rssMax, rss)
    // Once a minute, the heap after a full GC: its curve tells caches filling (rising, then flat)
    // from a leak (rising with requests all along).
    const heap = ++tick % 6 === 0 ? await memory() : undefined
    const cached = heap !== undefined ? await promptCache() : undefined
    if (!warmedUp && Date.now() >= warmEnd) {
      warmedUp = true
      let release = (): void => {}
      quiet = new Promise((r) => {
        release = r
      })
      // Nothing in flight and the last wave of idle connections closed, as at the end.
      const held = Date.now()
      await settledInflight(gw.url, 15_000)
      while (sockets.closedByGateway < sockets.opened && Date.now() - held < 20_000)
        await sleep(200)
      memStart = await memory()
      rssStart = await rssBytes(gw.pid)
      promptCacheStart = await promptCache()
      release()
      quiet = undefined
      log(
        `warm-up done: load held ${((Date.now() - held) / 1000).toFixed(1)} s for the baseline: heap used after GC ${mb(memStart.heapUsed)} MB, RSS ${mb(memStart.rss)} MB`,
      )
    }
    log(
      `${Math.round((Date.now() - started) / 1000)} s: RSS ${mb(rss)} MB${heap !== undefined ? `, heap used after GC ${mb(heap.heapUsed)} MB (prompt-piece cache ${mb(cached ?? 0)} MB counted)` : ''}, sockets ${sockets.opened} opened / ${sockets.closedByGateway} closed by the gateway, rewrites ${rewrites}`,
    )
    const due = snapshotsLeft[0]
    if (due !== undefined && Date.now() - started >= due * 60_000) {
      snapshotsLeft.shift()
      await snapshot(`${due}m`)
    }
  }
  clearTimeout(stopAt)
  const [v, f] = await Promise.all([valid, fuzz])
  await Promise.all([waves, rewriter, cycler])
  const inflight = await settledInflight(gw.url, 10_000)
  const reloads = {
    success: await metric(gw.url, RELOADS, { result: 'success' }),
    failure: await metric(gw.url, RELOADS, { result: 'failure' }),
  }
  const rssEnd = await rssBytes(gw.pid)
  const memEnd = await memory()
  const promptCacheEnd = await promptCache()
  snapshotter?.close()
  const byStatus: Record<number, number> = {}
  for (const r of [v, f])
    for (const [k, c] of Object.entries(r.byStatus))
      byStatus[Number(k)] = (byStatus[Number(k)] ?? 0) + c
  const sum = (g: (r: LoadResult) => number) => g(v) + g(f)
  // What the gateway holds after a full GC (raw RSS includes garbage not yet collected).
  const growth = Math.max(memEnd.rss / memStart.rss - 1, memEnd.heapUsed / memStart.heapUsed - 1)
  const pass =
    (withBad || sum((r) => r.gateway5xx) === 0) &&
    sum((r) => r.transportErrors) === 0 &&
    sum((r) => r.unshaped) === 0 &&
    inflight === 0 &&
    // Every idle or slowloris connection was closed by the gateway's own timeouts.
    sockets.closedByGateway === sockets.opened &&
    growth < 0.1 &&
    // Each judged misbehaving period: in rotation before, < 2 % of dispatches from 2 s on.
    periods
      .filter((p) => JUDGED.includes(p.mode))
      .every((p) => p.warmShare > 0 && p.lateDispatches > 0 && p.lateShare < MAX_BAD_SHARE) &&
    !gw.exited()
  const record: RunRecord = {
    command,
    date: new Date().toISOString().slice(0, 10),
    node: process.version,
    seconds: Math.round((Date.now() - started) / 1000),
    requests: sum((r) => r.sent),
    byStatus,
    gateway5xx: sum((r) => r.gateway5xx),
    engine5xx: sum((r) => r.engine5xx),
    transportErrors: sum((r) => r.transportErrors),
    unshaped: sum((r) => r.unshaped),
    inflightAtEnd: inflight,
    rssStartMB: mb(rssStart),
    rssEndMB: mb(rssEnd),
    rssMaxMB: mb(rssMax),
    afterGc: {
      rssStartMB: mb(memStart.rss),
      rssEndMB: mb(memEnd.rss),
      heapUsedStartMB: mb(memStart.heapUsed),
      heapUsedEndMB: mb(memEnd.heapUsed),
    },
    gatewayCpuSeconds: Math.round(((await cpuSeconds(gw.pid)) - cpuStart) * 10) / 10,
    notes: [
      `valid traffic (8 concurrent, a quarter streamed): ${v.sent} requests, ${v.byStatus[200] ?? 0} × 200, ${v.brokenBodies} broken bodies (${v.silentBroken} without an error event: listed first among the examples), latency p50 ${percentile(v.latenciesMs, 50).toFixed(1)} / p99 ${percentile(v.latenciesMs, 99).toFixed(1)} ms`,
      `fuzzed bodies (2 concurrent, seed ${seed}): ${f.sent} requests, ${f.gateway5xx} gateway-made 5xx`,
      `memory baseline after a ${warmupMinutes}-minute warm-up of the full mix (counted in the requests above; read with the load held and nothing in flight, as the end figure): heap used after GC ${mb(memCold.heapUsed)} MB after the first 500 requests, ${mb(memStart.heapUsed)} MB after the warm-up; RSS after GC ${mb(memCold.rss)} → ${mb(memStart.rss)} MB (what the first pass over every path allocates once: optimized code, object shapes, lazily built schema internals, Node's error classes; docs/hardening-soak.md)`,
      `prompt-piece cache (a bounded cache of hashed long prompt pieces, cap ${mb(MAX_BYTES)} MB counted at 2 bytes a character): ${fillPromptCache ? `filled before the baseline by ${fillRequests} requests of long distinct prompts, ` : 'left to the traffic (--no-prompt-cache-fill), '}${mb(promptCacheCold)} MB after the fill, ${mb(promptCacheStart)} MB at the baseline, ${mb(promptCacheEnd)} MB at the end${fillPromptCache ? '' : ' (its rise is in the heap growth above)'}`,
      `idle and slowloris connections: ${sockets.opened} opened in waves of 55 every 5 s, ${sockets.closedByGateway} closed by the gateway (limits ${LIMITS.join(' ')})`,
      `machine load average (1 min) at the end: ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} cores (other work shares the machine)`,
      `config file rewritten truncate-then-write ${rewrites} times, each a real change (an unrouted pool's endpoint renamed); the gateway counted ${reloads.success} reloads applied (the first config included) and ${reloads.failure} refused (an empty file read mid-write)`,
      withBad
        ? `bad engine cycled through ${switches} misbehaving periods (${modes.join(', ')}); its 502/504s are in the gateway-made 5xx count; gateway run with --max-upstream-body-bytes 8388608 as in the CI suite`
        : 'no misbehaving engine (add --with-bad-engine)',
      ...(periods.length > 0
        ? [
            `bad engine's share of dispatches from 2 s after it turned bad (target < 2 % for ${JUDGED.join(', ')}; error-500 reported, not judged): ${periods.map((p) => `${p.mode} ${pctOf(p.lateShare)} of ${p.lateDispatches} (before: ${pctOf(p.warmShare)}; first 2 s: ${p.firstTwoSeconds})`).join('; ')}`,
          ]
        : []),
    ],
    // Requests that got no answer first, then 2xx that broke without an error event, then the rest.
    samples: [
      ...[...v.samples, ...f.samples].filter((x) => x.includes(': no response: ')),
      ...v.silentSamples,
      ...[...v.samples, ...f.samples].filter((x) => !x.includes(': no response: ')),
    ].slice(0, 20),
    pass,
  }
  process.stdout.write(`${JSON.stringify(record, null, 2)}\n`)
  if (!values['no-write']) process.stdout.write(`wrote ${await writeHardening('soak', record)}\n`)
  if (!pass) process.exitCode = 1
} finally {
  await stack.stop()
}

// `npm run bench:decision-live` (issue 9): the scheduler's decision cost as the data plane itself
// measures it, without the whole routing matrix. Four simulated prefill-bound engines (the routing
// bench's shared-prefix workload: 16 × 1,500-token system prompts + 60-token questions), one data
// plane (`--explain`, no access log, as bench:routing starts it) and Poisson arrivals at `--rate`.
//
// Every request asks for the explain header, whose last field is that decision's cost in µs
// (taken before the explain line is built), so the costs come back in arrival order: the first
// decisions of a fresh process can be told from the steady state. /debug/endpoints' p50/p99 (what
// bench:routing reports as decisionUs) is printed beside them. `--node-args` go to the data
// plane's node (e.g. `--trace-gc`: its pauses are counted; `--trace-opt --trace-deopt`: the lines
// go to `--log`).
//
// `--probe` loads decision-probe.ts into the data plane: each decision is then sorted by what
// else happened inside it (a GC, the thread waiting for a CPU); its wall time also covers the
// explain line built after the cost is taken. Findings (issue 9, 2 shared cores, load 2.6-7):
// of 323 decisions over 1 ms in seven runs, 320 had the thread preempted, 1 overlapped a GC and
// 2 neither (one a cold process's first decision, compiling what it met); the median is cold code at start (see the scheduler's --scheduler-warmup) and cold caches
// between requests (decision-gap.ts).
//
//   npm run bench:decision-live -- [--rate 16] [--seconds 10] [--profile default|round-robin]
//     [--time-scale 1] [--warm-rate r --warm-seconds s] [--probe] [--no-explain]
//     [--dp-args="--scheduler-warmup 0"] [--node-args=--trace-gc] [--log file] [--cpu-profile]
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { createRng } from '../sim/rng.js'
import type { ProbeDump } from './decision-probe.js'
import {
  classifyProbe,
  explainUs,
  probeText,
  summary,
  underFunction,
  underFunctionText,
} from './decision-report.js'
import { startFleet } from './fleet-process.js'
import { watchGc } from './gc-trace.js'
import { spawnCli } from './procs.js'
import type { CpuProfile } from './proxy-cost-profile.js'
import { routingManifests } from './routing-config.js'
import { poissonTimes } from './routing-load.js'
import { PREFILL_BOUND } from './virtual-fleet.js'
import { words } from './words.js'

const { values: opts } = parseArgs({
  options: {
    rate: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '10' },
    profile: { type: 'string', default: 'default' },
    'time-scale': { type: 'string', default: '1' },
    'node-args': { type: 'string', default: '' },
    // More `dataplane` flags, e.g. --dp-args="--scheduler-warmup 0".
    'dp-args': { type: 'string', default: '' },
    log: { type: 'string' },
    'no-explain': { type: 'boolean', default: false },
    port: { type: 'string', default: '18931' },
    // Load decision-probe.ts into the data plane: what each slow decision was (GC, preemption).
    probe: { type: 'boolean', default: false },
    // A V8 CPU profile of the data plane: the split of Scheduler.pick's time by callee.
    'cpu-profile': { type: 'boolean', default: false },
    // A first phase at another rate, reported apart (e.g. a burst that warms V8 up first).
    'warm-rate': { type: 'string', default: '0' },
    'warm-seconds': { type: 'string', default: '0' },
  },
})

const MODEL = 'bench-llm'
const PROBE = fileURLToPath(new URL('./decision-probe.ts', import.meta.url))
const RATE = Number(opts.rate)
const SECONDS = Number(opts.seconds)
const PORT = Number(opts.port)
const EXPLAIN = !opts['no-explain']

async function main(): Promise<void> {
  const fleet = await startFleet(
    [0, 1, 2, 3].map((i) => ({
      name: `pod-${i}`,
      host: `127.0.0.${101 + i}`,
      port: 0,
      model: MODEL,
      metricsFormat: 'vllm' as const,
      seed: 1000 + i,
      timeScale: Number(opts['time-scale']),
      ...PREFILL_BOUND,
    })),
  )
  const dir = await mkdtemp(join(tmpdir(), 'decision-live-'))
  const file = join(dir, 'gateway.yaml')
  await writeFile(
    file,
    routingManifests({
      model: MODEL,
      endpoints: fleet.members.map((m) => ({ name: m.name, address: m.host, port: m.port })),
      retries: 2,
      ...(opts.profile === 'default' ? {} : { plugins: [{ name: opts.profile as string }] }),
    }),
  )
  const probeFile = join(dir, 'probe.json')
  const nodeArgs = [
    ...(opts.probe ? ['--import', 'tsx', '--import', PROBE] : []),
    ...(opts['cpu-profile']
      ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'prof')}`, '--cpu-prof-interval=25']
      : []),
    ...(opts['node-args'] as string).split(' ').filter((a) => a !== ''),
  ]
  if (opts.probe) process.env['DECISION_PROBE_OUT'] = probeFile
  const gw = await spawnCli(
    [
      'dataplane',
      '--config',
      file,
      '--explain',
      '--workers',
      '1',
      '--host',
      '127.0.0.1',
      '--port',
      String(PORT),
      '--no-access-log',
      '--drain-delay',
      '0',
      ...(opts['dp-args'] as string).split(' ').filter((a) => a !== ''),
    ],
    /"msg":"data plane listening"/,
    nodeArgs,
    60_000,
  )
  const gc = watchGc(gw.child.stdout as NonNullable<typeof gw.child.stdout>)
  const logLines: string[] = []
  if (opts.log !== undefined) {
    gw.child.stdout?.on('data', (b: Buffer) => logLines.push(b.toString()))
  }
  const origin = `http://127.0.0.1:${PORT}`
  for (const deadline = Date.now() + 10_000; ; ) {
    const d = (await (await fetch(`${origin}/debug/endpoints`)).json()) as {
      endpoints: { scrape: { fresh: boolean } }[]
    }
    if (d.endpoints.length === 4 && d.endpoints.every((e) => e.scrape.fresh)) break
    if (Date.now() > deadline) throw new Error('gateway never saw fresh metrics')
    await new Promise((r) => setTimeout(r, 50))
  }
  gc.take()

  const r = createRng(10)
  const systems = Array.from(
    { length: 16 },
    (_, g) => `Group ${g} policy. ${words(1500, createRng(100 + g))}`,
  )
  const warmS = Number(opts['warm-seconds'])
  const warmTimes =
    warmS > 0 ? poissonTimes(Number(opts['warm-rate']), warmS * 1000, r) : ([] as number[])
  const WARM = warmTimes.length
  const times = [
    ...warmTimes,
    ...poissonTimes(RATE, SECONDS * 1000, r).map((t) => t + warmS * 1000),
  ]
  const bodies = times.map(() =>
    JSON.stringify({
      model: MODEL,
      messages: [
        { role: 'system', content: systems[Math.floor(r() * 16)] },
        { role: 'user', content: words(60, r) },
      ],
      max_tokens: 16,
      stream: true,
    }),
  )
  const pool = new Pool(origin, { connections: 1024, keepAliveTimeout: 30_000 })
  const costs: number[] = new Array(times.length).fill(Number.NaN)
  const ttfts: number[] = new Array(times.length).fill(Number.NaN)
  let failed = 0
  const start = performance.now()
  const pending: Promise<void>[] = []
  for (let i = 0; i < times.length; i++) {
    const wait = (times[i] as number) - (performance.now() - start)
    if (wait > 1) await new Promise((res) => setTimeout(res, wait))
    pending.push(
      (async () => {
        const t0 = performance.now()
        try {
          const res = await pool.request({
            path: '/v1/chat/completions',
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              ...(EXPLAIN ? { 'x-infer-gateway-explain': '1' } : {}),
            },
            body: bodies[i] as string,
          })
          let first = Number.NaN
          for await (const _ of res.body) if (Number.isNaN(first)) first = performance.now()
          if (res.statusCode !== 200) failed++
          else ttfts[i] = first - t0
          const h = res.headers['x-infer-gateway-explain']
          const us = explainUs(typeof h === 'string' ? h : undefined)
          if (us !== undefined) costs[i] = us
        } catch {
          failed++
        }
      })(),
    )
  }
  await Promise.all(pending)
  const wallS = (performance.now() - start) / 1000
  const debug = (await (await fetch(`${origin}/debug/endpoints`)).json()) as {
    decisions: { decisions: number; p50Us: number | null; p99Us: number | null }
  }
  const pauses = gc.take()
  await pool.close()
  await gw.stop()
  await fleet.stop()
  if (opts.log !== undefined) await writeFile(opts.log, logLines.join(''))

  const out = (line: string): boolean => process.stdout.write(`${line}\n`)
  out(
    `profile ${opts.profile}, ${WARM > 0 ? `${WARM} requests at ${opts['warm-rate']}/s, then ` : ''}rate ${RATE}/s for ${SECONDS} s (${times.length} requests in all, ${wallS.toFixed(1)} s, ${failed} failed), explain header ${EXPLAIN ? 'on' : 'off'}, data plane args [${opts['dp-args']}], node args [${nodeArgs.join(' ')}]`,
  )
  out(
    `  /debug/endpoints decisions (all): ${debug.decisions.decisions}, p50 ${debug.decisions.p50Us} us, p99 ${debug.decisions.p99Us} us`,
  )
  const ok = (xs: readonly number[]): number[] => xs.filter((c) => !Number.isNaN(c))
  if (ok(costs).length > 0) {
    out(
      `  decision us, first 10 in arrival order: ${costs
        .slice(0, 10)
        .map((c) => c.toFixed(0))
        .join(' ')}`,
    )
    if (WARM > 0) out(`  decision us, warm phase: ${summary(ok(costs.slice(0, WARM)))}`)
    const measured = costs.slice(WARM)
    out(`  decision us, measured phase: ${summary(ok(measured))}`)
    for (const [a, b] of [
      [0, 20],
      [20, 100],
      [100, 400],
      [400, Number.POSITIVE_INFINITY],
    ] as const) {
      const part = ok(measured.slice(a, b))
      if (part.length > 0) out(`    its requests ${a}..${b}: ${summary(part)}`)
    }
  }
  if (WARM > 0) out(`  TTFT ms, warm phase: ${summary(ok(ttfts.slice(0, WARM)))}`)
  out(`  TTFT ms, measured phase: ${summary(ok(ttfts.slice(WARM)))}`)
  // The probe records the data plane's own scheduler (not its warm-up's): the measured phase is
  // the last of its decisions.
  if (opts.probe)
    out(
      probeText(
        classifyProbe(
          JSON.parse(await readFile(probeFile, 'utf8')) as ProbeDump,
          times.length - WARM,
        ),
      ),
    )
  if (opts['cpu-profile']) {
    // One profile per thread with JavaScript: the main thread's is the one with picks in it.
    const splits = await Promise.all(
      (await readdir(join(dir, 'prof'))).map(async (f) =>
        underFunction(JSON.parse(await readFile(join(dir, 'prof', f), 'utf8')) as CpuProfile, 1),
      ),
    )
    const main = splits.sort((a, b) => b.totalUs - a.totalUs)[0]
    if (main !== undefined) out(underFunctionText(main))
  }
  if (pauses.length > 0) {
    const ms = pauses.reduce((n, p) => n + p.pauseMs, 0)
    process.stdout.write(
      `  GC (main isolate, during the load): ${pauses.length} pauses, ${ms.toFixed(1)} ms in all (${((ms / (wallS * 1000)) * 100).toFixed(2)} % of the run), max ${Math.max(...pauses.map((p) => p.pauseMs)).toFixed(2)} ms\n`,
    )
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})

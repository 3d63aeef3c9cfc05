// `npm run bench:proxy`: what the gateway adds on the request path. One simulated engine in
// zero-latency mode, the same requests sent directly to it and through the gateway, in one run:
// added p50/p99 latency at a fixed arrival rate, and max throughput through vs around the gateway.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { closedLoop, fixedRate, type LoadResult, type LoadTarget, percentile } from './load.js'
import { spawnCli } from './procs.js'
import { fmt, table, writeSection } from './report.js'

const { values: opts } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '32' },
    profile: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
  },
})
const RATE = Number(opts.rate)
const SECONDS = Number(opts.seconds)
const CONCURRENCY = Number(opts.concurrency)
const SIM_HOST = '127.0.0.2'
const SIM_PORT = 18000
const GW_PORT = 18080

const chat = (stream: boolean) =>
  JSON.stringify({
    model: 'bench-model',
    messages: [{ role: 'user', content: 'Say hello to the benchmark in a few words.' }],
    max_tokens: 16,
    stream,
  })

function summary(r: LoadResult) {
  return {
    sent: r.sent,
    ok: r.ok,
    errors: r.errors,
    p50: percentile(r.latencies, 50),
    p90: percentile(r.latencies, 90),
    p99: percentile(r.latencies, 99),
    rps: (r.ok / r.elapsedMs) * 1000,
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-bench-'))
  const profDir = join(dir, 'prof')
  await writeFile(
    join(dir, 'gateway.yaml'),
    `apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelServer
metadata: { name: bench }
spec:
  inferenceEngine: vLLM
  workloadSelector: { matchLabels: { app: bench } }
  workloadPort: { port: ${SIM_PORT} }
---
apiVersion: standalone.infer-gateway.io/v1alpha1
kind: StaticEndpoints
metadata: { name: bench }
endpoints: [{ name: sim-0, address: ${SIM_HOST} }]
---
apiVersion: networking.matrixinfer.ai/v1alpha1
kind: ModelRoute
metadata: { name: bench }
spec:
  modelName: bench-model
  rules: [{ targetModels: [{ modelServerName: bench }] }]
`,
  )
  const sim = await spawnCli(
    [
      'sim',
      '--count',
      '1',
      '--host-base',
      SIM_HOST,
      '--port',
      String(SIM_PORT),
      '--model',
      'bench-model',
      '--zero-latency',
    ],
    /127\.0\.0\.2/,
  )
  const gw = await spawnCli(
    [
      'dataplane',
      '--config',
      join(dir, 'gateway.yaml'),
      '--host',
      '127.0.0.1',
      '--port',
      String(GW_PORT),
      '--no-access-log',
      '--drain-delay',
      '0',
    ],
    /data plane listening/,
    opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
  )
  const direct = (stream: boolean): LoadTarget => ({
    origin: `http://${SIM_HOST}:${SIM_PORT}`,
    path: '/v1/chat/completions',
    body: chat(stream),
  })
  const viaGw = (stream: boolean): LoadTarget => ({
    origin: `http://127.0.0.1:${GW_PORT}`,
    path: '/v1/chat/completions',
    body: chat(stream),
  })
  const results: Record<string, ReturnType<typeof summary>> = {}
  try {
    process.stdout.write('warming up…\n')
    await closedLoop(direct(false), 8, 1500)
    await closedLoop(viaGw(false), 8, 1500)
    // Alternate direct and gateway halves so slow drift on the machine hits both sides alike.
    for (const stream of [false, true]) {
      const tag = stream ? 'stream' : 'json'
      const half = (SECONDS * 1000) / 2
      const d1 = await fixedRate(direct(stream), RATE, half)
      const g1 = await fixedRate(viaGw(stream), RATE, half)
      const d2 = await fixedRate(direct(stream), RATE, half)
      const g2 = await fixedRate(viaGw(stream), RATE, half)
      results[`rate-${tag}-direct`] = summary(merge(d1, d2))
      results[`rate-${tag}-gateway`] = summary(merge(g1, g2))
      process.stdout.write(`fixed rate ${tag} done\n`)
    }
    results['max-direct'] = summary(await closedLoop(direct(false), CONCURRENCY, 5000))
    results['max-gateway'] = summary(await closedLoop(viaGw(false), CONCURRENCY, 5000))
  } finally {
    await gw.stop()
    await sim.stop()
  }

  const r = (k: string) => {
    const v = results[k]
    if (!v) throw new Error(`missing result ${k}`)
    return v
  }
  const rows: (string | number)[][] = []
  for (const tag of ['json', 'stream']) {
    const d = r(`rate-${tag}-direct`)
    const g = r(`rate-${tag}-gateway`)
    rows.push([
      `${RATE} req/s, ${tag === 'json' ? 'non-stream' : 'stream'}`,
      `${fmt(d.p50)} / ${fmt(d.p99)}`,
      `${fmt(g.p50)} / ${fmt(g.p99)}`,
      `**${fmt(g.p50 - d.p50)}** / **${fmt(g.p99 - d.p99)}**`,
      `${d.errors} / ${g.errors}`,
    ])
  }
  const md = r('max-direct')
  const mg = r('max-gateway')
  const ratio = mg.rps / md.rps
  const text = `## Proxy overhead (\`npm run bench:proxy\`)

One simulated engine in zero-latency mode on ${SIM_HOST}; the gateway (standalone, one process) in
front of it on 127.0.0.1; the load generator in a third process. Same requests sent directly and via
the gateway in one run, alternating halves. Latency in ms (p50 / p99). Targets: added p50 ≤ 0.3 ms,
p99 ≤ 2 ms at 500 req/s; throughput ≥ 60% of direct.

${table(['load', 'direct p50 / p99', 'gateway p50 / p99', 'added p50 / p99', 'errors (direct / gw)'], rows)}

Max throughput, ${CONCURRENCY} concurrent connections, non-stream, 5 s each:
direct **${fmt(md.rps, 0)} req/s**, gateway **${fmt(mg.rps, 0)} req/s** → ratio **${fmt(ratio, 2)}**
(errors: ${md.errors} / ${mg.errors}).

Measured ${new Date().toISOString().slice(0, 10)} on ${process.platform}/${process.arch}, Node ${process.version}, 2 cores shared by all three processes.`
  process.stdout.write(`\n${text}\n`)
  if (opts.profile) process.stdout.write(`\n${await profileSummary(profDir)}\n`)
  if (!opts['no-write']) {
    const file = await writeSection('proxy', text, {
      rate: RATE,
      seconds: SECONDS,
      concurrency: CONCURRENCY,
      results,
      throughputRatio: ratio,
    })
    process.stdout.write(`\nwritten to ${file}\n`)
  }
  await rm(dir, { recursive: true, force: true })
}

function merge(a: LoadResult, b: LoadResult): LoadResult {
  return {
    sent: a.sent + b.sent,
    ok: a.ok + b.ok,
    errors: a.errors + b.errors,
    elapsedMs: a.elapsedMs + b.elapsedMs,
    latencies: [...a.latencies, ...b.latencies].sort((x, y) => x - y),
  }
}

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

/** Self time by function from the gateway's V8 CPU profile: where the added latency goes. */
async function profileSummary(profDir: string): Promise<string> {
  const files = (await readdir(profDir)).filter((f) => f.endsWith('.cpuprofile'))
  const totals = new Map<string, number>()
  let all = 0
  for (const f of files) {
    const prof = JSON.parse(await readFile(join(profDir, f), 'utf8')) as { nodes: ProfileNode[] }
    for (const n of prof.nodes) {
      const hits = n.hitCount ?? 0
      all += hits
      const url = n.callFrame.url
        .replace(/^.*node_modules\//, '')
        .replace(/^file:\/\/.*\/main\//, '')
      const key = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`
      totals.set(key, (totals.get(key) ?? 0) + hits)
    }
  }
  const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20)
  return `Gateway CPU profile, top self time:\n${top.map(([k, v]) => `  ${((v / all) * 100).toFixed(1).padStart(5)}%  ${k}`).join('\n')}`
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})

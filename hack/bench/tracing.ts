// Tracing's cost on the request path: the same data plane (1 worker, zero-latency simulated engine)
// measured with tracing off and on (every request sampled, spans exported over OTLP/HTTP to the
// Collector's real otlpreceiver, hack/otlp-receiver), at a fixed rate with vegeta. Runs alternate
// off/on so drift on a shared machine hits both; the report is the median of each mode's p50/p99
// and the added p50 latency (target ≤ 50 µs at 500 req/s, issue 15).
//
//   npx tsx hack/bench/tracing.ts [--rate 500] [--seconds 15] [--rounds 2] [--json]
//   npx tsx hack/bench/tracing.ts --micro   # CPU per traced request, in process
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { Tracing } from '../../dataplane/telemetry/tracing.js'
import { type Proc, spawnCli, spawnProc } from './procs.js'
import { attack, ensureVegeta, report, type VegetaReport } from './proxy-vegeta.js'

const SIM_HOST = '127.0.0.2'
const SIM_PORT = 18100
const GW_PORT = 18101
const OTLP = '127.0.0.4:18102'
const MODEL = 'bench-model'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '15' },
    rounds: { type: 'string', default: '2' },
    json: { type: 'boolean', default: false },
    micro: { type: 'boolean', default: false },
  },
})
const RATE = Number(values.rate)
const SECONDS = Number(values.seconds)
const ROUNDS = Number(values.rounds)

const yaml = `apiVersion: networking.matrixinfer.ai/v1alpha1
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
  modelName: ${MODEL}
  rules: [{ targetModels: [{ modelServerName: bench }] }]
`

interface Run {
  readonly mode: 'off' | 'on'
  readonly r: VegetaReport
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

/**
 * --micro: the span work of one request (start with a client traceparent, decision event, the
 * engine's traceparent, end with the GenAI attributes) in a loop, exported by the same batch
 * processor to the real receiver; CPU time per request from process.cpuUsage(), which a busy
 * machine disturbs far less than wall-clock latency under load.
 */
async function micro(endpoint: string): Promise<void> {
  const tracing = new Tracing({ endpoint, sampleRatio: 1, exportDelayMs: 200 })
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const header = (n: string): string | undefined => (n === 'traceparent' ? tp : undefined)
  const one = (): void => {
    const t = tracing.start(header, 'chat')
    if (t === undefined) throw new Error('not sampled')
    t.event('infer_gateway.scheduler.decision', {
      'infer_gateway.server': 'default/pool',
      'infer_gateway.endpoint': '10.0.0.1:8000',
      'infer_gateway.candidates': 4,
    })
    t.traceparent()
    t.model(MODEL, true)
    t.end(200, {
      'infer_gateway.request_id': 'x',
      'url.path': '/v1/chat/completions',
      'infer_gateway.route': 'default/bench',
      'infer_gateway.rule': 'rule-0',
      'gen_ai.response.model': MODEL,
      'infer_gateway.target': 'server:default/bench',
      'infer_gateway.stream': true,
      'server.address': '10.0.0.1',
      'server.port': 8000,
      'infer_gateway.attempts': 1,
      'gen_ai.usage.input_tokens': 12,
      'gen_ai.usage.output_tokens': 8,
    })
  }
  for (let i = 0; i < 2000; i++) one()
  await tracing.flush()
  // Paced at --rate (a few requests per tick of ~5 ms) for --seconds; the same pacing without
  // spans is the baseline.
  const perTick = Math.max(1, Math.round(RATE / 200))
  const tickMs = (perTick * 1000) / RATE
  const ticks = Math.round((SECONDS * 1000) / tickMs)
  /** Wall time of the span work of one request, per tick (what a request waits for). */
  const onPath: number[] = []
  const paced = async (work: boolean): Promise<number> => {
    const cpu0 = process.cpuUsage()
    for (let k = 0; k < ticks; k++) {
      if (work) {
        const t0 = performance.now()
        for (let i = 0; i < perTick; i++) one()
        onPath.push(((performance.now() - t0) * 1000) / perTick)
      }
      await new Promise((r) => setTimeout(r, tickMs))
    }
    if (work) await tracing.flush()
    const c = process.cpuUsage(cpu0)
    return c.user + c.system
  }
  const base = await paced(false)
  const traced = await paced(true)
  const n = ticks * perTick
  process.stdout.write(
    `${JSON.stringify({
      mode: 'micro',
      rate: RATE,
      spans: n,
      // On the request path: span start, decision event, traceparent, attributes, end.
      onPathUsP50: Math.round(median(onPath) * 10) / 10,
      // Everything, the batch export (serialisation + HTTP) included, over the idle baseline.
      cpuUsPerRequest: Math.round(((traced - base) / n) * 10) / 10,
    })}\n`,
  )
  await tracing.shutdown()
}

async function main(): Promise<void> {
  const vegeta = await ensureVegeta()
  if (!vegeta.ok) throw new Error(`vegeta unavailable: ${vegeta.reason}`)
  const build = join(import.meta.dirname, '..', 'otlp-receiver', 'build.sh')
  await promisify(execFile)('bash', [build])
  const receiverBin = (await promisify(execFile)('bash', [build, '--print-bin'])).stdout.trim()
  const dir = await mkdtemp(join(tmpdir(), 'igw-bench-tracing-'))
  const procs: Proc[] = []
  try {
    await writeFile(join(dir, 'gateway.yaml'), yaml)
    const body = join(dir, 'body.json')
    await writeFile(
      body,
      JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 }),
    )
    procs.push(
      await spawnCli(
        [
          'sim',
          '--count',
          '1',
          '--host-base',
          SIM_HOST,
          '--port',
          String(SIM_PORT),
          '--model',
          MODEL,
          '--zero-latency',
        ],
        /127\.0\.0\.2/,
      ),
    )
    const receiver = spawnProc(receiverBin, ['-http', OTLP, '-out', join(dir, 'traces.jsonl')])
    procs.push(receiver)
    for (let i = 0; !receiver.output().includes('listening'); i++) {
      if (i > 100) throw new Error(`otlp-receiver did not start: ${receiver.output()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    if (values.micro) {
      await micro(`http://${OTLP}`)
      const spans = (await readFile(join(dir, 'traces.jsonl'), 'utf8')).split('"spanId"').length - 1
      process.stdout.write(`receiver got ${spans} spans\n`)
      return
    }
    const runs: Run[] = []
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of ['off', 'on'] as const) {
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
            '--workers',
            '1',
            ...(mode === 'on'
              ? ['--otlp-endpoint', `http://${OTLP}`, '--trace-sample-ratio', '1']
              : []),
          ],
          /data plane listening/,
        )
        try {
          const url = `http://127.0.0.1:${GW_PORT}/v1/chat/completions`
          // Warm-up: JIT, connection pools, the exporter's first batches.
          const warm = join(dir, `warm-${round}-${mode}.bin`)
          await attack(vegeta.bin, { url, bodyFile: body, rate: RATE, seconds: 3, output: warm })
          const out = join(dir, `run-${round}-${mode}.bin`)
          await attack(vegeta.bin, {
            url,
            bodyFile: body,
            rate: RATE,
            seconds: SECONDS,
            output: out,
          })
          const r = await report(vegeta.bin, [out])
          runs.push({ mode, r })
          if (!values.json)
            process.stdout.write(
              `round ${round + 1} tracing ${mode}: p50 ${(r.p50Ms * 1000).toFixed(0)} µs, p99 ${(r.p99Ms * 1000).toFixed(0)} µs, success ${(r.success * 100).toFixed(2)} %, ${r.requests} requests\n`,
            )
        } finally {
          await gw.stop()
        }
      }
    }
    const of = (mode: 'off' | 'on', k: 'p50Ms' | 'p99Ms'): number =>
      median(runs.filter((x) => x.mode === mode).map((x) => x.r[k] * 1000))
    const spans = (await readFile(join(dir, 'traces.jsonl'), 'utf8')).split('"spanId"').length - 1
    const result = {
      rate: RATE,
      seconds: SECONDS,
      rounds: ROUNDS,
      offP50Us: Math.round(of('off', 'p50Ms')),
      onP50Us: Math.round(of('on', 'p50Ms')),
      offP99Us: Math.round(of('off', 'p99Ms')),
      onP99Us: Math.round(of('on', 'p99Ms')),
      addedP50Us: Math.round(of('on', 'p50Ms') - of('off', 'p50Ms')),
      success: Math.min(...runs.map((x) => x.r.success)),
      // Proof the "on" runs exported: spans the receiver got (≈ requests of the "on" runs).
      spansReceived: spans,
    }
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`)
    else
      process.stdout.write(
        `tracing at ${RATE} req/s: p50 off ${result.offP50Us} µs, on ${result.onP50Us} µs (added ${result.addedP50Us} µs; target ≤ 50); p99 off ${result.offP99Us} µs, on ${result.onP99Us} µs; ${result.spansReceived} spans received\n`,
      )
  } finally {
    for (const p of procs.reverse()) await p.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})

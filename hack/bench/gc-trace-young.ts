// `npx tsx hack/bench/gc-trace-young.ts`: our data plane's young generation over a long run
// under bench:proxy's load (one `infer-gateway sim --zero-latency`, the esbuild bundle with one
// worker; vegeta at --rate, or streams at --stream-rate timed to the first byte). Each set of
// Node options (--variant, repeatable) gets a fresh data plane, run for --seconds in segments of
// --segment seconds; per segment: scavenges per 1,000 requests and their pauses (the main
// isolate's `--trace-gc` lines, gc-trace.ts), the new space's committed size then (from the data
// plane's own /metrics, nodejs_heap_space_size_total_bytes{space="new"}: both semi-spaces once a
// scavenge has run, so twice the semi-space size) and the process's RSS. What it answers that an A/B of short windows cannot: whether, and after how long,
// V8 grows the young generation toward `--max-semi-space-size` (it grows only once as many bytes
// have survived scavenges as it holds), and what a pinned size (`--min-semi-space-size`) costs in
// RSS. proxy-tail.ts says which slow requests overlapped a pause; proxy-cost.ts the CPU.
//
//   nice -n -15 npx tsx hack/bench/gc-trace-young.ts --seconds 180 --segment 30 \
//     --variant= --variant=--max-semi-space-size=32 \
//     --variant='--max-semi-space-size=32 --min-semi-space-size=32'
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { parseProm, promValue } from '../sim/testkit.js'
import { BenchUsageError, positiveArg } from './cli-args.js'
import { type GcPause, watchGc } from './gc-trace.js'
import { fixedRate, percentile } from './load.js'
import { type Proc, startZeroLatencySim } from './procs.js'
import { benchChatBody, benchGatewayArgs, bundleDataplane, spawnBundle } from './proxy-bundle.js'
import { statusKb } from './proxy-procfs.js'
import { attack, ensureVegeta, failures, report } from './proxy-vegeta.js'
import { singleEngineManifests } from './routing-config.js'

const USAGE = `usage: npx tsx hack/bench/gc-trace-young.ts [options]
  --variant S        Node options of one data plane (repeatable, run in turn; '' = Node's
                     defaults). Command-line flags, so --min-semi-space-size (which NODE_OPTIONS
                     refuses) can be tried too. Default: '' only.
  --mode M           nonstream (vegeta at --rate) or stream (--stream-rate, first byte timed)
  --rate N           non-stream requests per second (default 500)
  --stream-rate N    streams per second (default 200)
  --seconds N        load per data plane (default 120)
  --segment N        seconds per printed segment (default 20)
  --bundle FILE      a data plane bundle built beforehand (default: bundle the tree)`

const { values: opts } = parseArgs({
  options: {
    variant: { type: 'string', multiple: true, default: [] },
    mode: { type: 'string', default: 'nonstream' },
    rate: { type: 'string', default: '500' },
    'stream-rate': { type: 'string', default: '200' },
    seconds: { type: 'string', default: '120' },
    segment: { type: 'string', default: '20' },
    bundle: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

// Own addresses and ports: the other proxy benches may run on this machine at the same time.
const SIM_HOST = '127.0.0.8'
const SIM_PORT = 18150
const GW_PORT = 18151
const MODEL = 'bench-model'
const out = (line: string) => process.stdout.write(`${line}\n`)

const chat = (stream: boolean, maxTokens?: number) => benchChatBody(MODEL, stream, maxTokens)

export interface SegmentGc {
  readonly scavenges: number
  readonly perThousand: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly others: number
}

/** Scavenges per 1,000 requests and their pauses; other collections counted apart. */
export function segmentGc(pauses: readonly GcPause[], requests: number): SegmentGc {
  const sc = pauses
    .filter((p) => p.kind === 'scavenge')
    .map((p) => p.pauseMs)
    .sort((a, b) => a - b)
  return {
    scavenges: sc.length,
    perThousand: requests > 0 ? (sc.length * 1000) / requests : Number.NaN,
    p50Ms: percentile(sc, 50),
    p99Ms: percentile(sc, 99),
    maxMs: sc[sc.length - 1] ?? Number.NaN,
    others: pauses.length - sc.length,
  }
}

const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '—')

async function main(): Promise<void> {
  if (opts.help) {
    out(USAGE)
    return
  }
  const mode = opts.mode
  if (mode !== 'nonstream' && mode !== 'stream')
    throw new BenchUsageError(`--mode must be nonstream or stream, got ${mode}`)
  const rate = positiveArg(
    mode === 'stream' ? 'stream-rate' : 'rate',
    mode === 'stream' ? opts['stream-rate'] : opts.rate,
  )
  const seconds = positiveArg('seconds', opts.seconds)
  const segment = positiveArg('segment', opts.segment)
  const variants = (opts.variant ?? []).length > 0 ? (opts.variant ?? []) : ['']
  const dir = await mkdtemp(join(tmpdir(), 'igw-gc-young-'))
  const procs: Proc[] = []
  try {
    const vegeta = await ensureVegeta()
    if (!vegeta.ok) throw new Error(`vegeta is required: ${vegeta.reason}`)
    if (opts.bundle === undefined) out('bundling the data plane…')
    const bundle = opts.bundle ?? (await bundleDataplane(join(dir, 'dist')))
    // The config in a directory of its own: the data plane watches its config's directory and
    // vegeta's result files go to `dir`.
    await mkdir(join(dir, 'config'))
    const config = join(dir, 'config', 'gateway.yaml')
    await writeFile(config, singleEngineManifests(MODEL, SIM_HOST, SIM_PORT))
    const bodyFile = join(dir, 'body.json')
    await writeFile(bodyFile, chat(false))
    const sim = await startZeroLatencySim(SIM_HOST, SIM_PORT, MODEL)
    procs.push(sim)
    const origin = `http://127.0.0.1:${GW_PORT}`
    out(
      `${mode} at ${rate}/s, ${seconds} s per data plane in ${segment} s segments; load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    )
    let n = 0
    for (const v of variants) {
      const nodeArgs = v.split(/\s+/).filter((a) => a !== '')
      // Node options given here on the command line, with nothing from the environment: every
      // variant is exactly the flags it names ('' = Node's defaults).
      const gw = await spawnBundle(
        bundle,
        benchGatewayArgs(config, GW_PORT, ['--workers', '1']),
        /data plane listening/,
        ['--trace-gc', ...nodeArgs],
        undefined,
        { NODE_OPTIONS: '' },
      )
      const pid = gw.child.pid ?? 0
      const stdout = gw.child.stdout
      if (stdout === null) throw new Error('the data plane has no stdout')
      const gc = watchGc(stdout)
      const sample = async (): Promise<{ newMb: number; rssMb: number }> => {
        const metrics = await (await fetch(`${origin}/metrics`)).text()
        const status = await readFile(`/proc/${pid}/status`, 'utf8')
        return {
          newMb:
            promValue(parseProm(metrics), 'nodejs_heap_space_size_total_bytes', { space: 'new' }) /
            2 ** 20,
          rssMb: statusKb(status, 'VmRSS') / 1024,
        }
      }
      const idle = await sample()
      gc.take()
      out(
        `\n[${v === '' ? "Node's defaults" : v}] pid ${pid}: idle new space ${f2(idle.newMb)} MB, RSS ${f2(idle.rssMb)} MB`,
      )
      let requests = 0
      const all: GcPause[] = []
      for (let at = 0; at < seconds; at += segment) {
        const secs = Math.min(segment, seconds - at)
        let done = 0
        let p99 = Number.NaN
        let failed = 0
        if (mode === 'nonstream') {
          const file = join(dir, `v-${n++}.bin`)
          await attack(vegeta.bin, {
            url: `${origin}/v1/chat/completions`,
            bodyFile,
            rate,
            seconds: secs,
            output: file,
          })
          const r = await report(vegeta.bin, [file])
          await unlink(file).catch(() => {})
          done = r.requests
          failed = failures(r)
          p99 = r.p99Ms
        } else {
          const r = await fixedRate(
            { origin, path: '/v1/chat/completions', body: chat(true), firstByte: true },
            rate,
            secs * 1000,
          )
          done = r.sent
          failed = r.errors
          p99 = percentile(r.firstByte ?? [], 99)
        }
        const pauses = gc.take()
        all.push(...pauses)
        requests += done
        const s = segmentGc(pauses, done)
        const m = await sample()
        out(
          `  ${String(at).padStart(4)}-${at + secs} s: ${done} requests${failed > 0 ? ` (${failed} failed)` : ''}, p99 ${f2(p99)} ms; scavenges ${s.scavenges} (${f2(s.perThousand)} per 1,000 requests), pause p50 ${f2(s.p50Ms)} p99 ${f2(s.p99Ms)} max ${f2(s.maxMs)} ms${s.others > 0 ? `, ${s.others} other collections` : ''}; new space ${f2(m.newMb)} MB, RSS ${f2(m.rssMb)} MB`,
        )
      }
      const s = segmentGc(all, requests)
      out(
        `  whole run: ${requests} requests, scavenges ${s.scavenges} (${f2(s.perThousand)} per 1,000), pause p50 ${f2(s.p50Ms)} p99 ${f2(s.p99Ms)} max ${f2(s.maxMs)} ms, paused ${f2((all.reduce((a, p) => a + p.pauseMs, 0) * 1000) / Math.max(1, requests))} µs/request; load average ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
      )
      await gw.stop()
    }
  } finally {
    while (procs.length > 0) await procs.pop()?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`)
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exitCode = 1
  })

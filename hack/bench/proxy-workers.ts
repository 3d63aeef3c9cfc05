// `npx tsx hack/bench/proxy-workers.ts`: where the CPU of `dataplane --workers N` goes, per
// process (issue 11). One zero-latency sim; our bundle with --workers 1 and --workers N (and a
// second bundle with N, `--compare`), measured in alternating windows of vegeta at a fixed rate.
// For each window, per process of the data plane (the primary, each worker): CPU µs per request
// (user + system from /proc, the sim's beside it) and main-thread wake-ups per request (voluntary
// context switches: a count that other work on the machine inflates far less than CPU time).
// `--split`: also N separate single-process data planes that vegeta takes in turn, with no
// coordination at all: what splitting the load over N processes costs on this machine by itself.
// `--cpu-prof DIR`: one more window per target with V8's profiler in every process (cluster
// workers inherit execArgv), summarised per process (warm-up and start-up included).
//
//   npx tsx hack/bench/proxy-workers.ts --rounds 4 --seconds 5 --split
//   npx tsx hack/bench/proxy-workers.ts --bundle /tmp/a/dataplane.mjs --compare /tmp/b/dataplane.mjs
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type Proc, startZeroLatencySim } from './procs.js'
import { benchGatewayArgs, bundleDataplane, spawnBundle } from './proxy-bundle.js'
import {
  bundleSourceMap,
  type CpuProfile,
  profileLines,
  summarizeProfile,
} from './proxy-cost-profile.js'
import { processTree } from './proxy-procfs.js'
import { attack, ensureVegeta, failures, report } from './proxy-vegeta.js'
import { singleEngineManifests } from './routing-config.js'

const { values: opts } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    workers: { type: 'string', default: '2' },
    bundle: { type: 'string' },
    /** A second bundle, measured with N workers in the same alternation (label B). */
    compare: { type: 'string' },
    /** Skip the 1-worker target. */
    'no-single': { type: 'boolean', default: false },
    /** Also N separate single-process data planes, vegeta taking them in turn (no coordination). */
    split: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    top: { type: 'string', default: '15' },
    warm: { type: 'string', default: '5' },
    /** NAME=VALUE for the N-worker data plane of bundle B (or A without --compare), repeatable. */
    'b-env': { type: 'string', multiple: true, default: [] },
  },
})

const RATE = Number(opts.rate)
const SECONDS = Number(opts.seconds)
const ROUNDS = Number(opts.rounds)
const WORKERS = Number(opts.workers)
const MODEL = 'bench-model'
const SIM_HOST = '127.0.0.2'
const SIM_PORT = 18100
const out = (l: string) => process.stdout.write(`${l}\n`)

interface Target {
  readonly label: string
  readonly bundle: string
  readonly workers: number
  readonly port: number
  /**
   * Separate single-process data planes on port, port+1, … that vegeta takes in turn: N processes
   * sharing the load with no coordination at all (what splitting alone costs on this machine).
   */
  readonly copies: number
  procs: Proc[]
  readonly cpu: Map<string, [number, number, number]>
  lat: { p50: number; p99: number; failed: number }[]
}

/** Per role: CPU µs per request (user+sys) and main-thread wake-ups per request. */
const fmt = (m: ReadonlyMap<string, readonly [number, number, number]>, requests: number): string =>
  [...m.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([k, [u, sy, w]]) => {
      const us = (x: number) => ((x * 1e6) / requests).toFixed(0)
      return `${k} ${us(u + sy)} (${us(u)}+${us(sy)}; ${(w / requests).toFixed(2)} wakes)`
    })
    .join(', ')

/**
 * Per process of `root`'s tree, by pid: utime and stime seconds (/proc/<pid>/stat), and the times
 * its main thread went to sleep (voluntary context switches, /proc/<pid>/status): one per wake-up,
 * a count that other work on the machine does not inflate as it does CPU time.
 */
async function treeTimes(root: number): Promise<Map<number, readonly [number, number, number]>> {
  const out = new Map<number, readonly [number, number, number]>()
  for (const pid of await processTree(root)) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const status = await readFile(`/proc/${pid}/status`, 'utf8')
      const sleeps = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1])
      out.set(pid, [Number(f[11]) / 100, Number(f[12]) / 100, sleeps])
    } catch {
      // exited
    }
  }
  return out
}

/** primary / worker k (k by pid order) / process (a single-process data plane). */
function roleOf(root: number, workers: number, pids: readonly number[]) {
  const others = pids.filter((p) => p !== root).sort((a, b) => a - b)
  return (pid: number): string => {
    if (workers === 1) return 'process'
    if (pid === root) return 'primary'
    return `worker ${others.indexOf(pid) + 1}`
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-proxy-workers-'))
  const procs: Proc[] = []
  try {
    const vegeta = await ensureVegeta()
    if (!vegeta.ok) throw new Error(vegeta.reason)
    const a = opts.bundle ?? (await bundleDataplane(join(dir, 'dist')))
    const confDir = join(dir, 'conf')
    await mkdir(confDir)
    const config = join(confDir, 'gateway.yaml')
    await writeFile(config, singleEngineManifests(MODEL, SIM_HOST, SIM_PORT))
    const body = join(dir, 'body.json')
    await writeFile(
      body,
      JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: 'Say hello to the benchmark in a few words.' }],
        max_tokens: 16,
        stream: false,
      }),
    )
    const sim = await startZeroLatencySim(SIM_HOST, SIM_PORT, MODEL)
    procs.push(sim)
    const targets: Target[] = []
    const mk = (
      label: string,
      bundle: string,
      workers: number,
      port: number,
      copies = 1,
    ): Target => ({ label, bundle, workers, port, copies, procs: [], cpu: new Map(), lat: [] })
    if (!opts['no-single']) targets.push(mk('A 1 worker', a, 1, 18180))
    targets.push(mk(`A ${WORKERS} workers`, a, WORKERS, 18181))
    if (opts.compare !== undefined)
      targets.push(mk(`B ${WORKERS} workers`, opts.compare, WORKERS, 18182))
    if (opts.split) targets.push(mk(`A ${WORKERS} × 1 worker`, a, 1, 18190, WORKERS))
    const env: Record<string, string> = {}
    for (const kv of opts['b-env'] ?? []) {
      const i = kv.indexOf('=')
      env[kv.slice(0, i)] = kv.slice(i + 1)
    }
    const envTarget = targets.filter((t) => t.copies === 1).at(-1)
    const start = async (t: Target, nodeArgs: string[] = []): Promise<Proc[]> => {
      const out: Proc[] = []
      for (let i = 0; i < t.copies; i++) {
        const p = await spawnBundle(
          t.bundle,
          benchGatewayArgs(config, t.port + i, ['--workers', String(t.workers)]),
          /data plane listening/,
          nodeArgs,
          30_000,
          t === envTarget ? env : {},
        )
        procs.push(p)
        out.push(p)
      }
      return out
    }
    for (const t of targets) t.procs = await start(t)
    const url = (t: Target) =>
      Array.from(
        { length: t.copies },
        (_, i) => `http://127.0.0.1:${t.port + i}/v1/chat/completions`,
      )
    const times = async (t: Target) => {
      const all = new Map<number, readonly [number, number, number]>()
      for (const p of t.procs) for (const [k, v] of await treeTimes(p.child.pid ?? 0)) all.set(k, v)
      return all
    }
    for (const t of targets) {
      await attack(vegeta.bin, {
        url: url(t),
        bodyFile: body,
        rate: RATE,
        seconds: Number(opts.warm),
        output: join(dir, 'warm.bin'),
      })
    }
    const requests = RATE * SECONDS
    const simPid = sim.child.pid ?? 0
    for (let r = 1; r <= ROUNDS; r++) {
      for (const t of targets) {
        const pid = t.procs[0]?.child.pid ?? 0
        const before = await times(t)
        const simBefore = await treeTimes(simPid)
        const load0 = loadavg()[0] ?? 0
        const file = join(dir, `rate-${r}.bin`)
        await attack(vegeta.bin, {
          url: url(t),
          bodyFile: body,
          rate: RATE,
          seconds: SECONDS,
          output: file,
        })
        const after = await times(t)
        const simAfter = await treeTimes(simPid)
        const rep = await report(vegeta.bin, [file])
        const role =
          t.copies > 1
            ? (p: number) => `process ${t.procs.findIndex((x) => x.child.pid === p) + 1}`
            : roleOf(pid, t.workers, [...after.keys()])
        const by = new Map<string, [number, number, number]>()
        const add = (k: string, u: number, sy: number, w: number): void => {
          const x = by.get(k) ?? [0, 0, 0]
          x[0] += u
          x[1] += sy
          x[2] += w
          by.set(k, x)
        }
        for (const [p, [u, sy, w]] of after) {
          const [u0, s0, w0] = before.get(p) ?? [0, 0, 0]
          add(role(p), u - u0, sy - s0, w - w0)
          add('total', u - u0, sy - s0, w - w0)
        }
        for (const [p, [u, sy, w]] of simAfter) {
          const [u0, s0, w0] = simBefore.get(p) ?? [0, 0, 0]
          add('sim', u - u0, sy - s0, w - w0)
        }
        for (const [k, [u, sy, w]] of by) {
          const x = t.cpu.get(k) ?? [0, 0, 0]
          t.cpu.set(k, [x[0] + u, x[1] + sy, x[2] + w])
        }
        t.lat.push({ p50: rep.p50Ms, p99: rep.p99Ms, failed: failures(rep) })
        out(
          `round ${r} ${t.label}: ${fmt(by, requests)}; p50 ${rep.p50Ms.toFixed(3)} p99 ${rep.p99Ms.toFixed(3)} ms, ${failures(rep)} failed; load ${load0.toFixed(2)}`,
        )
      }
    }
    out('\nsum over rounds (µs CPU per request, user+sys; main-thread wake-ups per request):')
    for (const t of targets) out(`  ${t.label}: ${fmt(t.cpu, requests * ROUNDS)}`)
    const profDir = opts['cpu-prof']
    if (profDir !== undefined) {
      for (const t of targets) {
        for (const p of t.procs) await p.stop()
        const d = join(profDir, t.label.replaceAll(' ', '-'))
        await rm(d, { recursive: true, force: true })
        await mkdir(d, { recursive: true })
        const ps = await start(t, ['--cpu-prof', `--cpu-prof-dir=${d}`])
        await attack(vegeta.bin, {
          url: url(t),
          bodyFile: body,
          rate: RATE,
          seconds: 2,
          output: join(dir, 'w.bin'),
        })
        await attack(vegeta.bin, {
          url: url(t),
          bodyFile: body,
          rate: RATE,
          seconds: SECONDS,
          output: join(dir, 'p.bin'),
        })
        for (const p of ps) await p.stop()
        const map = await bundleSourceMap(t.bundle)
        for (const f of (await readdir(d)).filter((x) => x.endsWith('.cpuprofile'))) {
          const prof = JSON.parse(await readFile(join(d, f), 'utf8')) as CpuProfile
          out(`\n${t.label} ${f} (µs per request of the whole run, warm-up included):`)
          const s = summarizeProfile(prof, RATE * (SECONDS + 2), map)
          for (const l of profileLines(s, Number(opts.top))) out(l)
        }
      }
    }
  } finally {
    while (procs.length > 0) await procs.pop()?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})

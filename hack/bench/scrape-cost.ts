// CPU the data plane spends per engine /metrics scrape (issues 9 and 11), measured in a running
// data plane with no traffic: the gateway (its own process, as in production) over N idle
// simulated vLLM engines (this process, distinct 127.0.0.x addresses), its CPU read from
// /proc/<pid>/task/*/schedstat (ns) over a window with scraping on and with `--scrape off`. The
// difference over the scrapes the engines answered in that window (counted at the engines) is the
// CPU per scrape; the `off` run is the idle floor (timers, config polling, GC).
//
//   tsx hack/bench/scrape-cost.ts [--engines 4,64] [--seconds 10] [--rounds 3]
//     [--modes inline,off] [--cli <path to bin/infer-gateway.js>] [--cli-b <path>]
//     [--gateway-node-args="--cpu-prof --cpu-prof-dir=/tmp/p"] [--workers 1] [--engine-traffic 0]
//
// `--cli-b` A/Bs two checkouts (e.g. a `git archive` of the base commit with node_modules linked):
// every (engines, mode) cell runs A then B then A … alternating by round, so load drift on a shared
// machine falls on both. Each round is a fresh gateway; the first `--warmup` seconds after every
// engine has a fresh scrape are not measured (JIT, first connections).
import { spawn } from 'node:child_process'
import { subscribe } from 'node:diagnostics_channel'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type SimHandle, startSimulator } from '../sim/index.js'
import { CLI } from './procs.js'
import { routingManifests } from './routing-config.js'
import { nodeThreads, runNs, sampleTree, threadDeltas } from './thread-cpu.js'

const { values: opts } = parseArgs({
  options: {
    engines: { type: 'string', default: '4,64' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    modes: { type: 'string', default: 'inline,off' },
    cli: { type: 'string' },
    'cli-b': { type: 'string' },
    'gateway-node-args': { type: 'string', default: '' },
    'gateway-args': { type: 'string', default: '' },
    // bench:routing's default. Above 1 the primary scrapes for every worker (and ignores
    // `--scrape off`), so the off floor is not one there.
    workers: { type: 'string', default: '1' },
    // Requests per second sent by this process straight to each engine (not through the gateway):
    // their counters and gauges then move, so scrapes do not repeat the previous body.
    'engine-traffic': { type: 'string', default: '0' },
  },
})

const MODEL = 'scrape-model'
const ENGINE_COUNTS = (opts.engines ?? '4').split(',').map(Number)
const SECONDS = Number(opts.seconds)
const WARMUP = Number(opts.warmup)
const ROUNDS = Number(opts.rounds)
const MODES = (opts.modes ?? 'inline,off').split(',')
const NODE_ARGS = (opts['gateway-node-args'] ?? '').split(' ').filter((a) => a !== '')
const GATEWAY_ARGS = (opts['gateway-args'] ?? '').split(' ').filter((a) => a !== '')
const CLIS: readonly (readonly [string, string])[] =
  opts['cli-b'] !== undefined
    ? [
        ['A', opts.cli ?? CLI],
        ['B', opts['cli-b']],
      ]
    : [['A', opts.cli ?? CLI]]

// Every /metrics request the engines of this process receive: the scrapes actually made.
let metricsRequests = 0
subscribe('http.server.request.start', (m) => {
  const url = (m as { request?: { url?: string } }).request?.url
  if (url === '/metrics') metricsRequests++
})

interface Cell {
  readonly cli: string
  readonly engines: number
  readonly mode: string
  readonly round: number
  readonly cpuMs: number
  readonly mainMs: number
  readonly scrapes: number
  readonly load: number
}

async function startEngines(n: number): Promise<SimHandle[]> {
  const out: SimHandle[] = []
  for (let i = 0; i < n; i++) {
    out.push(
      await startSimulator({
        name: `pod-${i}`,
        // 127.0.0.101 … 127.0.1.x: every engine its own address, as pods have.
        host: `127.0.${Math.floor((101 + i) / 250)}.${((101 + i) % 250) + 1}`,
        port: 0,
        model: MODEL,
        metricsFormat: 'vllm',
        seed: 1000 + i,
      }),
    )
  }
  return out
}

interface DebugView {
  endpoints: { scrape: { fresh: boolean } }[]
}

interface Gateway {
  readonly pid: number
  readonly url: string
  stop(): Promise<void>
}

/**
 * `node <cli> <args>` (procs.ts' spawnCli, with the checkout's CLI as a parameter so two
 * checkouts can be compared); resolves with its URL once it logs that it listens.
 */
function spawnGateway(cli: string, args: readonly string[]): Promise<Gateway> {
  const child = spawn(process.execPath, [...NODE_ARGS, cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const stop = (): Promise<void> =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 5000).unref()
    })
  return new Promise<Gateway>((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => {
      void stop()
      reject(new Error(`gateway not listening after 60 s:\n${seen}`))
    }, 60_000)
    const onData = (b: Buffer): void => {
      if (seen.length < 65_536) seen += b.toString()
      const m = /"msg":"data plane listening","url":"([^"]+)"/.exec(seen)
      if (m !== null) {
        clearTimeout(timer)
        seen = ''
        // Ready: keep draining its output without looking at it.
        child.stdout?.off('data', onData)
        child.stderr?.off('data', onData)
        child.stdout?.resume()
        child.stderr?.resume()
        resolve({ pid: child.pid ?? 0, url: m[1] ?? '', stop })
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`gateway exited with ${code}:\n${seen}`))
    })
  })
}

async function waitListed(url: string, n: number, scraped: boolean): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      const d = (await (await fetch(`${url}/debug/endpoints`)).json()) as DebugView
      if (d.endpoints.length === n && (!scraped || d.endpoints.every((e) => e.scrape.fresh))) return
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error('gateway never listed (and scraped) its endpoints')
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function runCell(
  cli: readonly [string, string],
  file: string,
  engines: number,
  mode: string,
  round: number,
): Promise<Cell> {
  const gw = await spawnGateway(cli[1], [
    'dataplane',
    '--config',
    file,
    '--scrape',
    mode,
    '--workers',
    opts.workers ?? '1',
    ...GATEWAY_ARGS,
    '--explain',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--no-access-log',
    '--drain-delay',
    '0',
  ])
  try {
    const url = gw.url
    await waitListed(url, engines, mode !== 'off')
    await new Promise((r) => setTimeout(r, WARMUP * 1000))
    const pid = gw.pid
    const before = await sampleTree(pid)
    const m0 = metricsRequests
    const load = loadavg()[0] ?? Number.NaN
    await new Promise((r) => setTimeout(r, SECONDS * 1000))
    const d = threadDeltas(before, await sampleTree(pid))
    return {
      cli: cli[0],
      engines,
      mode,
      round,
      cpuMs: runNs(d) / 1e6,
      mainMs: nodeThreads(d).main.runNs / 1e6,
      scrapes: metricsRequests - m0,
      load,
    }
  } finally {
    await gw.stop()
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? (s[m] ?? Number.NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2
}

const f1 = (n: number): string => n.toFixed(1)
const f0 = (n: number): string => n.toFixed(0)

/** Requests straight to every engine at `perSec` each until the returned stop. */
function engineTraffic(sims: readonly SimHandle[], perSec: number): () => Promise<void> {
  if (perSec <= 0) return async () => {}
  let on = true
  let seq = 0
  const loops = sims.map(async (sim) => {
    while (on) {
      const t = performance.now()
      try {
        const res = await fetch(`${sim.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: MODEL,
            messages: [{ role: 'user', content: `question ${seq++}` }],
            max_tokens: 4,
          }),
        })
        await res.text()
      } catch {
        // next round
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 / perSec - (performance.now() - t))))
    }
  })
  return async () => {
    on = false
    await Promise.all(loops)
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'scrape-cost-'))
  const cells: Cell[] = []
  try {
    for (const n of ENGINE_COUNTS) {
      const sims = await startEngines(n)
      const stopTraffic = engineTraffic(sims, Number(opts['engine-traffic']))
      try {
        const file = join(dir, `gateway-${n}.yaml`)
        await writeFile(
          file,
          routingManifests({
            model: MODEL,
            endpoints: sims.map((s) => ({ name: s.name, address: s.host, port: s.port })),
          }),
        )
        for (let round = 0; round < ROUNDS; round++) {
          // Alternate the order of the checkouts by round, and the modes within each.
          const clis = round % 2 === 0 ? CLIS : [...CLIS].reverse()
          for (const cli of clis) {
            for (const mode of MODES) {
              const c = await runCell(cli, file, n, mode, round)
              cells.push(c)
              process.stdout.write(
                `${cli[0]} engines=${n} ${mode} round ${round}: ${f1(c.cpuMs)} ms CPU (main ${f1(c.mainMs)}) in ${SECONDS} s, ${c.scrapes} scrapes, load ${c.load.toFixed(2)}\n`,
              )
            }
          }
        }
      } finally {
        await stopTraffic()
        await Promise.all(sims.map((s) => s.close()))
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  // Per scrape: (CPU with scraping - median CPU with it off) / scrapes, per round's own run.
  process.stdout.write('\nCPU per scrape (run CPU minus the median `off` CPU of the same cell):\n')
  for (const [name] of CLIS) {
    for (const n of ENGINE_COUNTS) {
      const off = cells.filter((c) => c.cli === name && c.engines === n && c.mode === 'off')
      const offMs = median(off.map((c) => c.cpuMs))
      const offMain = median(off.map((c) => c.mainMs))
      for (const mode of MODES) {
        if (mode === 'off') continue
        const runs = cells.filter((c) => c.cli === name && c.engines === n && c.mode === mode)
        const per = runs.map((c) => ((c.cpuMs - (off.length > 0 ? offMs : 0)) * 1000) / c.scrapes)
        const perMain = runs.map(
          (c) => ((c.mainMs - (off.length > 0 ? offMain : 0)) * 1000) / c.scrapes,
        )
        process.stdout.write(
          `  ${name} engines=${n} ${mode}: ${per.map(f0).join(' / ')} us per scrape (median ${f0(median(per))}; main thread ${f0(median(perMain))}); off ${f1(offMs)} ms per ${SECONDS} s\n`,
        )
      }
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})

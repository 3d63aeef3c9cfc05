// `npx tsx hack/bench/proxy-chunk-live.ts`: what one SSE chunk costs the data plane between the
// engine socket's read and the write to the client, through real sockets (issues 9 and 11). An
// engine in this process streams each token in its own write at a fixed cadence (as a real engine
// and the routing benches' sim do: each chunk its own socket read and wake-up in the gateway, which
// proxy-cost.ts's zero-latency sim, one read per whole stream, hides), closed-loop clients keep
// `--streams` streams open through the gateway, and the gateway's CPU is read from
// /proc/<pid>/task/*/schedstat (ns) over windows alternating between the bundles compared:
//
//   npx tsx hack/bench/proxy-chunk-live.ts --bundle /tmp/a/dataplane.mjs \
//     --compare /tmp/b/dataplane.mjs --rounds 3 --seconds 8
//   npx tsx hack/bench/proxy-chunk-live.ts --bundle dist/dataplane.mjs --rounds 1 \
//     --node-arg=--cpu-prof --node-arg=--cpu-prof-dir=/tmp/prof   # profile written at exit
//
// Printed per window and summed per target: CPU µs per chunk and per request (all threads, and the
// main thread alone), the main thread's wake-ups (schedstat slices) per chunk, and the load average.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import {
  Agent,
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http'
import { type AddressInfo, createServer as createNetServer } from 'node:net'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { positiveArg } from './cli-args.js'
import type { Proc } from './procs.js'
import {
  benchGatewayArgs,
  benchGatewayNodeArgs,
  bundleDataplane,
  spawnBundle,
} from './proxy-bundle.js'
import { singleEngineManifests } from './routing-config.js'
import { nodeThreads, runNs, sampleThreads, threadDeltas } from './thread-cpu.js'

const { values: opts } = parseArgs({
  options: {
    bundle: { type: 'string' },
    /** Bundles measured against the first in alternating windows (repeatable). */
    compare: { type: 'string', multiple: true, default: [] },
    streams: { type: 'string', default: '24' },
    tokens: { type: 'string', default: '16' },
    'cadence-ms': { type: 'string', default: '15' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    'node-arg': { type: 'string', multiple: true },
    'gateway-arg': { type: 'string', multiple: true, default: [] },
    /** One data plane loaded at a time (default: all at once, each with its own streams). */
    alternate: { type: 'boolean', default: false },
  },
})
const STREAMS = positiveArg('streams', opts.streams)
const TOKENS = positiveArg('tokens', opts.tokens)
const CADENCE = positiveArg('cadence-ms', opts['cadence-ms'])
const SECONDS = positiveArg('seconds', opts.seconds)
const ROUNDS = positiveArg('rounds', opts.rounds)
const MODEL = 'bench-model'
const ENGINE_HOST = '127.0.0.7'
const out = (l: string) => process.stdout.write(`${l}\n`)

/** What one engine sent so far: writes (SSE chunks), and streams its clients finished. */
interface Counts {
  chunks: number
  finished: number
}

const ev = (id: string, delta: string, finish: string | null, usage: boolean): string =>
  `data: {"id":"${id}","object":"chat.completion.chunk","created":1733180000,"model":"${MODEL}","choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]${usage ? ',"usage":null' : ''}}\n\n`

/** A vLLM-shaped chat stream: a role event, one write per token every CADENCE ms, then the end. */
const engine =
  (n: Counts) =>
  (req: IncomingMessage, res: ServerResponse): void => {
    const parts: Buffer[] = []
    req.on('data', (c: Buffer) => parts.push(c))
    req.on('end', () => {
      if (req.url !== '/v1/chat/completions') {
        res.writeHead(404).end()
        return
      }
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
        stream_options?: { include_usage?: boolean }
      }
      const usage = body.stream_options?.include_usage === true
      const id = `chatcmpl-${Math.floor(Math.random() * 1e9)}`
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      res.write(ev(id, '{"role":"assistant","content":""}', null, usage))
      n.chunks++
      let i = 0
      const tick = setInterval(() => {
        if (res.destroyed) {
          clearInterval(tick)
          return
        }
        if (i < TOKENS) {
          res.write(ev(id, `{"content":"tok${i} "}`, null, usage))
          n.chunks++
          i++
          return
        }
        clearInterval(tick)
        let end = ev(id, '{}', 'stop', usage)
        if (usage)
          end += `data: {"id":"${id}","object":"chat.completion.chunk","created":1733180000,"model":"${MODEL}","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":${TOKENS},"total_tokens":${TOKENS + 12}}}\n\n`
        res.end(`${end}data: [DONE]\n\n`)
        n.chunks++
      }, CADENCE)
    })
  }

const BODY = JSON.stringify({
  model: MODEL,
  messages: [{ role: 'user', content: 'Say hello to the benchmark in a few words.' }],
  max_tokens: TOKENS,
  stream: true,
})

/** Keeps `n` streams open against `port` until `stop()`; resolves once the last one ended. */
function load(
  port: number,
  n: number,
  counts: Counts,
): { stop: () => Promise<void>; failed: () => number } {
  const agent = new Agent({ keepAlive: true, maxSockets: n })
  let running = true
  let failed = 0
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const r = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/chat/completions',
          agent,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          if (res.statusCode !== 200) failed++
          res.on('data', () => {})
          res.on('end', () => {
            counts.finished++
            resolve()
          })
          res.on('error', () => {
            failed++
            resolve()
          })
        },
      )
      r.on('error', () => {
        failed++
        resolve()
      })
      r.end(BODY)
    })
  const loops = Array.from({ length: n }, async (_, k) => {
    // Spread the streams' starts over one cadence so that chunks do not all land together.
    await new Promise((r) => setTimeout(r, (k * CADENCE) / n))
    while (running) await one()
  })
  return {
    stop: async () => {
      running = false
      await Promise.all(loops)
      agent.destroy()
    },
    failed: () => failed,
  }
}

/** utime and stime of a process (all threads), in clock ticks (1/100 s). */
async function userSystem(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(f[11]), system: Number(f[12]) }
}

async function freePort(): Promise<number> {
  const s = createNetServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

interface Target {
  readonly label: string
  readonly port: number
  readonly pid: number
  readonly counts: Counts
  /** CPU µs per chunk, all threads, one entry per round. */
  readonly perRound: number[]
  /** The same, the main thread alone. */
  readonly mainPerRound: number[]
  chunks: number
  requests: number
  allNs: number
  mainNs: number
  slices: number
  user: number
  system: number
}

interface Snapshot {
  readonly chunks: number
  readonly finished: number
  readonly threads: Awaited<ReturnType<typeof sampleThreads>>
  readonly ticks: { user: number; system: number }
}

const snapshot = async (t: Target): Promise<Snapshot> => ({
  chunks: t.counts.chunks,
  finished: t.counts.finished,
  threads: await sampleThreads([t.pid]),
  ticks: await userSystem(t.pid),
})

/** Adds one window's figures (between `a` and `b`) to the target's and prints them. */
function account(t: Target, a: Snapshot, b: Snapshot, round: number, failed: number): void {
  const dc = b.chunks - a.chunks
  const df = b.finished - a.finished
  const d = threadDeltas(a.threads, b.threads)
  const th = nodeThreads(d)
  const all = runNs(d)
  t.chunks += dc
  t.requests += df
  t.allNs += all
  t.mainNs += th.main.runNs
  t.slices += th.main.slices
  t.user += b.ticks.user - a.ticks.user
  t.system += b.ticks.system - a.ticks.system
  t.perRound.push(all / 1000 / dc)
  t.mainPerRound.push(th.main.runNs / 1000 / dc)
  out(
    `round ${round + 1} ${t.label}: ${dc} chunks, ${df} streams, CPU ${(all / 1000 / dc).toFixed(1)} µs/chunk (main ${(th.main.runNs / 1000 / dc).toFixed(1)}), ${(all / 1e6 / df).toFixed(3)} ms/stream, main wake-ups ${(th.main.slices / dc).toFixed(2)}/chunk, failed ${failed}, load ${loadavg()[0]?.toFixed(2)}`,
  )
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-chunk-live-'))
  const procs: Proc[] = []
  const engines: Server[] = []
  try {
    const bundle = opts.bundle ?? (await bundleDataplane(join(dir, 'dist')))
    const bundles = [bundle, ...(opts.compare ?? [])]
    const targets: Target[] = []
    for (const [i, b] of bundles.entries()) {
      // Each data plane its own engine (so that each one's chunks are counted apart) and config.
      const counts: Counts = { chunks: 0, finished: 0 }
      const server = createServer(engine(counts))
      server.keepAliveTimeout = 60_000
      engines.push(server)
      await new Promise<void>((r) => server.listen(0, ENGINE_HOST, r))
      const enginePort = (server.address() as AddressInfo).port
      await mkdir(join(dir, `config-${i}`))
      const config = join(dir, `config-${i}`, 'gateway.yaml')
      await writeFile(config, singleEngineManifests(MODEL, ENGINE_HOST, enginePort))
      // A port the kernel had free a moment ago (other benches use fixed ones on this machine).
      const port = await freePort()
      const gw = await spawnBundle(
        b,
        benchGatewayArgs(config, port, [
          '--workers',
          '1',
          '--scrape',
          'off',
          ...(opts['gateway-arg'] ?? []),
        ]),
        /data plane listening/,
        // As deployed (cdk8s/dataplane-node.ts) unless --node-arg says otherwise.
        opts['node-arg'] ?? benchGatewayNodeArgs(),
      )
      procs.push(gw)
      const label = String.fromCharCode(65 + i)
      const pid = gw.child.pid ?? 0
      out(`${label}: ${b} (pid ${pid}, port ${port})`)
      targets.push({
        label,
        port,
        pid,
        counts,
        perRound: [],
        mainPerRound: [],
        chunks: 0,
        requests: 0,
        allNs: 0,
        mainNs: 0,
        slices: 0,
        user: 0,
        system: 0,
      })
    }
    out(
      `${STREAMS} streams open per data plane, ${TOKENS} tokens each (${TOKENS + 2} engine writes) every ${CADENCE} ms, windows of ${SECONDS} s, ${opts.alternate ? 'one data plane at a time' : 'every data plane loaded at once'}`,
    )
    // Warm-up, not counted: the JIT compiles the hot path while the first streams run.
    const warm = targets.map((t) => load(t.port, STREAMS, t.counts))
    await sleep(4000)
    await Promise.all(warm.map((l) => l.stop()))
    for (let round = 0; round < ROUNDS; round++) {
      if (opts.alternate) {
        // Alternate the order each round: drift on a shared machine hits both alike.
        const order = round % 2 === 0 ? targets : [...targets].reverse()
        for (const t of order) {
          const l = load(t.port, STREAMS, t.counts)
          await sleep(1500)
          const a = await snapshot(t)
          await sleep(SECONDS * 1000)
          const b = await snapshot(t)
          await l.stop()
          account(t, a, b, round, l.failed())
        }
        continue
      }
      // Together: the same moments of the machine for every data plane.
      const ls = targets.map((t) => load(t.port, STREAMS, t.counts))
      await sleep(1500)
      const a = await Promise.all(targets.map(snapshot))
      await sleep(SECONDS * 1000)
      const b = await Promise.all(targets.map(snapshot))
      await Promise.all(ls.map((l) => l.stop()))
      for (const [k, t] of targets.entries())
        account(t, a[k] as Snapshot, b[k] as Snapshot, round, ls[k]?.failed() ?? 0)
    }
    out('\ntotals:')
    for (const t of targets)
      out(
        `${t.label}: CPU ${(t.allNs / 1000 / t.chunks).toFixed(1)} µs/chunk (main ${(t.mainNs / 1000 / t.chunks).toFixed(1)}), ${(t.allNs / 1e6 / t.requests).toFixed(3)} ms/stream (main ${(t.mainNs / 1e6 / t.requests).toFixed(3)}), main wake-ups ${(t.slices / t.chunks).toFixed(2)}/chunk, system ${((100 * t.system) / (t.user + t.system)).toFixed(0)} % of the CPU`,
      )
    // Each round's windows are at the same moments (or next to each other): their ratio drifts
    // less than the figures themselves.
    const first = targets[0]
    const ratioLine = (name: string, xs: readonly number[], base: readonly number[]): string => {
      const ratios = xs.map((v, k) => v / (base[k] ?? Number.NaN))
      const sorted = [...ratios].sort((x, y) => x - y)
      return `${name} ${ratios.map((r) => r.toFixed(2)).join(' ')}, median ${sorted[Math.floor(sorted.length / 2)]?.toFixed(3)}`
    }
    for (const t of targets.slice(1)) {
      if (first === undefined) break
      out(`${t.label} ÷ ${first.label} per round, CPU per chunk:`)
      out(ratioLine('  all threads', t.perRound, first.perRound))
      out(ratioLine('  main thread', t.mainPerRound, first.mainPerRound))
    }
  } finally {
    for (const p of procs) await p.stop()
    for (const e of engines) {
      e.close()
      e.closeAllConnections()
    }
    await rm(dir, { recursive: true, force: true })
  }
}

await main()

// `npx tsx hack/hardening/idle-flood.ts [--connections 50000]`: issue 10's idle-connection target.
// A real gateway process (default client limits: 10 s headers timeout, --max-connections default)
// is flooded with idle TCP connections that never send a byte, from several loopback source
// addresses (one address has ~28,000 ephemeral ports), while a paced real client keeps sending
// chat completions and the config file is rewritten with a new route mid-flood.
// Pass: every real request answered 200, their p99 < 50 ms, the new route served, the gateway's
// file descriptors bounded, the gateway alive. Needs a high open-files limit for this process and
// the gateway (the gateway inherits it): `ulimit -n 200000` first (as root, also the hard limit).
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { availableParallelism, loadavg } from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { fmt, table, writeSection } from '../bench/report.js'
import {
  chatBody,
  cpuSeconds,
  HardeningError,
  jsonOrUndefined,
  metric,
  openFds,
  percentile,
  rssBytes,
  sleep,
} from './kit.js'
import { mb } from './report.js'
import { STACK_MODEL, startStack, UPSTREAM_MODEL } from './stack.js'

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '50000' },
    /** Idle connections opened per second (the flood's rate). */
    rate: { type: 'string', default: '5000' },
    /** Real client requests per second during the flood. */
    'client-rate': { type: 'string', default: '20' },
    /** The gateway's --max-connections (default: its own default, from the open-files limit). */
    'max-connections': { type: 'string' },
    /** A Node flag for the gateway process (repeatable; diagnosis: --trace-gc, --cpu-prof). */
    'gateway-node-arg': { type: 'string', multiple: true },
    /** Internal: run only the flood against host:port (a child process of the run). */
    'flood-child': { type: 'string' },
    /** Print the result only; without it the result is written to docs/benchmarks.md. */
    'no-write': { type: 'boolean', default: false },
  },
  strict: true,
})
const total = Number(values.connections)
const rate = Number(values.rate)
const clientRate = Number(values['client-rate'])
const maxConnections = values['max-connections']
const extraArgs = maxConnections !== undefined ? ['--max-connections', maxConnections] : []
const NET = '127.0.23'
/** Source addresses of the idle connections: 127.0.24.1 … (20,000 connections each at most). */
const PER_SOURCE = 20_000
const P99_TARGET_MS = 50
/** Idle sockets this process holds at most: its open-files limit less room for the rest. */
const MAX_CLIENT_SOCKETS = Math.max(1000, openFilesLimit() - 2000)
const RELOADED_MODEL = 'chat-reloaded'
/** Uncounted requests before the baseline (WARM_UP_RATE per second for WARM_UP_MS). */
const WARM_UP_MS = 3000
const WARM_UP_RATE = 100

function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return Number(m?.[1] ?? 1024)
}

/** A gauge's value in a Prometheus text exposition (0 when absent). */
function sample(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
  return m?.[1] !== undefined ? Number(m[1]) : 0
}

const log = (s: string): void => {
  process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`)
}

/** A paced client: one request every 1000/rate ms on a keep-alive pool, each timed. */
function pacedClient(url: string, ratePerS: number, signal: AbortSignal, model = STACK_MODEL) {
  const pool = new Pool(url, { connections: 16, headersTimeout: 30_000, bodyTimeout: 30_000 })
  const latencies: number[] = []
  const failures: string[] = []
  const inflight = new Set<Promise<void>>()
  let sent = 0
  const one = async (i: number): Promise<void> => {
    const t0 = performance.now()
    try {
      const res = await pool.request({
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: chatBody(model, i),
      })
      const text = await res.body.text()
      if (res.statusCode === 200) latencies.push(performance.now() - t0)
      else failures.push(`${res.statusCode} ${text.slice(0, 160)}`)
    } catch (e) {
      failures.push(e instanceof Error ? `${e.name} ${e.message}` : String(e))
    }
  }
  const done = (async () => {
    const start = performance.now()
    while (!signal.aborted) {
      const p = one(sent++)
      inflight.add(p)
      void p.finally(() => inflight.delete(p))
      // Open loop: the next request leaves on schedule whatever the last one is doing.
      const wait = start + (sent * 1000) / ratePerS - performance.now()
      if (wait > 0) await sleep(wait)
    }
    await Promise.all(inflight)
    await pool.close()
    return { sent, latencies, failures }
  })()
  return done
}

if (values['flood-child'] !== undefined) {
  const [host = '', port = ''] = values['flood-child'].split(':')
  const r = await flood(host, Number(port), total, rate, (p) =>
    process.stdout.write(`${JSON.stringify({ progress: p })}\n`),
  )
  process.stdout.write(`${JSON.stringify({ done: r })}\n`)
} else {
  await main()
}

async function main(): Promise<void> {
  const stack = await startStack({
    net: NET,
    engines: 2,
    upstreamTimeout: '30s',
    // The data plane's own defaults for client limits (10 s headers timeout, connection cap).
    gatewayArgs: ['--poll-interval', '200', ...extraArgs],
    gatewayNodeArgs: values['gateway-node-arg'] ?? [],
  })
  const { gw } = stack
  try {
    // Warm-up, not counted: a fresh gateway compiles its request path on the first few hundred
    // requests (the cold baseline's p99 was ~110 ms for a warm p50 of 5 ms); the target is about
    // the flood, so the baseline and the flood both see a warm gateway.
    const warmUp = new AbortController()
    setTimeout(() => warmUp.abort(), WARM_UP_MS)
    const warmed = await pacedClient(gw.url, WARM_UP_RATE, warmUp.signal)
    log(
      `warm-up (not counted): ${warmed.sent} requests in ${WARM_UP_MS / 1000} s, ${warmed.failures.length} failures`,
    )
    // A baseline: the same paced client without the flood.
    const warm = new AbortController()
    setTimeout(() => warm.abort(), 5000)
    const base = await pacedClient(gw.url, clientRate, warm.signal)
    log(
      `baseline: ${base.sent} requests, p50 ${percentile(base.latencies, 50).toFixed(1)} / p99 ${percentile(base.latencies, 99).toFixed(1)} ms, ${base.failures.length} failures`,
    )
    const rssStart = await rssBytes(gw.pid)
    const fdsStart = await openFds(gw.pid)
    const cpuStart = await cpuSeconds(gw.pid)
    const floodStarted = performance.now()

    const ac = new AbortController()
    const client = pacedClient(gw.url, clientRate, ac.signal)
    const conn = { attempted: 0, connected: 0, failed: 0, closedByGateway: 0, maxOpen: 0 }
    let fdsMax = fdsStart
    let rssMax = rssStart
    let gatewayConnsMax = 0
    /** The gateway's longest event-loop stall in each ~250 ms window of the flood. */
    const loopDelayMaxMs: number[] = []
    let scrapes = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        fdsMax = Math.max(fdsMax, await openFds(gw.pid).catch(() => 0))
        rssMax = Math.max(rssMax, await rssBytes(gw.pid).catch(() => 0))
        // One scrape per sample: each collect resets the event-loop delay histogram, so the max
        // read is the worst stall since the previous sample.
        const text = await fetch(`${gw.url}/metrics`)
          .then((r) => r.text())
          .catch(() => '')
        gatewayConnsMax = Math.max(
          gatewayConnsMax,
          sample(text, 'infer_gateway_client_connections'),
        )
        const lagMs = sample(text, 'nodejs_eventloop_lag_max_seconds') * 1000
        // The first scrape's window reaches back over the warm-up: not the flood's.
        if (text !== '' && scrapes++ > 0) loopDelayMaxMs.push(lagMs)
        await sleep(250)
      }
    })()

    let reloadAt = Number.NaN
    let reloadServedAt = Number.NaN
    const reload = (async () => {
      // Mid-flood (half the connections attempted), a route is added the way an operator edits.
      while (conn.attempted < total / 2) await sleep(50)
      const extra = JSON.stringify(
        {
          apiVersion: 'networking.matrixinfer.ai/v1alpha1',
          kind: 'ModelRoute',
          metadata: { name: 'reloaded' },
          spec: {
            modelName: RELOADED_MODEL,
            rules: [{ targetModels: [{ modelServerName: 'pool' }] }],
          },
        },
        null,
        2,
      )
      await writeFile(stack.configFile, `${stack.config}\n---\n${extra}\n`)
      reloadAt = performance.now()
      log(`config rewritten with route ${RELOADED_MODEL} (upstream ${UPSTREAM_MODEL})`)
      const pool = new Pool(gw.url, { connections: 1 })
      try {
        while (performance.now() - reloadAt < 60_000) {
          const res = await pool
            .request({
              path: '/v1/chat/completions',
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: chatBody(RELOADED_MODEL, 0),
            })
            .catch(() => undefined)
          const status = res?.statusCode
          await res?.body.text().catch(() => '')
          if (status === 200) {
            reloadServedAt = performance.now()
            return
          }
          await sleep(100)
        }
      } finally {
        await pool.close()
      }
    })()

    const flood = await runFloodChild(gw.host, gw.port, total, rate, (p) => {
      conn.attempted = p.attempted
      log(
        `${p.attempted} attempted, ${p.open} open in the flood process, gateway fds max ${fdsMax}`,
      )
    })
    Object.assign(conn, flood.conn)
    log(
      `flood done (${flood.throttledMs} ms waiting for the gateway to close some): ${flood.conn.attempted} attempted in ${(flood.ms / 1000).toFixed(1)} s; ${flood.leftOpen} not closed by the gateway within 30 s after`,
    )
    await reload
    const leftOpen = flood.leftOpen
    // Share of one core the gateway used from the flood's start until its last idle one closed.
    const gatewayCores =
      ((await cpuSeconds(gw.pid)) - cpuStart) / ((performance.now() - floodStarted) / 1000)
    ac.abort()
    const real = await client
    sampling = false
    await sampler
    const refused = async (reason: string): Promise<number> =>
      metric(gw.url, 'infer_gateway_client_connections_refused_total', { reason }).catch(() => 0)
    const p99 = percentile(real.latencies, 99)
    const result = {
      command: `ulimit -n 200000 && nice -n -15 npm run hardening:idle -- --connections ${total} --rate ${rate} --client-rate ${clientRate}${maxConnections !== undefined ? ` --max-connections ${maxConnections}` : ''}`,
      date: new Date().toISOString(),
      node: process.version,
      idle: {
        ...conn,
        leftOpenAfter30s: leftOpen,
        errorsByCode: flood.errorsByCode,
        leftStates: flood.leftStates,
        clientOpenFilesLimit: openFilesLimit(),
        throttledMs: flood.throttledMs,
      },
      gateway: {
        fdsStart,
        fdsMax,
        clientConnectionsMax: gatewayConnsMax,
        refusedAtCapEvicted: await refused('at_cap_evicted'),
        refusedAtCap503: await refused('at_cap_refused'),
        closedTimeout408: await refused('timeout'),
        rssStartMB: mb(rssStart),
        rssMaxMB: mb(rssMax),
        alive: !gw.exited(),
        cpuCoresDuringFlood: Math.round(gatewayCores * 100) / 100,
        // Real clients' p99 follows these: a request waits out whatever stall it lands in.
        eventLoopDelayMaxMs: Math.round(Math.max(0, ...loopDelayMaxMs)),
        eventLoopDelayWindowsOver50ms: loopDelayMaxMs.filter((x) => x > P99_TARGET_MS).length,
        eventLoopDelayWindows: loopDelayMaxMs.length,
      },
      warmUp: { requests: warmed.sent, failures: warmed.failures.length, counted: false },
      baseline: {
        requests: base.sent,
        p50: percentile(base.latencies, 50),
        p99: percentile(base.latencies, 99),
      },
      realClients: {
        requests: real.sent,
        ok: real.latencies.length,
        failures: real.failures.length,
        failureSamples: real.failures.slice(0, 10),
        p50: percentile(real.latencies, 50),
        p99,
        max: Math.max(...real.latencies),
      },
      reload: {
        servedAfterMs: Number.isNaN(reloadServedAt) ? null : Math.round(reloadServedAt - reloadAt),
      },
      load1: loadavg()[0] ?? Number.NaN,
      cores: availableParallelism(),
    }
    const pass =
      real.failures.length === 0 &&
      p99 < P99_TARGET_MS &&
      !Number.isNaN(reloadServedAt) &&
      result.gateway.alive &&
      leftOpen === 0
    process.stdout.write(`${JSON.stringify({ ...result, pass }, null, 2)}\n`)
    if (!values['no-write']) {
      const ms = (x: number): string => fmt(x, 1)
      const md = [
        '## Idle-connection flood (`npm run hardening:idle`)',
        '',
        `\`${result.command}\` — ${result.date.slice(0, 16).replace('T', ' ')} UTC, Node ${result.node}, ${result.cores} cores, load average (1 min) at the end ${fmt(result.load1, 2)}. A real data-plane process (default client limits) is flooded with idle TCP connections that never send a byte, from several loopback source addresses, in a process of its own, while a paced client sends chat completions (${result.warmUp.requests} warm-up requests not counted) and the config file is rewritten with a new route mid-flood. Target (issue 10): every real request answered, their p99 < ${P99_TARGET_MS} ms, the new route served, file descriptors bounded, the gateway alive.`,
        '',
        table(
          [
            'idle attempted',
            'closed by the gateway (408 / evicted at the cap)',
            'left open 30 s after',
            'gateway fds max',
            'real requests ok / sent',
            'real p50 / p99 / max ms',
            'before the flood p50 / p99 ms',
            'event-loop delay max ms',
            'reload served after ms',
            'RSS start → max MB',
            'result',
          ],
          [
            [
              result.idle.attempted,
              `${result.gateway.closedTimeout408} / ${result.gateway.refusedAtCapEvicted}`,
              leftOpen,
              result.gateway.fdsMax,
              `${result.realClients.ok} / ${result.realClients.requests}`,
              `${ms(result.realClients.p50)} / **${ms(p99)}** / ${ms(result.realClients.max)}`,
              `${ms(result.baseline.p50)} / ${ms(result.baseline.p99)}`,
              result.gateway.eventLoopDelayMaxMs,
              result.reload.servedAfterMs ?? 'not served',
              `${result.gateway.rssStartMB} → ${result.gateway.rssMaxMB}`,
              pass ? 'pass' : '**FAIL**',
            ],
          ],
        ),
      ].join('\n')
      await writeSection('hardening-idle', md, { ...result, pass })
    }
    if (!pass) process.exitCode = 1
  } finally {
    await stack.stop()
  }
}

interface FloodProgress {
  readonly attempted: number
  /** Idle connections the flood process holds open now. */
  readonly open: number
}

interface FloodResult {
  readonly conn: {
    attempted: number
    connected: number
    failed: number
    closedByGateway: number
    maxOpen: number
  }
  readonly errorsByCode: Record<string, number>
  readonly throttledMs: number
  readonly ms: number
  /** Idle connections the gateway had not closed 30 s after the last one was opened. */
  readonly leftOpen: number
  /**
   * If some were left: TCP states of the connections to the gateway's port on both ends (ss).
   * A connection the gateway never accepted (its accept queue overflowed: the handshake's last
   * ACK dropped) is ESTABLISHED on the client side only, SYN-RECV or absent on the gateway's.
   */
  readonly leftStates: Record<string, number>
}

function tcpStates(port: number): Record<string, number> {
  const out = execFileSync('ss', ['-tanH'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  const states: Record<string, number> = {}
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/)
    const [state, , , local, peer] = f
    if (state === undefined || local === undefined || peer === undefined) continue
    const side = local.endsWith(`:${port}`) ? 'gateway' : peer.endsWith(`:${port}`) ? 'client' : ''
    if (side === '') continue
    states[`${side} ${state}`] = (states[`${side} ${state}`] ?? 0) + 1
  }
  return states
}

/**
 * `rate` connections per second, each kept open (never writing) until the gateway closes it;
 * whatever it says is read (its 408/503 then FIN), or 'close' would never come.
 */
async function flood(
  host: string,
  port: number,
  n: number,
  perS: number,
  progress: (p: FloodProgress) => void,
): Promise<FloodResult> {
  const sockets = new Set<Socket>()
  const conn = { attempted: 0, connected: 0, failed: 0, closedByGateway: 0, maxOpen: 0 }
  const errorsByCode: Record<string, number> = {}
  let throttledMs = 0
  const started = performance.now()
  let reported = 0
  const report = (): void => progress({ attempted: conn.attempted, open: sockets.size })
  while (conn.attempted < n) {
    // This process's open-files limit: never hold more than it allows (the gateway closes idle
    // connections at its cap and on its headers timeout, so this only waits for those).
    while (sockets.size >= MAX_CLIENT_SOCKETS) {
      await sleep(20)
      throttledMs += 20
    }
    const batchEnd = Math.min(n, conn.attempted + Math.max(1, Math.round(perS / 20)))
    for (; conn.attempted < batchEnd; conn.attempted++) {
      const source = Math.floor(conn.attempted / PER_SOURCE) + 1
      const s = connect({ host, port, localAddress: `127.0.24.${source}` })
      sockets.add(s)
      s.resume()
      s.once('connect', () => {
        conn.connected++
        conn.maxOpen = Math.max(conn.maxOpen, sockets.size)
      })
      s.on('error', (e: NodeJS.ErrnoException) => {
        const code = e.code ?? e.name
        errorsByCode[code] = (errorsByCode[code] ?? 0) + 1
      })
      s.once('close', (hadError) => {
        sockets.delete(s)
        if (hadError) conn.failed++
        else conn.closedByGateway++
      })
    }
    const due = started + (conn.attempted * 1000) / perS - performance.now()
    await sleep(Math.max(due, 1))
    if (conn.attempted - reported >= 5000) {
      reported = conn.attempted
      report()
    }
  }
  report()
  const ms = performance.now() - started
  // Let the gateway's timeouts close what is left (10 s headers timeout by default).
  const closeBy = performance.now() + 30_000
  while (sockets.size > 0 && performance.now() < closeBy) await sleep(250)
  const leftOpen = sockets.size
  const leftStates = leftOpen > 0 ? tcpStates(port) : {}
  for (const s of sockets) s.destroy()
  return { conn, errorsByCode, throttledMs, ms, leftOpen, leftStates }
}

/**
 * The flood in a process of its own: the engines and the timed client live in this one, and
 * 50,000 sockets' callbacks on the same event loop would time them, not the gateway.
 */
async function runFloodChild(
  host: string,
  port: number,
  n: number,
  perS: number,
  progress: (p: FloodProgress) => void,
): Promise<FloodResult> {
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      '--flood-child',
      `${host}:${port}`,
      '--connections',
      String(n),
      '--rate',
      String(perS),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  const lines = createInterface({ input: child.stdout })
  let result: FloodResult | undefined
  for await (const line of lines) {
    const msg = jsonOrUndefined(line) as
      | { progress?: FloodProgress; done?: FloodResult }
      | undefined
    if (msg?.progress !== undefined) progress(msg.progress)
    if (msg?.done !== undefined) result = msg.done
  }
  if (result === undefined)
    throw new HardeningError('bad_response', 'the flood process ended without a result')
  return result
}

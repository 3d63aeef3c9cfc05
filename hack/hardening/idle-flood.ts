// `npx tsx hack/hardening/idle-flood.ts [--connections 50000]`: issue 10's idle-connection target.
// A real gateway process (default client limits: 10 s headers timeout, --max-connections default)
// is flooded with idle TCP connections that never send a byte, from several loopback source
// addresses (one address has ~28,000 ephemeral ports), while a paced real client keeps sending
// chat completions and the config file is rewritten with a new route mid-flood.
// Pass: every real request answered 200, their p99 < 50 ms, the new route served, the gateway's
// file descriptors bounded, the gateway alive. Needs a high open-files limit for this process and
// the gateway (the gateway inherits it): `ulimit -n 200000` first (as root, also the hard limit).
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { availableParallelism, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'
import { chatBody, metric, openFds, percentile, rssBytes, sleep } from './kit.js'
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

function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return Number(m?.[1] ?? 1024)
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

const stack = await startStack({
  net: NET,
  engines: 2,
  upstreamTimeout: '30s',
  // The data plane's own defaults for client limits (10 s headers timeout, connection cap).
  gatewayArgs: ['--poll-interval', '200', ...extraArgs],
})
const { gw } = stack
const sockets = new Set<Socket>()
try {
  // Warm-up and a baseline: the same paced client without the flood.
  const warm = new AbortController()
  setTimeout(() => warm.abort(), 5000)
  const base = await pacedClient(gw.url, clientRate, warm.signal)
  log(
    `baseline: ${base.sent} requests, p50 ${percentile(base.latencies, 50).toFixed(1)} / p99 ${percentile(base.latencies, 99).toFixed(1)} ms, ${base.failures.length} failures`,
  )
  const rssStart = await rssBytes(gw.pid)
  const fdsStart = await openFds(gw.pid)

  const ac = new AbortController()
  const client = pacedClient(gw.url, clientRate, ac.signal)
  const conn = { attempted: 0, connected: 0, failed: 0, closedByGateway: 0, maxOpen: 0 }
  const errorsByCode: Record<string, number> = {}
  let fdsMax = fdsStart
  let rssMax = rssStart
  let gatewayConnsMax = 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      fdsMax = Math.max(fdsMax, await openFds(gw.pid).catch(() => 0))
      rssMax = Math.max(rssMax, await rssBytes(gw.pid).catch(() => 0))
      gatewayConnsMax = Math.max(
        gatewayConnsMax,
        await metric(gw.url, 'infer_gateway_client_connections').catch(() => 0),
      )
      await sleep(250)
    }
  })()

  // The flood: `rate` connections per second, each kept open (never writing) until the gateway
  // closes it; read whatever it says (its 408/503 then FIN), or 'close' would never come.
  const started = performance.now()
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

  let throttledMs = 0
  while (conn.attempted < total) {
    // This process has the same open-files limit as the gateway: never hold more than it allows
    // (the gateway closes idle connections at its cap, so this only waits for its evictions).
    while (sockets.size >= MAX_CLIENT_SOCKETS) {
      await sleep(20)
      throttledMs += 20
    }
    const batchEnd = Math.min(total, conn.attempted + Math.max(1, Math.round(rate / 20)))
    for (; conn.attempted < batchEnd; conn.attempted++) {
      const source = Math.floor(conn.attempted / PER_SOURCE) + 1
      const s = connect({ host: gw.host, port: gw.port, localAddress: `127.0.24.${source}` })
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
    const due = started + (conn.attempted * 1000) / rate - performance.now()
    await sleep(Math.max(due, 1))
    if (conn.attempted % 10_000 < Math.round(rate / 20))
      log(
        `${conn.attempted} attempted, ${sockets.size} open here, gateway fds ${await openFds(gw.pid).catch(() => -1)}`,
      )
  }
  log(
    `flood done (${throttledMs} ms waiting for the gateway to close some): ${conn.attempted} attempted in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  )
  await reload
  // Let the gateway's timeouts close what is left (10 s headers timeout by default).
  const closeBy = performance.now() + 30_000
  while (sockets.size > 0 && performance.now() < closeBy) await sleep(250)
  const leftOpen = sockets.size
  ac.abort()
  const real = await client
  sampling = false
  await sampler
  const refused = async (reason: string): Promise<number> =>
    metric(gw.url, 'infer_gateway_client_connections_refused_total', { reason }).catch(() => 0)
  const p99 = percentile(real.latencies, 99)
  const result = {
    command: `ulimit -n 200000 && nice -n -15 npx tsx hack/hardening/idle-flood.ts --connections ${total} --rate ${rate} --client-rate ${clientRate}${maxConnections !== undefined ? ` --max-connections ${maxConnections}` : ''}`,
    date: new Date().toISOString(),
    node: process.version,
    idle: {
      ...conn,
      leftOpenAfter30s: leftOpen,
      errorsByCode,
      clientOpenFilesLimit: openFilesLimit(),
      throttledMs,
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
    },
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
    load1: loadavg()[0],
    cores: availableParallelism(),
  }
  const pass =
    real.failures.length === 0 &&
    p99 < P99_TARGET_MS &&
    !Number.isNaN(reloadServedAt) &&
    result.gateway.alive &&
    leftOpen === 0
  process.stdout.write(`${JSON.stringify({ ...result, pass }, null, 2)}\n`)
  if (!pass) process.exitCode = 1
} finally {
  for (const s of sockets) s.destroy()
  await stack.stop()
}

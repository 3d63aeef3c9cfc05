// `npm run bench:filters`: what authentication and rate limiting cost per request. The filters run
// in-process exactly as the request path calls them (authenticate → authorize → admit → settle)
// against a compiled snapshot, timed one request at a time (p50/p99 of the per-request cost) and,
// for Redis, also with many requests in flight (what a loaded replica sees). Redis is a real
// redis-server on loopback (append-only, fsync on every write — the durable configuration the
// global-limit tests use).
import { parseArgs } from 'node:util'
import { SignJWT } from 'jose'
import { Registry } from 'prom-client'
import { compileSnapshot } from '../../api/compile.js'
import type { RoutingSnapshot, SnapshotRoute } from '../../api/snapshot.js'
import { sha256Hex } from '../../dataplane/filters/auth/api-keys.js'
import { Filters } from '../../dataplane/filters/index.js'
import { BackendUnavailableError } from '../../dataplane/filters/ratelimit/backend.js'
import { bucket } from '../../dataplane/filters/ratelimit/backend-contract.js'
import { RedisBackend } from '../../dataplane/filters/ratelimit/redis.js'
import { tokenizersSettled } from '../../dataplane/filters/ratelimit/tokens.js'
import { staticSecrets } from '../../dataplane/filters/secrets.js'
import { silentLogger } from '../../dataplane/log.js'
import { signingKey } from '../../test/helpers/filters.js'
import { startRedis } from '../../test/helpers/redis-server.js'
import { percentile } from './load.js'
import { fmt, table, writeSection } from './report.js'

const { values: opts } = parseArgs({
  options: {
    iterations: { type: 'string', default: '20000' },
    'redis-iterations': { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '32' },
    'no-write': { type: 'boolean', default: false },
  },
})
const N = Number(opts.iterations)
const NR = Number(opts['redis-iterations'])
const C = Number(opts.concurrency)

const API = 'networking.matrixinfer.ai/v1alpha1'
const KEY = 'sk-bench-0123456789abcdef'

function snapshot(policySpec: Record<string, unknown>, model = 'bench-model'): RoutingSnapshot {
  return compileSnapshot({
    version: 1,
    endpoints: {},
    servers: [
      {
        apiVersion: API,
        kind: 'ModelServer',
        metadata: { name: 's' },
        spec: {
          inferenceEngine: 'vLLM',
          workloadSelector: { matchLabels: { a: 'b' } },
          workloadPort: { port: 8000 },
        },
      },
    ],
    routes: [
      {
        apiVersion: API,
        kind: 'ModelRoute',
        metadata: { name: 'r' },
        spec: {
          modelName: model,
          rules: [{ targetModels: [{ modelServerName: 's' }] }],
          rateLimit: { inputTokensPerUnit: 1_000_000_000, unit: 'minute' },
        },
      },
    ],
    policies: [
      { apiVersion: API, kind: 'GatewayPolicy', metadata: { name: 'gw' }, spec: policySpec },
    ],
  }).snapshot
}

const limited = {
  tiers: [
    {
      name: 'gold',
      rate: [
        { requests: 1_000_000_000, per: 'minute' },
        { tokens: 1_000_000_000, per: 'minute' },
      ],
      budget: [{ tokens: 1_000_000_000, per: 'day' }],
    },
  ],
}

const body = (model: string) => ({
  model,
  messages: [
    { role: 'system', content: 'You are a helpful assistant that answers briefly.' },
    {
      role: 'user',
      content:
        'Explain in two sentences why token rate limits protect shared GPUs from noisy neighbours.',
    },
  ],
  max_tokens: 64,
})

interface Case {
  readonly name: string
  readonly filters: Filters
  readonly route: SnapshotRoute
  readonly model: string
  readonly headers: Record<string, string>
}

/** One request through the filters, as app.ts calls them; resolves to its cost in µs. */
async function once(c: Case, subject: number): Promise<number> {
  const t0 = performance.now()
  const header = (n: string) => c.headers[n]
  const id = await c.filters.authenticate({
    header,
    remoteAddress: `10.0.${(subject >> 8) & 255}.${subject & 255}`,
  })
  c.filters.authorize(id, c.route, c.model)
  const a = await c.filters.admit({
    route: c.route,
    identity: id,
    api: 'chat',
    model: c.model,
    body: body(c.model),
  })
  a?.settle({ status: 200, usage: { promptTokens: 40, completionTokens: 64 } })
  return (performance.now() - t0) * 1000
}

async function sequential(c: Case, n: number): Promise<number[]> {
  for (let i = 0; i < Math.min(2000, n); i++) await once(c, i)
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await once(c, i))
  return out.sort((a, b) => a - b)
}

async function concurrent(
  c: Case,
  n: number,
  inFlight: number,
): Promise<{ lat: number[]; rps: number }> {
  const lat: number[] = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) lat.push(await once(c, next++))
    }),
  )
  const rps = (n / (performance.now() - t0)) * 1000
  return { lat: lat.sort((a, b) => a - b), rps }
}

function make(
  name: string,
  snap: RoutingSnapshot,
  headers: Record<string, string>,
  model = 'bench-model',
): Case {
  const filters = new Filters({
    registry: new Registry(),
    log: silentLogger,
    secrets: staticSecrets({ 'key.bench': sha256Hex(KEY) }),
  })
  filters.onSnapshot(snap)
  const route = snap.routes[0]
  if (route === undefined) throw new Error('no route')
  return { name, filters, route, model, headers }
}

async function main(): Promise<void> {
  const apiKeys = [{ name: 'bench', secretKey: 'key.bench', tenant: 'bench', tier: 'gold' }]
  const jwk = await signingKey('bench-1', 'ES256')
  const jwt = await new SignJWT({ iss: 'https://idp.bench', aud: 'gw', sub: 'u', plan: 'gold' })
    .setProtectedHeader({ alg: 'ES256', kid: 'bench-1' })
    .setExpirationTime('1h')
    .sign(jwk.privateKey)
  const jwtPolicy = {
    jwt: [
      {
        name: 'idp',
        issuer: 'https://idp.bench',
        audiences: ['gw'],
        jwks: { keys: [jwk.publicJwk] },
        claims: { tier: 'plan' },
      },
    ],
  }
  const bearer = { authorization: `Bearer ${KEY}` }
  const local: Case[] = [
    make('API key only (no limits)', snapshot({ authentication: { apiKeys } }), bearer),
    make(
      'API key + limits, local (estimate)',
      snapshot({ authentication: { apiKeys }, ...limited }),
      bearer,
    ),
    make(
      'API key + limits, local (tiktoken o200k)',
      snapshot({ authentication: { apiKeys }, ...limited }, 'gpt-4o-mini'),
      bearer,
      'gpt-4o-mini',
    ),
    make(
      'JWT ES256 (verified once, cached) + limits, local',
      snapshot({ authentication: jwtPolicy, ...limited }),
      {
        authorization: `Bearer ${jwt}`,
      },
    ),
  ]
  await tokenizersSettled()
  const rows: (string | number)[][] = []
  const data: Record<string, unknown> = {}
  for (const c of local) {
    const lat = await sequential(c, N)
    const r = { p50: percentile(lat, 50), p99: percentile(lat, 99), n: lat.length }
    data[c.name] = r
    rows.push([c.name, 1, fmt(r.p50, 1), fmt(r.p99, 1), '—'])
    await c.filters.close()
  }

  for (const fsync of ['always', 'everysec'] as const) {
    const redis = await startRedis('127.0.0.1', { appendfsync: fsync })
    try {
      const name = `API key + limits, Redis (loopback, fsync ${fsync})`
      const c = make(
        name,
        snapshot({
          authentication: { apiKeys },
          ...limited,
          rateLimit: {
            backend: 'redis',
            redis: { address: redis.address, timeout: '200ms' },
            failureMode: 'closed',
          },
        }),
        bearer,
      )
      const seq = await sequential(c, NR)
      const s = { p50: percentile(seq, 50), p99: percentile(seq, 99), n: seq.length }
      data[`${name}, 1 in flight`] = s
      rows.push([name, 1, fmt(s.p50, 1), fmt(s.p99, 1), '—'])
      const con = await concurrent(c, NR * 2, C)
      const k = {
        p50: percentile(con.lat, 50),
        p99: percentile(con.lat, 99),
        n: con.lat.length,
        rps: con.rps,
      }
      data[`${name}, ${C} in flight`] = k
      rows.push([name, C, fmt(k.p50, 1), fmt(k.p99, 1), fmt(con.rps, 0)])
      for (const b of c.filters.redisBackends) await b.drain()
      await c.filters.close()
    } finally {
      await redis.stop()
    }
  }

  const paused = await pausedRedis()
  data['Redis paused (SIGSTOP), fail closed'] = paused

  const md = `## Filters: authentication + rate limits

Per-request cost of the filters as the request path calls them (authenticate → authorize →
reserve → settle), in-process, in **µs**. Limits: a route limit (Kthena shape) plus a tier with
requests/min, tokens/min and a daily token budget — four counters in three scopes. Input tokens
are counted per request (the estimate, or js-tiktoken's o200k for an OpenAI-family name); the
JWT case verifies the signature once and then hits the verified-token cache. Redis is a real
redis-server on loopback with AOF, once with \`appendfsync always\` (every write on disk before the
reply: nothing lost on kill -9) and once with \`everysec\`; each request makes one script call to
reserve and one (not awaited) to settle. Targets: ≤ 50 µs local, ≤ 1 ms p99 with Redis.

${table(['case', 'in flight', 'p50 µs', 'p99 µs', 'req/s'], rows)}

**A hung Redis** (\`SIGSTOP\`, connections open, nothing answers), \`timeout: ${PAUSE_TIMEOUT_MS}ms\`,
fail closed: time until a reservation is refused, each one made while the previous request's
settlement still waits on the paused server (as traffic does). ${paused.n} reservations: p50
${fmt(paused.p50Ms, 1)} ms, max ${fmt(paused.maxMs, 1)} ms = **${fmt(paused.maxMs / PAUSE_TIMEOUT_MS, 2)}× the timeout**
(the documented bound is one timeout per reservation, not one per queued command).

${N} sequential requests per local case (after 2000 warm-up), ${NR} sequential and ${NR * 2} at ${C} in flight for Redis.
Node ${process.version}, 2 cores. Run: \`npm run bench:filters\`.
`
  process.stdout.write(md)
  if (!opts['no-write']) {
    const path = await writeSection('filters', md, { node: process.version, cases: data })
    process.stdout.write(`\nwritten to ${path}\n`)
  }
}

const PAUSE_TIMEOUT_MS = 100

/** Refusal latency against a paused Redis (docs/auth-and-limits.md: one timeout in total). */
async function pausedRedis(): Promise<{ n: number; p50Ms: number; maxMs: number }> {
  const redis = await startRedis('127.0.0.1', { appendfsync: 'everysec' })
  const b = new RedisBackend({
    address: redis.address,
    keyPrefix: 'igw',
    timeoutMs: PAUSE_TIMEOUT_MS,
    log: silentLogger,
  })
  const took: number[] = []
  try {
    await new Promise<void>((r) =>
      b.client.status === 'ready' ? r() : b.client.once('ready', () => r()),
    )
    const op = bucket('paused', 'x', 1000, 60_000, 1)
    await b.reserve([op])
    redis.pause()
    for (let i = 0; i < 20; i++) {
      b.adjust([{ ...op, cost: 1 }])
      const t0 = performance.now()
      const refused = await b.reserve([op]).then(
        () => false,
        (e: unknown) => e instanceof BackendUnavailableError,
      )
      if (!refused) throw new Error('a reservation against a paused Redis did not fail closed')
      took.push(performance.now() - t0)
    }
  } finally {
    redis.resume()
    await b.close()
    await redis.stop()
  }
  took.sort((a, c) => a - c)
  return { n: took.length, p50Ms: percentile(took, 50), maxMs: took[took.length - 1] ?? 0 }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exitCode = 1
})

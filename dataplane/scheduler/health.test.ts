// Scheduler-level health: the panic threshold, aggregated health logs, and engine-restart resets
// reaching the plugins (through the real scraper against a loopback /metrics server).
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { SnapshotScheduler } from '../../api/snapshot.js'
import { memoryLogger } from '../log.js'
import type { DispatchOutcome, ExplainSink } from '../picker.js'
import type { PrefixCachePlugin } from './plugins/prefix-cache.js'
import { Scheduler } from './scheduler.js'
import { DEFAULT_HEALTH } from './state.js'
import { chat, endpoint, pickContext, seeded, server, snapshot } from './testkit.js'

const refused: DispatchOutcome = { status: 0, failure: 'connect', durationMs: 1 }
const ok: DispatchOutcome = { status: 200, durationMs: 1 }

function fleet(
  n: number,
  opts: { panicThreshold?: number; log?: ReturnType<typeof memoryLogger> } = {},
) {
  let now = 1000
  const s = new Scheduler({
    scrape: false,
    now: () => now,
    random: seeded(3),
    ...(opts.panicThreshold !== undefined
      ? { health: { panicThreshold: opts.panicThreshold } }
      : {}),
    ...(opts.log !== undefined ? { log: opts.log } : {}),
  })
  const eps = Array.from({ length: n }, (_, i) => endpoint(`pod-${i}`, 20 + i))
  const srv = server(eps, { attempts: n })
  s.onSnapshot(snapshot([srv]))
  const complete = (i: number, o: DispatchOutcome) => {
    const ctx = pickContext(srv, chat('x'))
    const ep = eps[i] as (typeof eps)[number]
    s.onDispatch(ctx, ep)
    s.onComplete(ctx, ep, o)
  }
  const eject = (i: number) => {
    complete(i, refused)
    complete(i, refused)
  }
  const pick = () => {
    const sink: ExplainSink = {}
    const names = s.pick(pickContext(srv, chat('x'), {}, { explain: sink })).map((e) => e.name)
    return { names: names.sort(), explain: sink.text ?? '' }
  }
  return { s, eps, srv, eject, complete, pick, advance: (ms: number) => (now += ms) }
}

describe('panic threshold', () => {
  it('routes around ejected endpoints while at least half are healthy, and ignores ejection below that', () => {
    const f = fleet(4)
    f.eject(0)
    expect(f.pick().names).toEqual(['pod-1', 'pod-2', 'pod-3'])
    f.eject(1)
    const half = f.pick()
    expect(half.names).toEqual(['pod-2', 'pod-3'])
    expect(half.explain).toContain(' ejected=2')
    expect(half.explain).not.toContain('panic')
    // 1 of 4 healthy: piling everything on pod-3 would be worse than trying them all.
    f.eject(2)
    const panic = f.pick()
    expect(panic.names).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3'])
    expect(panic.explain).toContain('panic=3/4-ejected')
    f.eject(3)
    expect(f.pick().explain).toContain('panic=all-ejected')
  })

  it('panicThreshold 0 keeps the old rule: panic only when every endpoint is ejected', () => {
    const f = fleet(4, { panicThreshold: 0 })
    f.eject(0)
    f.eject(1)
    f.eject(2)
    expect(f.pick().names).toEqual(['pod-3'])
    f.eject(3)
    expect(f.pick().names).toHaveLength(4)
  })
})

describe('health log', () => {
  it('logs one ejection and one readmission per episode, counting re-ejections instead of logging them', () => {
    const log = memoryLogger()
    const f = fleet(2, { log })
    f.eject(0)
    // Unscraped: each failed probe after the period re-ejects for longer.
    for (let k = 0; k < 5; k++) {
      f.advance(DEFAULT_HEALTH.maxEjectionMs)
      f.complete(0, refused)
    }
    f.advance(DEFAULT_HEALTH.maxEjectionMs)
    f.complete(0, ok)
    const lines = log.records.filter((r) => r.msg.startsWith('endpoint '))
    expect(lines.map((r) => r.msg)).toEqual(['endpoint ejected', 'endpoint readmitted'])
    expect(lines[0]?.fields).toMatchObject({ endpoint: 'pod-0', reason: 'connect' })
    expect(lines[1]?.fields).toMatchObject({ endpoint: 'pod-0', ejections: 6 })
  })

  it('an endpoint flapping within the quiet period logs once, then reports the episodes it skipped', () => {
    const log = memoryLogger()
    const f = fleet(2, { log })
    for (let k = 0; k < 10; k++) {
      f.eject(0)
      f.advance(DEFAULT_HEALTH.baseEjectionMs)
      f.complete(0, ok)
      f.advance(1000)
    }
    expect(log.records.filter((r) => r.msg === 'endpoint ejected')).toHaveLength(1)
    f.advance(30_000)
    f.eject(0)
    const ejected = log.records.filter((r) => r.msg === 'endpoint ejected')
    expect(ejected).toHaveLength(2)
    expect(ejected[1]?.fields).toMatchObject({ episodesNotLogged: 9 })
  })
})

describe('engine restart reaches the plugins', () => {
  const servers: Server[] = []
  const schedulers: Scheduler[] = []
  afterEach(async () => {
    for (const s of schedulers.splice(0)) await s.close()
    for (const srv of servers.splice(0)) {
      srv.closeAllConnections()
      await new Promise<void>((r) => srv.close(() => r()))
    }
  })

  it('a new process start time on /metrics drops the prefix index and bumps the generation', async () => {
    let startTime = 1_764_000_000.25
    let prompts = 5000
    const metricsServer = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      res.end(
        [
          '# TYPE process_start_time_seconds gauge',
          `process_start_time_seconds ${startTime}`,
          '# TYPE vllm:num_requests_running gauge',
          'vllm:num_requests_running{engine="0",model_name="m"} 0.0',
          '# TYPE vllm:num_requests_waiting gauge',
          'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0',
          '# TYPE vllm:prompt_tokens_total counter',
          `vllm:prompt_tokens_total{engine="0",model_name="m"} ${prompts}`,
          '',
        ].join('\n'),
      )
    })
    servers.push(metricsServer)
    await new Promise<void>((r) => metricsServer.listen(0, '127.0.0.31', r))
    const port = (metricsServer.address() as AddressInfo).port
    const resets: string[] = []
    const profile: SnapshotScheduler = { plugins: [{ name: 'prefix-cache', weight: 1, args: {} }] }
    const log = memoryLogger()
    const s = new Scheduler({ scrape: { intervalMs: 20 }, log })
    schedulers.push(s)
    const ep = { ...endpoint('pod-r', 31), port }
    const srv = server([ep], { scheduler: profile })
    s.onSnapshot(snapshot([srv]))
    const st = s.state(`127.0.0.31:${port}`)
    const plugin = s.plugins(srv.key)[0] as PrefixCachePlugin
    const wrapped = plugin.onEndpointReset?.bind(plugin)
    plugin.onEndpointReset = (e) => {
      resets.push(e.name)
      wrapped?.(e)
    }
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10))
      expect(cond()).toBe(true)
    }
    await until(() => st?.metrics !== undefined)
    const ctx = pickContext(srv, chat('A long shared system prompt. '.repeat(40)))
    s.onDispatch(ctx, ep)
    s.onComplete(ctx, ep, ok)
    expect(plugin.stats().blocksIndexed).toBeGreaterThan(0)
    // Counters only grow: no restart.
    prompts += 100
    await new Promise((r) => setTimeout(r, 100))
    expect(st?.generation).toBe(0)
    // Same address, new process.
    startTime += 42
    await until(() => st?.generation === 1)
    expect(resets).toEqual(['pod-r'])
    expect(plugin.stats().blocksIndexed).toBe(0)
    expect(st?.lastRestart).toBe('start_time')
    expect(log.records.find((r) => r.msg === 'engine restart detected')?.fields).toMatchObject({
      endpoint: 'pod-r',
      signal: 'start_time',
    })
    // Counters going backwards (no start time change) is a restart too.
    prompts = 10
    await until(() => st?.generation === 2)
    expect(st?.lastRestart).toBe('counter_reset')
  })
})

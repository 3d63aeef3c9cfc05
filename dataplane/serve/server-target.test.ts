// One self-hosted target on real loopback engines: a retryable status the rule falls back on goes
// to the next target (drained, reported to the picker); the last target's status goes to the
// client as the engine wrote it; the plain path's explain header and accounting.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { SnapshotEndpoint } from '../../api/snapshot.js'
import { endpoint, route, server } from '../../test/helpers/snapshot.js'
import { fetchInbound } from '../inbound.js'
import { silentLogger } from '../log.js'
import { GatewayMetrics } from '../metrics.js'
import { type DispatchOutcome, type PickContext, RoundRobinPicker } from '../picker.js'
import { ProviderCredentials } from '../providers/credentials.js'
import { ProviderTransport } from '../providers/transport.js'
import { UpstreamPool } from '../proxy/upstream-pool.js'
import type { ChainDecision } from '../router.js'
import { serveChain } from './chain.js'
import { Outcome } from './outcome.js'
import { EXPLAIN_HEADER } from './server-target.js'

const engines: Server[] = []
afterEach(async () => {
  await Promise.all(engines.splice(0).map((s) => new Promise((r) => s.close(r))))
})

/** An engine answering every request with `status` and a small JSON body naming itself. */
async function engine(host: string, status: number): Promise<SnapshotEndpoint> {
  const s = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ from: host, usage: { prompt_tokens: 3, completion_tokens: 1 } }))
    })
  })
  engines.push(s)
  await new Promise<void>((r) => s.listen(0, host, r))
  return endpoint(host, host, (s.address() as AddressInfo).port)
}

/** A picker that records what it was told, explaining its picks. */
class RecordingPicker extends RoundRobinPicker {
  readonly completed: [string, DispatchOutcome][] = []
  override pick(ctx: PickContext): readonly SnapshotEndpoint[] {
    if (ctx.explain) ctx.explain.text = `pick=${ctx.server.name}`
    return super.pick(ctx)
  }
  onComplete(_ctx: PickContext, ep: SnapshotEndpoint, o: DispatchOutcome): void {
    this.completed.push([ep.name, o])
  }
}

async function serve(targets: ChainDecision['targets'], fallback: boolean, explain = false) {
  const r = route('r', { modelName: 'm', rules: [{ name: 'x', targets: [] }] })
  const d: ChainDecision = {
    route: r,
    rule: r.rules[0] ?? { name: 'x', targets: [] },
    isLora: false,
    targets,
    fallbackOn: fallback ? new Set(['5xx']) : new Set(),
    plain: !fallback,
  }
  const metrics = new GatewayMetrics()
  const log: Record<string, unknown>[] = []
  const out = new Outcome(
    { metrics, accessLog: (e) => log.push({ ...e }) },
    'req-1',
    '/v1/chat/completions',
    'chat',
    performance.now(),
  )
  out.model = 'm'
  out.modelLabel = 'm'
  const picker = new RecordingPicker()
  const raw = new TextEncoder().encode(JSON.stringify({ model: 'm', messages: [] }))
  const res = await serveChain(
    d,
    {
      path: '/v1/chat/completions',
      api: 'chat',
      model: 'm',
      body: { model: 'm', messages: [] },
      raw,
      inbound: fetchInbound(new Request('http://gw/v1', { method: 'POST', body: raw })),
      ...(explain ? { explain: true } : {}),
    },
    out,
    {
      pool: new UpstreamPool(),
      picker,
      metrics,
      transport: new ProviderTransport(),
      credentials: new ProviderCredentials(undefined, silentLogger),
      random: () => 0,
    },
  )
  const inflight = (await metrics.inflight.get()).values[0]?.value
  return { res, body: (await res.json()) as { from?: string }, log, picker, inflight, metrics }
}

const noRetry = { attempts: 0 }

describe('serverTarget', () => {
  it('a 503 the rule falls back on goes to the next target, reported as retry_status', async () => {
    const bad = server('bad', [await engine('127.0.0.41', 503)], { retry: noRetry })
    const good = server('good', [await engine('127.0.0.42', 200)], { retry: noRetry })
    const t = await serve(
      [
        { kind: 'server', server: bad, upstreamModel: 'm' },
        { kind: 'server', server: good, upstreamModel: 'm' },
      ],
      true,
    )
    expect(t.res.status).toBe(200)
    expect(t.body.from).toBe('127.0.0.42')
    expect(t.picker.completed.map(([ep, o]) => [ep, o.status, o.failure])).toEqual([
      ['127.0.0.41', 503, 'retry_status'],
      ['127.0.0.42', 200, undefined],
    ])
    expect(t.inflight).toBe(0)
    expect(t.log).toHaveLength(1)
    expect(t.log[0]).toMatchObject({
      status: 200,
      target_kind: 'server',
      server: good.key,
      endpoint: `127.0.0.42:${good.endpoints[0]?.port}`,
      prompt_tokens: 3,
      fallbacks: [{ target: `server:${bad.key}`, reason: '5xx', status: 503 }],
    })
  })

  it("without fallback the engine's 503 reaches the client as it is; explain header set", async () => {
    const bad = server('bad', [await engine('127.0.0.41', 503)], { retry: noRetry })
    const t = await serve([{ kind: 'server', server: bad, upstreamModel: 'm' }], false, true)
    expect(t.res.status).toBe(503)
    expect(t.body.from).toBe('127.0.0.41')
    expect(t.res.headers.get(EXPLAIN_HEADER)).toBe('pick=bad')
    expect(t.res.headers.get('x-request-id')).toBe('req-1')
    expect(t.log[0]).toMatchObject({ status: 503, server: bad.key })
    expect(t.log[0]?.['target_kind']).toBeUndefined()
    const req = (await t.metrics.requests.get()).values.map((v) => [
      v.labels['status_class'],
      v.value,
    ])
    expect(req).toEqual([['5xx', 1]])
  })
})

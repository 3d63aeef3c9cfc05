import { describe, expect, it } from 'vitest'
import { endpoint, route, server } from '../../test/helpers/snapshot.js'
import type { AccessLogEntry } from '../access-log.js'
import { errors } from '../errors.js'
import { GatewayMetrics } from '../metrics.js'
import type { ChainDecision } from '../router.js'
import { clientClosed, Outcome } from './outcome.js'

const s = server('s', [endpoint('s0', '127.0.0.2', 8000)])
const r = route('r', {
  modelName: 'm',
  rules: [{ name: 'x', targets: [{ server: s.key, weight: 1 }] }],
})

function setup(plain: boolean) {
  const metrics = new GatewayMetrics()
  const log: Record<string, unknown>[] = []
  const settled: number[] = []
  const observed: number[] = []
  let unsubscribed = 0
  const out = new Outcome(
    {
      metrics,
      accessLog: (e: AccessLogEntry) => log.push({ ...e }),
      observe: (_id, status) => observed.push(status),
    },
    'req-1',
    '/v1/chat/completions',
    'chat',
    performance.now(),
  )
  const d: ChainDecision = {
    route: r,
    rule: r.rules[0] ?? { name: 'x', targets: [] },
    isLora: false,
    targets: [{ kind: 'server', server: s, upstreamModel: 'm' }],
    fallbackOn: new Set(),
    plain,
  }
  out.model = 'm'
  out.modelLabel = 'm'
  out.decision = d
  out.target = d.targets[0]
  out.limits = { settle: (o) => settled.push(o.status), streamFilter: () => undefined }
  out.onRelease = () => {
    unsubscribed++
  }
  const inflight = async () => (await metrics.inflight.get()).values[0]?.value
  const requests = async () =>
    (await metrics.requests.get()).values.map((v) => [
      v.labels['status_class'],
      v.labels['code'],
      v.value,
    ])
  return { out, metrics, log, settled, observed, inflight, requests, unsub: () => unsubscribed }
}

describe('Outcome', () => {
  it('finish records once and releases once, whatever runs after it', async () => {
    const t = setup(true)
    expect(await t.inflight()).toBe(1)
    t.out.finish({
      status: 200,
      code: '',
      stream: true,
      bytes: 10,
      firstByteMs: 3,
      usage: { promptTokens: 4, completionTokens: 6 },
      endpoint: '127.0.0.2:8000',
      attempts: 1,
      headersMs: 2,
    })
    // The app's finally and a late failure change nothing.
    t.out.release()
    const res = t.out.fail(errors.internal())
    expect(res.status).toBe(500)
    expect(res.headers.get('x-request-id')).toBe('req-1')
    expect(await t.inflight()).toBe(0)
    expect(t.unsub()).toBe(1)
    expect(t.settled[0]).toBe(200)
    expect(t.observed).toEqual([200])
    expect(await t.requests()).toEqual([['2xx', '', 1]])
    expect(t.log).toHaveLength(1)
    expect(t.log[0]).toMatchObject({
      status: 200,
      route: r.key,
      rule: 'x',
      server: s.key,
      upstream_model: 'm',
      endpoint: '127.0.0.2:8000',
      prompt_tokens: 4,
      completion_tokens: 6,
      stream: true,
    })
    // A plain rule is logged without the chain's fields.
    expect(t.log[0]?.['target_kind']).toBeUndefined()
    const tokens = (await t.metrics.tokens.get()).values.map((v) => [v.labels['type'], v.value])
    expect(tokens).toEqual([
      ['input', 4],
      ['output', 6],
    ])
  })

  it('fail settles the reservation as nothing generated; a chain names its target kind', async () => {
    const t = setup(false)
    t.out.tried.push({ target: 'server:x', reason: '5xx', status: 503, code: 'upstream_error' })
    const res = t.out.fail(errors.noReadyEndpoint(s.key))
    expect(res.status).toBe(503)
    t.out.fail(errors.internal())
    expect(t.settled).toEqual([0])
    expect(await t.inflight()).toBe(0)
    expect(await t.requests()).toEqual([['5xx', 'no_ready_endpoint', 1]])
    expect(t.log).toHaveLength(1)
    expect(t.log[0]).toMatchObject({
      status: 503,
      target_kind: 'server',
      fallbacks: [{ target: 'server:x', reason: '5xx' }],
      error_code: 'no_ready_endpoint',
    })
  })

  it('writes the access-log fields in one fixed order, the optional ones only when known', () => {
    const t = setup(false)
    t.out.identity = {
      method: 'api-key',
      subject: 'key:team-a',
      tenant: 'team-a',
      tier: 'gold',
      roles: [],
      source: 'team-a',
    }
    t.out.tried.push({ target: 'server:x', reason: '5xx', status: 503, code: 'upstream_error' })
    t.out.spill = { reason: 'queue', detail: 'waiting 9' }
    t.out.finish({
      status: 200,
      code: 'upstream_cut',
      stream: true,
      bytes: 10,
      firstByteMs: 3.00049,
      usage: { promptTokens: 4, completionTokens: 6, cachedPromptTokens: 2 },
      endpoint: '127.0.0.2:8000',
      prefillEndpoint: '127.0.0.3:8000',
      attempts: 2,
      headersMs: 2,
      errorMessage: 'cut',
    })
    const line = t.log[0] ?? {}
    expect(Object.keys(line)).toEqual([
      'time',
      'request_id',
      'method',
      'path',
      'status',
      'duration_ms',
      'model',
      'route',
      'rule',
      'auth',
      'subject',
      'tenant',
      'tier',
      'target_kind',
      'server',
      'upstream_model',
      'fallbacks',
      'spilled',
      'spill_reason',
      'spill_detail',
      'endpoint',
      'prefill_endpoint',
      'attempts',
      'stream',
      'prompt_tokens',
      'completion_tokens',
      'cached_prompt_tokens',
      'first_byte_ms',
      'upstream_headers_ms',
      'bytes',
      'error_message',
      'error_code',
    ])
    expect(line).toMatchObject({
      tier: 'gold',
      spill_reason: 'queue',
      cached_prompt_tokens: 2,
      first_byte_ms: 3,
      error_code: 'upstream_cut',
    })
    // A plain rule's failure without caller or target: only what is known.
    const u = setup(true)
    u.out.target = undefined
    u.out.fail(errors.internal())
    expect(Object.keys(u.log[0] ?? {})).toEqual([
      'time',
      'request_id',
      'method',
      'path',
      'status',
      'duration_ms',
      'model',
      'route',
      'rule',
      'error_code',
    ])
  })

  it('metric children are bound once per model and API', () => {
    const m = new GatewayMetrics()
    expect(m.series('m', 'chat')).toBe(m.series('m', 'chat'))
    expect(m.series('m', 'chat').requests(200, '')).toBe(m.series('m', 'chat').requests(200, ''))
    expect(m.series('m', 'chat')).not.toBe(m.series('m', 'embeddings'))
    const before = m.series('m', 'chat')
    m.forgetSeries()
    expect(m.series('m', 'chat')).not.toBe(before)
  })
})

describe('clientClosed', () => {
  it('is a 499 client_closed without a captured stack, and leaves stack capture on', () => {
    const e = clientClosed()
    expect(e.status).toBe(499)
    expect(e.code).toBe('client_closed')
    // Only the header line: no "    at …" frames to capture or format.
    expect(e.stack?.split('\n')).toHaveLength(1)
    expect(new Error('x').stack?.split('\n').length).toBeGreaterThan(1)
  })
})

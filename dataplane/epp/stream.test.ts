// The ext_proc state machine against the real scheduler and snapshot store (no network): what
// the EPP answers in each phase and body mode, and that in-flight load is taken and released.
import { describe, expect, it } from 'vitest'
import type { SnapshotServer } from '../../api/snapshot.js'
import { endpoint, route, server, snapshot } from '../../test/helpers/snapshot.js'
import { Scheduler } from '../scheduler/index.js'
import { SnapshotStore } from '../snapshot-store.js'
import { EppCore } from './core.js'
import {
  BodyMode,
  type HeaderValueOptionOut,
  type ProcessingRequest,
  type ProcessingResponse,
  plainStruct,
} from './proto.js'
import { BODY_CHUNK_BYTES, DESTINATION_HEADER, ExtProcStream } from './stream.js'

const EPS = [
  endpoint('pod-a', '10.0.0.1', 8000),
  endpoint('pod-b', '10.0.0.2', 8000),
  endpoint('pod-c', '10.0.0.3', 8000),
  endpoint('pod-d', '10.0.0.4', 8000, false),
]

function setup(
  srv: SnapshotServer = server('pool', EPS),
  routes = [] as ReturnType<typeof route>[],
) {
  const store = new SnapshotStore()
  const scheduler = new Scheduler({ scrape: false })
  store.onSwap((s) => scheduler.onSnapshot(s))
  store.swap(snapshot(routes, [srv]))
  const core = new EppCore({ store, picker: scheduler, pool: { kind: 'server', key: srv.key } })
  const sent: ProcessingResponse[] = []
  const open = (mode: BodyMode = BodyMode.FULL_DUPLEX_STREAMED, maxBodyBytes = 1 << 20) =>
    new ExtProcStream(core, (r) => sent.push(r), { bodyMode: mode, maxBodyBytes })
  // As the EPP's gauge reads it: the bookkeeping queued behind the answers applied first.
  const inflight = (): Record<string, number> => {
    core.settle()
    return Object.fromEntries([...scheduler.localLoad()].map(([id, [n]]) => [id, n]))
  }
  return { store, scheduler, sent, open, inflight }
}

const hv = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) })

function headers(extra: Record<string, string> = {}, end = false): ProcessingRequest {
  return {
    request: 'request_headers',
    request_headers: {
      headers: {
        headers: [
          hv(':method', 'POST'),
          hv(':path', '/v1/chat/completions'),
          hv('content-type', 'application/json'),
          ...Object.entries(extra).map(([k, v]) => hv(k, v)),
        ],
      },
      end_of_stream: end,
    },
  }
}
const body = (b: string | Buffer, end: boolean): ProcessingRequest => ({
  request: 'request_body',
  request_body: { body: Buffer.from(b), end_of_stream: end },
})
const chatBody = (model = 'm', content = 'hello there') =>
  JSON.stringify({ model, messages: [{ role: 'user', content }] })

function setHeader(r: ProcessingResponse | undefined, name: string): string | undefined {
  const common = r?.request_headers?.response ?? r?.request_body?.response
  const h = common?.header_mutation?.set_headers?.find(
    (o: HeaderValueOptionOut) => o.header.key === name,
  )
  return h?.header.raw_value.toString()
}
function metadataDestination(r: ProcessingResponse | undefined): unknown {
  const lb = plainStruct(r?.dynamic_metadata)['envoy.lb'] as Record<string, unknown> | undefined
  return lb?.[DESTINATION_HEADER]
}
function served(id: string): NonNullable<ProcessingRequest['metadata_context']> {
  return {
    filter_metadata: {
      'envoy.lb': { fields: { 'x-gateway-destination-endpoint-served': { string_value: id } } },
    },
  }
}
function subset(v: string | string[]): NonNullable<ProcessingRequest['metadata_context']> {
  return {
    filter_metadata: {
      'envoy.lb.subset_hint': {
        fields: {
          'x-gateway-destination-endpoint-subset': Array.isArray(v)
            ? { list_value: { values: v.map((s) => ({ string_value: s })) } }
            : { string_value: v },
        },
      },
    },
  }
}

describe('ExtProcStream, full-duplex streamed (GAIE mode)', () => {
  it('waits for the body, answers headers with destination + metadata, streams the body back, releases at the end', async () => {
    const { sent, open, inflight } = setup()
    const s = open()
    await s.handle(headers())
    expect(sent).toEqual([])
    const text = chatBody()
    await s.handle(body(text.slice(0, 10), false))
    expect(sent).toEqual([])
    await s.handle(body(text.slice(10), true))
    expect(sent.map((r) => Object.keys(r).sort().join('+'))).toEqual([
      'dynamic_metadata+request_headers',
      'request_body',
    ])
    const dest = setHeader(sent[0], DESTINATION_HEADER)
    const list = dest?.split(',') ?? []
    // Three ready endpoints: the primary and two fallbacks; the not-ready pod never appears.
    expect(new Set(list)).toEqual(new Set(['10.0.0.1:8000', '10.0.0.2:8000', '10.0.0.3:8000']))
    expect(metadataDestination(sent[0])).toBe(dest)
    expect(sent[0]?.request_headers?.response?.clear_route_cache).toBe(true)
    const streamed = sent[1]?.request_body?.response?.body_mutation
    expect(
      streamed && 'streamed_response' in streamed && streamed.streamed_response.body.toString(),
    ).toBe(text)
    expect(
      streamed && 'streamed_response' in streamed && streamed.streamed_response.end_of_stream,
    ).toBe(true)
    expect(inflight()).toEqual({ [list[0] as string]: 1 })

    sent.length = 0
    await s.handle({
      request: 'response_headers',
      response_headers: {
        headers: { headers: [hv(':status', '200'), hv('content-type', 'application/json')] },
      },
      metadata_context: served(list[0] as string),
    })
    const answer = JSON.stringify({ usage: { prompt_tokens: 7, completion_tokens: 3 } })
    await s.handle({
      request: 'response_body',
      response_body: { body: Buffer.from(answer), end_of_stream: true },
    })
    expect(sent[0]).toEqual({ response_headers: { response: {} } })
    const echoed = sent[1]?.response_body?.response?.body_mutation
    expect(
      echoed && 'streamed_response' in echoed && echoed.streamed_response.body.toString(),
    ).toBe(answer)
    expect(inflight()).toEqual({})
  })

  it('sends a body larger than one chunk back in 62,000-byte pieces, the last one ending the stream', async () => {
    const { sent, open } = setup()
    const s = open()
    await s.handle(headers())
    const big = chatBody('m', 'x'.repeat(150_000))
    await s.handle(body(big, true))
    const pieces = sent.slice(1).map((r) => {
      const m = r.request_body?.response?.body_mutation
      return m && 'streamed_response' in m ? m.streamed_response : undefined
    })
    expect(pieces.map((p) => p?.body.length)).toEqual([
      BODY_CHUNK_BYTES,
      BODY_CHUNK_BYTES,
      big.length - 2 * BODY_CHUNK_BYTES,
    ])
    expect(pieces.map((p) => p?.end_of_stream)).toEqual([false, false, true])
    expect(Buffer.concat(pieces.map((p) => p?.body ?? Buffer.alloc(0))).toString()).toBe(big)
  })

  it('the same prompt goes to the same pod (prefix index), different prompts spread', async () => {
    const { sent, open } = setup()
    const first = async (content: string): Promise<string> => {
      sent.length = 0
      const s = open()
      await s.handle(headers())
      await s.handle(body(chatBody('m', content), true))
      const primary = setHeader(sent[0], DESTINATION_HEADER)?.split(',')[0] ?? ''
      s.close(true)
      return primary
    }
    const long = 'You are a careful assistant. '.repeat(40)
    const a = await first(`${long} question one`)
    expect(await first(`${long} question two`)).toBe(a)
  })

  it('rewrites the model for the engine: body mutation and content-length', async () => {
    const { sent, open } = setup(server('pool', EPS, { model: 'engine-model' }))
    const s = open()
    await s.handle(headers())
    await s.handle(body(chatBody('public-name'), true))
    const out = sent[1]?.request_body?.response?.body_mutation
    const text = out && 'streamed_response' in out ? out.streamed_response.body.toString() : ''
    expect(JSON.parse(text).model).toBe('engine-model')
    expect(setHeader(sent[0], 'content-length')).toBe(String(Buffer.byteLength(text)))
  })

  it('a LoRA adapter named by a route is not rewritten', async () => {
    const srv = server('pool', EPS, { model: 'base' })
    const r = route('r', {
      modelName: 'base',
      loraAdapters: ['sql-lora'],
      rules: [{ name: 'r0', targets: [{ server: srv.key, weight: 100 }] }],
    })
    const { sent, open } = setup(srv, [r])
    const s = open()
    await s.handle(headers())
    await s.handle(body(chatBody('sql-lora'), true))
    expect(setHeader(sent[0], 'content-length')).toBeUndefined()
    const out = sent[1]?.request_body?.response?.body_mutation
    expect(
      out && 'streamed_response' in out && JSON.parse(out.streamed_response.body.toString()).model,
    ).toBe('sql-lora')
  })
})

describe('ExtProcStream, buffered mode', () => {
  it('answers headers at once, the destination rides on the body answer', async () => {
    const { sent, open } = setup()
    const s = open(BodyMode.BUFFERED)
    await s.handle(headers())
    expect(sent).toEqual([{ request_headers: { response: {} } }])
    await s.handle(body(chatBody(), true))
    const dest = setHeader(sent[1], DESTINATION_HEADER)
    expect(dest?.split(',')).toHaveLength(3)
    expect(metadataDestination(sent[1])).toBe(dest)
    expect(sent[1]?.request_body?.response?.body_mutation).toBeUndefined()
  })

  it('protocol_config from Envoy overrides the default mode', async () => {
    const { sent, open } = setup()
    const s = open(BodyMode.FULL_DUPLEX_STREAMED)
    await s.handle({
      ...headers(),
      protocol_config: {
        request_body_mode: BodyMode.BUFFERED,
        response_body_mode: BodyMode.BUFFERED,
      },
    })
    expect(sent).toEqual([{ request_headers: { response: {} } }])
  })

  it('a request without a body is picked on its headers', async () => {
    const { sent, open } = setup()
    const s = open(BodyMode.BUFFERED)
    await s.handle(headers({}, true))
    expect(setHeader(sent[0], DESTINATION_HEADER)?.split(',')).toHaveLength(3)
  })
})

describe('ExtProcStream, subset hints', () => {
  it('picks only among the hinted endpoints (list or comma string; an IP means every port)', async () => {
    for (const hint of [
      ['10.0.0.2:8000', '10.0.0.3:8000'],
      '10.0.0.2:8000, 10.0.0.3',
      ['10.0.0.2,10.0.0.3'],
    ]) {
      const { sent, open } = setup()
      const s = open()
      await s.handle({ ...headers(), metadata_context: subset(hint) })
      await s.handle(body(chatBody(), true))
      expect(new Set(setHeader(sent[0], DESTINATION_HEADER)?.split(','))).toEqual(
        new Set(['10.0.0.2:8000', '10.0.0.3:8000']),
      )
    }
  })

  it('no eligible endpoint in the hint (or an empty hint) is an ImmediateResponse 503', async () => {
    for (const hint of [['10.9.9.9:8000'], [], ['10.0.0.4:8000']]) {
      const { sent, open, inflight } = setup()
      const s = open()
      await s.handle({ ...headers(), metadata_context: subset(hint) })
      await s.handle(body(chatBody(), true))
      expect(sent).toHaveLength(1)
      expect(sent[0]?.immediate_response?.status.code).toBe(503)
      expect(JSON.parse(sent[0]?.immediate_response?.body?.toString() ?? '').error.code).toMatch(
        /^no_ready_endpoint/,
      )
      expect(inflight()).toEqual({})
    }
  })
})

describe('ExtProcStream, refusals and endings', () => {
  it('no ready endpoint: 503 with retry-after', async () => {
    const { sent, open } = setup(server('pool', [endpoint('pod-x', '10.0.0.9', 8000, false)]))
    const s = open()
    await s.handle(headers())
    await s.handle(body(chatBody(), true))
    const ir = sent[0]?.immediate_response
    expect(ir?.status.code).toBe(503)
    expect(
      ir?.headers?.set_headers?.map((h) => [h.header.key, h.header.raw_value.toString()]),
    ).toContainEqual(['retry-after', '1'])
  })

  it('a pool missing from the snapshot: 503 pool_not_found', async () => {
    const { sent, open, store } = setup()
    store.swap(snapshot([], [server('other', EPS)], 2))
    const s = open()
    await s.handle(headers())
    await s.handle(body(chatBody(), true))
    expect(JSON.parse(sent[0]?.immediate_response?.body?.toString() ?? '').error.code).toBe(
      'pool_not_found',
    )
  })

  it('bad bodies are OpenAI-shaped 400/413 immediate responses', async () => {
    const cases: [string | Buffer, number, string][] = [
      ['{"model": ', 400, 'invalid_json'],
      ['{"messages": []}', 400, 'missing_model'],
      [Buffer.alloc(2048, 0x20), 413, 'request_too_large'],
    ]
    for (const [b, status, code] of cases) {
      const { sent, open } = setup()
      const s = open(BodyMode.FULL_DUPLEX_STREAMED, 1024)
      await s.handle(headers())
      await s.handle(body(b, true))
      expect(sent[0]?.immediate_response?.status.code).toBe(status)
      expect(JSON.parse(sent[0]?.immediate_response?.body?.toString() ?? '').error.code).toBe(code)
    }
  })

  it('a stream reset before the response releases the in-flight place', async () => {
    const { open, inflight } = setup()
    const s = open()
    await s.handle(headers())
    await s.handle(body(chatBody(), true))
    expect(Object.values(inflight())).toEqual([1])
    s.close(true)
    expect(inflight()).toEqual({})
  })

  it('the gateway served a fallback: the load moves there, then ends with the response', async () => {
    const { sent, open, inflight } = setup()
    const s = open()
    await s.handle(headers())
    await s.handle(body(chatBody(), true))
    const list = setHeader(sent[0], DESTINATION_HEADER)?.split(',') ?? []
    await s.handle({
      request: 'response_headers',
      response_headers: { headers: { headers: [hv(':status', '200')] } },
      metadata_context: served(list[1] as string),
    })
    expect(inflight()).toEqual({ [list[1] as string]: 1 })
    await s.handle({
      request: 'response_body',
      response_body: { body: Buffer.from('{}'), end_of_stream: true },
    })
    expect(inflight()).toEqual({})
  })

  it('streamed SSE responses are echoed chunk by chunk; the end of the gRPC stream after headers-only releases', async () => {
    const { sent, open, inflight } = setup()
    const s = open()
    await s.handle(headers())
    await s.handle(body(chatBody(), true))
    sent.length = 0
    await s.handle({
      request: 'response_headers',
      response_headers: {
        headers: { headers: [hv(':status', '200'), hv('content-type', 'text/event-stream')] },
      },
    })
    await s.handle({
      request: 'response_body',
      response_body: { body: Buffer.from('data: {"x":1}\n\n') },
    })
    expect(sent).toHaveLength(2)
    expect(Object.values(inflight())).toEqual([1])
    s.close(false)
    expect(inflight()).toEqual({})
  })
})

describe('ExtProcStream, response headers only (response_body_mode NONE)', () => {
  it('answers the response headers, holds the place while the body flows past, releases at the trailers', async () => {
    const { sent, open, inflight } = setup()
    const s = open()
    await s.handle({
      ...headers(),
      protocol_config: {
        request_body_mode: BodyMode.FULL_DUPLEX_STREAMED,
        response_body_mode: BodyMode.NONE,
      },
    })
    await s.handle(body(chatBody(), true))
    const primary = setHeader(sent[0], DESTINATION_HEADER)?.split(',')[0] as string
    sent.length = 0
    await s.handle({
      request: 'response_headers',
      response_headers: {
        headers: { headers: [hv(':status', '200'), hv('content-type', 'text/event-stream')] },
      },
      metadata_context: served(primary),
    })
    expect(sent).toEqual([{ response_headers: { response: {} } }])
    // The tokens go to the client without the EPP: the request is still at the pod.
    expect(inflight()).toEqual({ [primary]: 1 })
    // The end: the response trailers (response_trailer_mode SEND), else the end of the gRPC stream.
    await s.handle({ request: 'response_trailers', response_trailers: {} })
    expect(sent[1]).toEqual({ response_trailers: {} })
    expect(inflight()).toEqual({})
    s.close(false)
    expect(inflight()).toEqual({})
  })
})

describe('ExtProcStream, admission (fairness plugin)', () => {
  it('a saturated pool queues, then sheds with an ImmediateResponse 429; a queued stream that ends is dropped', async () => {
    const srv: SnapshotServer = {
      ...server('pool', [endpoint('only', '10.0.0.1', 8000)]),
      scheduler: {
        plugins: [
          { name: 'fairness', weight: 0, args: { maxInFlightPerEndpoint: 1, maxQueue: 1 } },
          { name: 'least-pending', weight: 1, args: {} },
        ],
      },
    }
    const { sent, open, inflight } = setup(srv)
    const first = open()
    await first.handle(headers())
    await first.handle(body(chatBody('m', 'one'), true))
    expect(inflight()).toEqual({ '10.0.0.1:8000': 1 })

    const queuedSent = sent.length
    const queued = open()
    await queued.handle(headers())
    const waiting = queued.handle(body(chatBody('m', 'two'), true))
    const shed = open()
    await shed.handle(headers())
    await shed.handle(body(chatBody('m', 'three'), true))
    const refusal = sent.at(-1)?.immediate_response
    expect(refusal?.status.code).toBe(429)
    expect(JSON.parse(refusal?.body?.toString() ?? '').error.code).toBe('queue_full')

    queued.close(true)
    await waiting
    // Nothing was sent for the dropped stream, and it holds nothing.
    expect(sent.length).toBe(queuedSent + 1)
    first.close(true)
    expect(inflight()).toEqual({})
  })
})

// encode.ts writes the same bytes as protobufjs for every answer the EPP sends (the answers of
// real streams in each body mode, refusals included) and for the edges of the types it accepts.
import type { MethodDefinition } from '@grpc/proto-loader'
import { describe, expect, it } from 'vitest'
import { endpoint, server, snapshot } from '../../test/helpers/snapshot.js'
import { Scheduler } from '../scheduler/index.js'
import { SnapshotStore } from '../snapshot-store.js'
import { EppCore } from './core.js'
import { encodeProcessingResponse } from './encode.js'
import {
  BodyMode,
  extProcPackage,
  type ProcessingRequest,
  type ProcessingResponse,
} from './proto.js'
import { ExtProcStream } from './stream.js'

type Method = MethodDefinition<ProcessingRequest, ProcessingResponse>
const method = (answers: 'direct' | 'protobufjs'): Method =>
  (
    extProcPackage(answers)['envoy.service.ext_proc.v3.ExternalProcessor'] as unknown as Record<
      string,
      Method
    >
  )['Process'] as Method

const protobufjs = method('protobufjs')

const hv = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) })

/** Every answer of a few real streams: both body modes, a rewrite, refusals, response phases. */
async function streamAnswers(): Promise<ProcessingResponse[]> {
  const eps = [endpoint('a', '10.0.0.1', 8000), endpoint('b', '10.0.0.2', 8000)]
  const srv = server('pool', eps, { model: 'engine-model' })
  const store = new SnapshotStore()
  const scheduler = new Scheduler({ scrape: false })
  store.onSwap((s) => scheduler.onSnapshot(s))
  store.swap(snapshot([], [srv]))
  const core = new EppCore({ store, picker: scheduler, pool: { kind: 'server', key: srv.key } })
  const sent: ProcessingResponse[] = []
  const run = async (mode: BodyMode, body: string, maxBodyBytes = 1 << 20) => {
    const s = new ExtProcStream(core, (r) => sent.push(r), { bodyMode: mode, maxBodyBytes })
    await s.handle({
      request: 'request_headers',
      request_headers: {
        headers: { headers: [hv(':method', 'POST'), hv(':path', '/v1/chat/completions')] },
      },
    })
    await s.handle({
      request: 'request_body',
      request_body: { body: Buffer.from(body), end_of_stream: true },
    })
    await s.handle({
      request: 'response_headers',
      response_headers: {
        headers: { headers: [hv(':status', '200'), hv('content-type', 'text/event-stream')] },
      },
      metadata_context: {
        filter_metadata: {
          'envoy.lb': {
            fields: { 'x-gateway-destination-endpoint-served': { string_value: '10.0.0.2:8000' } },
          },
        },
      },
    })
    await s.handle({
      request: 'response_body',
      response_body: {
        body: Buffer.from('data: {"usage":{"prompt_tokens":3}}\n\n'),
        end_of_stream: false,
      },
    })
    await s.handle({
      request: 'response_body',
      response_body: { body: Buffer.alloc(0), end_of_stream: true },
    })
    await s.handle({ request: 'request_trailers' })
    await s.handle({ request: 'response_trailers' })
    s.close(false)
  }
  const chat = (model: string, content: string) =>
    JSON.stringify({ model, messages: [{ role: 'user', content }] })
  // The pool's model override rewrites every body (body mutation, content-length).
  await run(BodyMode.FULL_DUPLEX_STREAMED, chat('m', 'héllo ✓ 🚀'.repeat(20_000)))
  await run(BodyMode.FULL_DUPLEX_STREAMED, chat('engine-model', 'not rewritten'))
  await run(BodyMode.BUFFERED, chat('m', 'buffered, rewritten'))
  await run(BodyMode.BUFFERED, chat('engine-model', 'buffered'))
  await run(BodyMode.FULL_DUPLEX_STREAMED, '{"no": "model"}')
  await run(BodyMode.FULL_DUPLEX_STREAMED, 'not json')
  await run(BodyMode.FULL_DUPLEX_STREAMED, chat('m', 'x'.repeat(100)), 10)
  return sent
}

const edges: ProcessingResponse[] = [
  {},
  { request_trailers: {}, response_trailers: {} },
  { request_headers: {} },
  { response_body: { response: {} } },
  {
    request_body: {
      response: {
        header_mutation: {
          set_headers: [
            { header: { key: '', raw_value: Buffer.alloc(0) }, append_action: 0 },
            { header: { key: 'ключ', raw_value: Buffer.from('значение') }, append_action: 300 },
          ],
          remove_headers: ['content-length', '', 'x-ü'],
        },
        body_mutation: { body: Buffer.alloc(0) },
        clear_route_cache: false,
      },
    },
  },
  {
    response_headers: {
      response: {
        body_mutation: {
          streamed_response: { body: Buffer.alloc(200_000, 7), end_of_stream: false },
        },
      },
    },
  },
  {
    immediate_response: {
      status: { code: -1 },
      headers: { set_headers: [] },
      body: Buffer.from('{}'),
      details: '',
    },
  },
  { immediate_response: { status: { code: 429 } } },
  {
    dynamic_metadata: {
      fields: {
        'envoy.lb': {
          struct_value: {
            fields: {
              s: { string_value: 'a,b' },
              n: { number_value: -1.5e300 },
              z: { number_value: 0 },
              t: { bool_value: true },
              f: { bool_value: false },
              nul: { null_value: 0 },
              l: {
                list_value: {
                  values: [{ string_value: '' }, { list_value: {} }, { struct_value: {} }],
                },
              },
              e: { struct_value: { fields: {} } },
            },
          },
        },
        '': {},
      },
    },
  },
]

describe('encodeProcessingResponse', () => {
  it("writes protobufjs's bytes for every answer of real streams", async () => {
    const answers = await streamAnswers()
    // Headers, body chunks (three for the 200 KB body), immediate responses, response phases.
    expect(answers.length).toBeGreaterThan(30)
    expect(answers.some((a) => a.immediate_response !== undefined)).toBe(true)
    for (const a of answers)
      expect(encodeProcessingResponse(a).equals(protobufjs.responseSerialize(a))).toBe(true)
  })

  it("writes protobufjs's bytes at the edges: empty, unicode, negatives, every Value kind", () => {
    for (const a of edges) {
      const ours = encodeProcessingResponse(a)
      expect(ours.toString('hex')).toBe(
        Buffer.from(protobufjs.responseSerialize(a)).toString('hex'),
      )
    }
  })

  it('is the service serializer; what it writes decodes back', () => {
    const m = method('direct')
    expect(m.responseSerialize).toBe(encodeProcessingResponse)
    const a = edges[4] as ProcessingResponse
    const back = protobufjs.responseDeserialize(m.responseSerialize(a)) as ProcessingResponse
    expect(back.request_body?.response?.header_mutation?.remove_headers).toEqual([
      'content-length',
      '',
      'x-ü',
    ])
  })
})

// The hand-written ext_proc codec against protobufjs on the descriptor of proto.ts (what
// proto-loader would do): requests encoded by protobufjs decode here to what proto-loader gives,
// responses encoded here decode in protobufjs to what the EPP meant.
import * as grpc from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { decodeProcessingRequest, ExtProcDecodeError, encodeProcessingResponse } from './codec.js'
import { extProcPackage, type ProcessingRequest, type ProcessingResponse } from './proto.js'

const pkg = grpc.loadPackageDefinition(extProcPackage()) as unknown as {
  envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } }
}
const def = pkg.envoy.service.ext_proc.v3.ExternalProcessor.service['Process']
if (def === undefined) throw new Error('no Process method')
const pbEncodeRequest = (m: unknown): Buffer => def.requestSerialize(m)
const pbDecodeRequest = (b: Buffer): unknown => def.requestDeserialize(b)
const pbEncodeResponse = (m: unknown): Buffer => def.responseSerialize(m)
const pbDecodeResponse = (b: Buffer): unknown => def.responseDeserialize(b)

/** proto3: a false bool, a 0 number or an empty string is the same as absent on the wire. */
function normal(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v.toString('base64')
  if (Array.isArray(v)) return v.map(normal)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) {
      if (x === false || x === 0 || x === '' || x === undefined) continue
      if (Array.isArray(x) && x.length === 0) continue
      out[k] = normal(x)
    }
    return out
  }
  return v
}

const hv = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) })

const REQUESTS: Record<string, ProcessingRequest> = {
  headers: {
    request_headers: {
      headers: {
        headers: [
          hv(':method', 'POST'),
          hv(':path', '/v1/chat/completions'),
          { key: 'x-old', value: 'string value' },
          hv('x-unicode', 'żółw 🐢'),
        ],
      },
      end_of_stream: true,
    },
    protocol_config: {
      request_body_mode: 4,
      response_body_mode: 4,
      send_body_without_waiting_for_header_response: true,
    },
    observability_mode: true,
  },
  'headers with subset hint and served metadata': {
    request_headers: { headers: { headers: [hv(':path', '/v1/completions')] } },
    metadata_context: {
      filter_metadata: {
        'envoy.lb.subset_hint': {
          fields: {
            'x-gateway-destination-endpoint-subset': {
              list_value: {
                values: [{ string_value: '10.0.0.1:8000' }, { string_value: '10.0.0.2' }],
              },
            },
          },
        },
        'envoy.lb': {
          fields: {
            n: { number_value: 1.5 },
            b: { bool_value: true },
            z: { null_value: 0 },
            s: { struct_value: { fields: { inner: { string_value: 'x' } } } },
            e: { list_value: {} },
            ['__proto__']: { string_value: 'not a prototype' },
          },
        },
      },
    },
  },
  'body chunk': {
    request_body: { body: Buffer.from('{"model":"m","prompt":"hello"}'), end_of_stream: true },
  },
  'large body chunk': {
    request_body: { body: Buffer.alloc(70_000, 0x61), end_of_stream: false },
  },
  'response headers': {
    response_headers: { headers: { headers: [hv(':status', '200')] }, end_of_stream: false },
  },
  'response body': { response_body: { body: Buffer.from('data: {}\n\n'), end_of_stream: true } },
  'request trailers': { request_trailers: { trailers: { headers: [hv('x-t', '1')] } } },
  'response trailers': { response_trailers: {} },
}

describe('decodeProcessingRequest', () => {
  for (const [name, msg] of Object.entries(REQUESTS)) {
    it(`reads ${name} as proto-loader does`, () => {
      const wire = pbEncodeRequest(msg)
      const mine = decodeProcessingRequest(wire)
      expect(normal(mine)).toEqual(normal(pbDecodeRequest(wire)))
      // The oneof member is named, so the stream's switch works on it.
      expect(mine.request).toBe((pbDecodeRequest(wire) as ProcessingRequest).request)
    })
  }

  it('keeps the body a view of the frame (no copy)', () => {
    const wire = pbEncodeRequest(REQUESTS['large body chunk'])
    const body = decodeProcessingRequest(wire).request_body?.body
    expect(body?.length).toBe(70_000)
    expect(body?.buffer).toBe(wire.buffer)
  })

  it('skips fields it does not know (attributes, future fields)', () => {
    const wire = pbEncodeRequest({
      request_body: { body: Buffer.from('x') },
      attributes: { 'envoy.filters.http.ext_proc': { fields: { a: { string_value: 'b' } } } },
    })
    const extra = Buffer.from([(15 << 3) | 0, 0x96, 0x01]) // field 15, varint 150
    const mine = decodeProcessingRequest(Buffer.concat([wire, extra]))
    expect(mine.request).toBe('request_body')
    expect(mine.request_body?.body?.toString()).toBe('x')
    expect(Object.keys(mine)).not.toContain('attributes')
  })

  it('refuses truncated input with a typed error', () => {
    const wire = pbEncodeRequest(REQUESTS['body chunk'])
    expect(() => decodeProcessingRequest(wire.subarray(0, wire.length - 3))).toThrow(
      ExtProcDecodeError,
    )
  })

  it('refuses metadata nested deeper than it reads', () => {
    let v: Record<string, unknown> = { string_value: 'leaf' }
    for (let i = 0; i < 40; i++) v = { struct_value: { fields: { k: v } } }
    const wire = pbEncodeRequest({
      request_headers: {},
      metadata_context: { filter_metadata: { deep: { fields: { k: v } } } },
    })
    expect(() => decodeProcessingRequest(wire)).toThrow(/nested too deep/)
  })
})

const set = (key: string, value: string) => ({
  header: { key, raw_value: Buffer.from(value) },
  append_action: 2,
})

const RESPONSES: Record<string, ProcessingResponse> = {
  'destination on the headers answer': {
    request_headers: {
      response: {
        header_mutation: {
          set_headers: [
            set('x-gateway-destination-endpoint', '10.0.0.1:8000,10.0.0.2:8000'),
            set('content-length', '123'),
          ],
        },
        clear_route_cache: true,
      },
    },
    dynamic_metadata: {
      fields: {
        'envoy.lb': {
          struct_value: {
            fields: { 'x-gateway-destination-endpoint': { string_value: '10.0.0.1:8000' } },
          },
        },
      },
    },
  },
  'empty headers answer': { request_headers: { response: {} } },
  'bare headers answer': { response_headers: {} },
  'streamed body chunk': {
    request_body: {
      response: {
        body_mutation: {
          streamed_response: { body: Buffer.alloc(62_000, 0x7b), end_of_stream: true },
        },
      },
    },
  },
  'streamed body chunk, not last': {
    response_body: {
      response: {
        body_mutation: {
          streamed_response: { body: Buffer.from('data: x'), end_of_stream: false },
        },
      },
    },
  },
  'buffered body replacement': {
    request_body: {
      response: {
        header_mutation: { set_headers: [set('a', 'b')], remove_headers: ['x-drop'] },
        body_mutation: { body: Buffer.from('{"model":"rewritten"}') },
        clear_route_cache: true,
      },
    },
  },
  'trailers acknowledged': { request_trailers: {} },
  'response trailers acknowledged': { response_trailers: {} },
  'immediate response': {
    immediate_response: {
      status: { code: 503 },
      headers: { set_headers: [set('content-type', 'application/json'), set('retry-after', '1')] },
      body: Buffer.from('{"error":{"code":"no_ready_endpoint"}}'),
      details: 'infer_gateway_epp_no_ready_endpoint',
    },
  },
  'metadata of every kind': {
    response_headers: { response: {} },
    dynamic_metadata: {
      fields: {
        ns: {
          struct_value: {
            fields: {
              n: { number_value: -2.25 },
              t: { bool_value: true },
              f: { bool_value: false },
              z: { null_value: 0 },
              l: { list_value: { values: [{ string_value: 'a' }, { number_value: 3 }] } },
              u: { string_value: 'ünïcode' },
            },
          },
        },
      },
    },
  },
}

describe('encodeProcessingResponse', () => {
  for (const [name, msg] of Object.entries(RESPONSES)) {
    it(`writes ${name} as protobufjs reads it`, () => {
      const mine = encodeProcessingResponse(msg)
      const reference = pbEncodeResponse(msg)
      expect(normal(pbDecodeResponse(mine))).toEqual(normal(pbDecodeResponse(reference)))
    })
  }

  it('sets the oneof member even for an empty answer (Envoy needs to know which phase)', () => {
    const decoded = pbDecodeResponse(encodeProcessingResponse({ request_trailers: {} })) as {
      response?: string
    }
    expect(decoded.response).toBe('request_trailers')
    const h = pbDecodeResponse(
      encodeProcessingResponse({ response_headers: { response: {} } }),
    ) as { response?: string; response_headers?: { response?: unknown } }
    expect(h.response).toBe('response_headers')
    expect(h.response_headers?.response).toEqual({})
  })

  it('a false bool in a Struct stays a bool (the Value oneof is set)', () => {
    const decoded = pbDecodeResponse(
      encodeProcessingResponse({ dynamic_metadata: { fields: { f: { bool_value: false } } } }),
    ) as { dynamic_metadata: { fields: Record<string, { kind?: string }> } }
    expect(decoded.dynamic_metadata.fields['f']?.kind).toBe('bool_value')
  })
})

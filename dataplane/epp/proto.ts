// The minimal protobuf set the EPP speaks: Envoy's ext_proc v3 service (and the parts of
// config.core.v3 / type.v3 it uses), google.protobuf.Struct, and grpc.health.v1. No npm package
// ships Envoy's .proto files, so they are written here as a protobufjs JSON descriptor: field
// numbers and types copied from the Go generated code of go-control-plane/envoy v1.40.0 (struct
// tags of external_processor.pb.go, base.pb.go, http_status.pb.go). Held as data, not .proto files
// on disk, so the esbuild bundles need no file beside them. Enum fields are declared int32: the
// same varint on the wire, and the handler compares numbers.
import { fromJSON, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader'
import { encodeProcessingResponse } from './encode.js'

type FieldSpec = { type: string; id: number; rule?: 'repeated'; keyType?: string }
type Fields = Record<string, FieldSpec>

const f = (type: string, id: number): FieldSpec => ({ type, id })
const rep = (type: string, id: number): FieldSpec => ({ type, id, rule: 'repeated' })
const map = (type: string, id: number): FieldSpec => ({ type, id, keyType: 'string' })
const msg = (fields: Fields, oneofs?: Record<string, string[]>) => ({
  fields,
  ...(oneofs
    ? { oneofs: Object.fromEntries(Object.entries(oneofs).map(([k, v]) => [k, { oneof: v }])) }
    : {}),
})

const DESCRIPTOR: Parameters<typeof fromJSON>[0] = {
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Struct: msg({ fields: map('Value', 1) }),
            Value: msg(
              {
                null_value: f('int32', 1),
                number_value: f('double', 2),
                string_value: f('string', 3),
                bool_value: f('bool', 4),
                struct_value: f('Struct', 5),
                list_value: f('ListValue', 6),
              },
              {
                kind: [
                  'null_value',
                  'number_value',
                  'string_value',
                  'bool_value',
                  'struct_value',
                  'list_value',
                ],
              },
            ),
            ListValue: msg({ values: rep('Value', 1) }),
            Duration: msg({ seconds: f('int64', 1), nanos: f('int32', 2) }),
          },
        },
      },
    },
    envoy: {
      nested: {
        config: {
          nested: {
            core: {
              nested: {
                v3: {
                  nested: {
                    HeaderValue: msg({
                      key: f('string', 1),
                      value: f('string', 2),
                      raw_value: f('bytes', 3),
                    }),
                    HeaderValueOption: msg({
                      header: f('HeaderValue', 1),
                      append_action: f('int32', 3),
                      keep_empty_value: f('bool', 4),
                    }),
                    HeaderMap: msg({ headers: rep('HeaderValue', 1) }),
                    Metadata: msg({ filter_metadata: map('google.protobuf.Struct', 1) }),
                  },
                },
              },
            },
          },
        },
        type: {
          nested: { v3: { nested: { HttpStatus: msg({ code: f('int32', 1) }) } } },
        },
        service: {
          nested: {
            ext_proc: {
              nested: {
                v3: {
                  nested: {
                    ExternalProcessor: {
                      methods: {
                        Process: {
                          comment: '',
                          requestType: 'ProcessingRequest',
                          requestStream: true,
                          responseType: 'ProcessingResponse',
                          responseStream: true,
                        },
                      },
                    },
                    ProtocolConfiguration: msg({
                      request_body_mode: f('int32', 1),
                      response_body_mode: f('int32', 2),
                      send_body_without_waiting_for_header_response: f('bool', 3),
                    }),
                    ProcessingRequest: msg(
                      {
                        request_headers: f('HttpHeaders', 2),
                        response_headers: f('HttpHeaders', 3),
                        request_body: f('HttpBody', 4),
                        response_body: f('HttpBody', 5),
                        request_trailers: f('HttpTrailers', 6),
                        response_trailers: f('HttpTrailers', 7),
                        metadata_context: f('envoy.config.core.v3.Metadata', 8),
                        attributes: map('google.protobuf.Struct', 9),
                        observability_mode: f('bool', 10),
                        protocol_config: f('ProtocolConfiguration', 11),
                      },
                      {
                        request: [
                          'request_headers',
                          'response_headers',
                          'request_body',
                          'response_body',
                          'request_trailers',
                          'response_trailers',
                        ],
                      },
                    ),
                    ProcessingResponse: msg(
                      {
                        request_headers: f('HeadersResponse', 1),
                        response_headers: f('HeadersResponse', 2),
                        request_body: f('BodyResponse', 3),
                        response_body: f('BodyResponse', 4),
                        request_trailers: f('TrailersResponse', 5),
                        response_trailers: f('TrailersResponse', 6),
                        immediate_response: f('ImmediateResponse', 7),
                        dynamic_metadata: f('google.protobuf.Struct', 8),
                        override_message_timeout: f('google.protobuf.Duration', 10),
                      },
                      {
                        response: [
                          'request_headers',
                          'response_headers',
                          'request_body',
                          'response_body',
                          'request_trailers',
                          'response_trailers',
                          'immediate_response',
                        ],
                      },
                    ),
                    HttpHeaders: msg({
                      headers: f('envoy.config.core.v3.HeaderMap', 1),
                      end_of_stream: f('bool', 3),
                    }),
                    HttpBody: msg({ body: f('bytes', 1), end_of_stream: f('bool', 2) }),
                    HttpTrailers: msg({ trailers: f('envoy.config.core.v3.HeaderMap', 1) }),
                    HeadersResponse: msg({ response: f('CommonResponse', 1) }),
                    BodyResponse: msg({ response: f('CommonResponse', 1) }),
                    TrailersResponse: msg({ header_mutation: f('HeaderMutation', 1) }),
                    CommonResponse: msg({
                      status: f('int32', 1),
                      header_mutation: f('HeaderMutation', 2),
                      body_mutation: f('BodyMutation', 3),
                      trailers: f('envoy.config.core.v3.HeaderMap', 4),
                      clear_route_cache: f('bool', 5),
                    }),
                    ImmediateResponse: msg({
                      status: f('envoy.type.v3.HttpStatus', 1),
                      headers: f('HeaderMutation', 2),
                      body: f('bytes', 3),
                      details: f('string', 5),
                    }),
                    HeaderMutation: msg({
                      set_headers: rep('envoy.config.core.v3.HeaderValueOption', 1),
                      remove_headers: rep('string', 2),
                    }),
                    StreamedBodyResponse: msg({ body: f('bytes', 1), end_of_stream: f('bool', 2) }),
                    BodyMutation: msg(
                      {
                        body: f('bytes', 1),
                        clear_body: f('bool', 2),
                        streamed_response: f('StreamedBodyResponse', 3),
                      },
                      { mutation: ['body', 'clear_body', 'streamed_response'] },
                    ),
                  },
                },
              },
            },
          },
        },
      },
    },
    grpc: {
      nested: {
        health: {
          nested: {
            v1: {
              nested: {
                Health: {
                  methods: {
                    Check: {
                      comment: '',
                      requestType: 'HealthCheckRequest',
                      responseType: 'HealthCheckResponse',
                    },
                    Watch: {
                      comment: '',
                      requestType: 'HealthCheckRequest',
                      responseType: 'HealthCheckResponse',
                      responseStream: true,
                    },
                  },
                },
                HealthCheckRequest: msg({ service: f('string', 1) }),
                HealthCheckResponse: msg({ status: f('int32', 1) }),
              },
            },
          },
        },
      },
    },
  },
}

/** The package definition for grpc-js: snake_case field names, enums as numbers, bytes as Buffer. */
export function extProcPackage(
  /** `protobufjs`: answers encoded by protobufjs too (encode.test.ts compares the two). */
  answers: 'direct' | 'protobufjs' = 'direct',
): PackageDefinition {
  const def = fromJSON(DESCRIPTOR, {
    keepCase: true,
    longs: String,
    enums: Number,
    defaults: false,
    oneofs: true,
  })
  if (answers === 'direct') {
    // The EPP's answers are written by encode.ts (issue 13: protobufjs's generic encoder on the
    // path of every decision); requests are still decoded by protobufjs.
    const service = def['envoy.service.ext_proc.v3.ExternalProcessor'] as unknown as Record<
      string,
      MethodDefinition<unknown, ProcessingResponse>
    >
    const process = service['Process']
    if (process !== undefined) process.responseSerialize = encodeProcessingResponse
  }
  return def
}

/** ProcessingMode.BodySendMode (envoy.extensions.filters.http.ext_proc.v3). */
export const BodyMode = {
  NONE: 0,
  STREAMED: 1,
  BUFFERED: 2,
  BUFFERED_PARTIAL: 3,
  FULL_DUPLEX_STREAMED: 4,
} as const
export type BodyMode = (typeof BodyMode)[keyof typeof BodyMode]

/** HeaderValueOption.HeaderAppendAction: replace what the client sent, never append to it. */
export const OVERWRITE_IF_EXISTS_OR_ADD = 2

/** grpc.health.v1.HealthCheckResponse.ServingStatus. */
export const ServingStatus = { SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const

// The decoded shapes (proto-loader objects with the options above), as far as the EPP reads them.

export interface HeaderValue {
  key: string
  value?: string
  raw_value?: Buffer
}
export interface HeaderMap {
  headers?: HeaderValue[]
}
export interface StructValue {
  fields?: Record<string, Value>
}
export interface Value {
  kind?:
    | 'null_value'
    | 'number_value'
    | 'string_value'
    | 'bool_value'
    | 'struct_value'
    | 'list_value'
  null_value?: number
  number_value?: number
  string_value?: string
  bool_value?: boolean
  struct_value?: StructValue
  list_value?: { values?: Value[] }
}
export interface HttpHeaders {
  headers?: HeaderMap
  end_of_stream?: boolean
}
export interface HttpBody {
  body?: Buffer
  end_of_stream?: boolean
}
export interface ProcessingRequest {
  request?:
    | 'request_headers'
    | 'response_headers'
    | 'request_body'
    | 'response_body'
    | 'request_trailers'
    | 'response_trailers'
  request_headers?: HttpHeaders
  response_headers?: HttpHeaders
  request_body?: HttpBody
  response_body?: HttpBody
  request_trailers?: { trailers?: HeaderMap }
  response_trailers?: { trailers?: HeaderMap }
  metadata_context?: { filter_metadata?: Record<string, StructValue> }
  observability_mode?: boolean
  protocol_config?: {
    request_body_mode?: number
    response_body_mode?: number
    send_body_without_waiting_for_header_response?: boolean
  }
}

export interface HeaderValueOptionOut {
  header: { key: string; raw_value: Buffer }
  append_action: number
}
export interface HeaderMutationOut {
  set_headers?: HeaderValueOptionOut[]
  remove_headers?: string[]
}
export interface CommonResponseOut {
  header_mutation?: HeaderMutationOut
  body_mutation?: { body: Buffer } | { streamed_response: { body: Buffer; end_of_stream: boolean } }
  clear_route_cache?: boolean
}
export interface ProcessingResponse {
  request_headers?: { response?: CommonResponseOut }
  response_headers?: { response?: CommonResponseOut }
  request_body?: { response?: CommonResponseOut }
  response_body?: { response?: CommonResponseOut }
  request_trailers?: Record<string, never>
  response_trailers?: Record<string, never>
  immediate_response?: {
    status: { code: number }
    headers?: HeaderMutationOut
    body?: Buffer
    details?: string
  }
  dynamic_metadata?: StructValue
}

/** A header's value: Envoy sends `raw_value` (bytes); older builds and tests may send `value`. */
export function headerValue(h: HeaderValue): string {
  if (h.raw_value !== undefined && h.raw_value.length > 0) return h.raw_value.toString('utf8')
  return h.value ?? ''
}

/** A Struct Value as plain JSON (metadata entries). */
export function plainValue(v: Value | undefined): unknown {
  if (v === undefined) return undefined
  // Decoded messages name the set member in `kind`; objects built here may only set the field.
  const kind =
    v.kind ??
    (v.string_value !== undefined
      ? 'string_value'
      : v.number_value !== undefined
        ? 'number_value'
        : v.bool_value !== undefined
          ? 'bool_value'
          : v.list_value !== undefined
            ? 'list_value'
            : v.struct_value !== undefined
              ? 'struct_value'
              : 'null_value')
  switch (kind) {
    case 'string_value':
      return v.string_value
    case 'number_value':
      return v.number_value
    case 'bool_value':
      return v.bool_value
    case 'list_value':
      return (v.list_value?.values ?? []).map(plainValue)
    case 'struct_value':
      return plainStruct(v.struct_value)
    default:
      return null
  }
}

export function plainStruct(s: StructValue | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = plainValue(v)
  return out
}

/** A one-level Struct of string values (the `envoy.lb` dynamic metadata). */
export function stringStruct(entries: Record<string, string>): StructValue {
  const fields: Record<string, Value> = {}
  for (const [k, v] of Object.entries(entries)) fields[k] = { string_value: v }
  return { fields }
}

// Hand-written protobuf codec for the one hot RPC, `ExternalProcessor.Process`: ProcessingRequest
// in, ProcessingResponse out. proto-loader (protobufjs) decodes into a message object and then
// copies it into a plain object (`toObject`), and on the way out builds a message from the plain
// object (`fromObject`) before encoding it: three object graphs per message, for messages that
// carry the whole request body. Here a request is read in one pass straight into the shapes of
// proto.ts (bodies are zero-copy views of the gRPC frame, as protobufjs gives them), and a response
// is sized in one pass and written into one buffer. Field numbers are those of the descriptor in
// proto.ts; codec.test.ts checks both directions against protobufjs on that descriptor, which stays
// the reference (and still serves grpc.health.v1).
import type {
  CommonResponseOut,
  HeaderMap,
  HeaderMutationOut,
  HeaderValue,
  HeaderValueOptionOut,
  HttpBody,
  HttpHeaders,
  ProcessingRequest,
  ProcessingResponse,
  StructValue,
  Value,
} from './proto.js'

export class ExtProcDecodeError extends Error {
  override readonly name = 'ExtProcDecodeError'
  readonly code = 'EXT_PROC_BAD_MESSAGE'
}

const VARINT = 0
const FIXED64 = 1
const LEN = 2
const FIXED32 = 5

// ---------------------------------------------------------------- decoding

class Reader {
  pos: number
  readonly buf: Buffer
  constructor(buf: Buffer, pos = 0) {
    this.buf = buf
    this.pos = pos
  }

  varint(): number {
    const b = this.buf
    let result = 0
    let shift = 0
    for (;;) {
      if (this.pos >= b.length) throw new ExtProcDecodeError('truncated varint')
      const c = b[this.pos++] as number
      // Above 2^53 precision is lost; the fields read as numbers here are enums, bools, sizes.
      result += shift < 28 ? (c & 0x7f) << shift : (c & 0x7f) * 2 ** shift
      if (c < 0x80) return result
      shift += 7
      if (shift > 63) throw new ExtProcDecodeError('varint too long')
    }
  }

  /** The end offset of a length-delimited field starting here. */
  lenEnd(end: number): number {
    const n = this.varint()
    const e = this.pos + n
    if (e > end) throw new ExtProcDecodeError('length past the end of the message')
    return e
  }

  skip(wire: number, end: number): void {
    switch (wire) {
      case VARINT:
        this.varint()
        return
      case FIXED64:
        this.pos += 8
        break
      case LEN:
        this.pos = this.lenEnd(end)
        return
      case FIXED32:
        this.pos += 4
        break
      default:
        throw new ExtProcDecodeError(`unsupported wire type ${wire}`)
    }
    if (this.pos > end) throw new ExtProcDecodeError('field past the end of the message')
  }

  string(end: number): string {
    const e = this.lenEnd(end)
    const s = this.buf.toString('utf8', this.pos, e)
    this.pos = e
    return s
  }

  bytes(end: number): Buffer {
    const e = this.lenEnd(end)
    const b = this.buf.subarray(this.pos, e)
    this.pos = e
    return b
  }
}

function headerValue(r: Reader, end: number): HeaderValue {
  const h: { key: string; value?: string; raw_value?: Buffer } = { key: '' }
  while (r.pos < end) {
    const tag = r.varint()
    const field = tag >>> 3
    if (field === 1 && (tag & 7) === LEN) h.key = r.string(end)
    else if (field === 2 && (tag & 7) === LEN) h.value = r.string(end)
    else if (field === 3 && (tag & 7) === LEN) h.raw_value = r.bytes(end)
    else r.skip(tag & 7, end)
  }
  return h
}

function headerMap(r: Reader, end: number): HeaderMap {
  const headers: HeaderValue[] = []
  while (r.pos < end) {
    const tag = r.varint()
    if (tag === ((1 << 3) | LEN)) {
      const e = r.lenEnd(end)
      headers.push(headerValue(r, e))
      r.pos = e
    } else r.skip(tag & 7, end)
  }
  // Empty repeated/map fields are left out, as proto-loader does with `defaults: false`.
  return headers.length > 0 ? { headers } : {}
}

function httpHeaders(r: Reader, end: number): HttpHeaders {
  const out: { headers?: HeaderMap; end_of_stream?: boolean } = {}
  while (r.pos < end) {
    const tag = r.varint()
    if (tag === ((1 << 3) | LEN)) {
      const e = r.lenEnd(end)
      out.headers = headerMap(r, e)
      r.pos = e
    } else if (tag === ((3 << 3) | VARINT)) out.end_of_stream = r.varint() !== 0
    else r.skip(tag & 7, end)
  }
  return out
}

function httpBody(r: Reader, end: number): HttpBody {
  const out: { body?: Buffer; end_of_stream?: boolean } = {}
  while (r.pos < end) {
    const tag = r.varint()
    if (tag === ((1 << 3) | LEN)) out.body = r.bytes(end)
    else if (tag === ((2 << 3) | VARINT)) out.end_of_stream = r.varint() !== 0
    else r.skip(tag & 7, end)
  }
  return out
}

function trailers(r: Reader, end: number): { trailers?: HeaderMap } {
  const out: { trailers?: HeaderMap } = {}
  while (r.pos < end) {
    const tag = r.varint()
    if (tag === ((1 << 3) | LEN)) {
      const e = r.lenEnd(end)
      out.trailers = headerMap(r, e)
      r.pos = e
    } else r.skip(tag & 7, end)
  }
  return out
}

/** Nesting of Struct/ListValue accepted (protobufjs has no limit; a hostile peer could recurse). */
const MAX_DEPTH = 32

function structValue(r: Reader, end: number, depth: number): StructValue {
  if (depth > MAX_DEPTH) throw new ExtProcDecodeError('metadata nested too deep')
  const fields: Record<string, Value> = {}
  while (r.pos < end) {
    const tag = r.varint()
    if (tag === ((1 << 3) | LEN)) {
      const e = r.lenEnd(end)
      let key = ''
      let value: Value = {}
      while (r.pos < e) {
        const t = r.varint()
        if (t === ((1 << 3) | LEN)) key = r.string(e)
        else if (t === ((2 << 3) | LEN)) {
          const ve = r.lenEnd(e)
          value = structField(r, ve, depth + 1)
          r.pos = ve
        } else r.skip(t & 7, e)
      }
      // Map keys are own data properties, never a prototype change.
      Object.defineProperty(fields, key, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      })
      r.pos = e
    } else r.skip(tag & 7, end)
  }
  return Object.keys(fields).length > 0 ? { fields } : {}
}

function structField(r: Reader, end: number, depth: number): Value {
  let v: Value = {}
  while (r.pos < end) {
    const tag = r.varint()
    const field = tag >>> 3
    const wire = tag & 7
    if (field === 1 && wire === VARINT) v = { kind: 'null_value', null_value: r.varint() }
    else if (field === 2 && wire === FIXED64) {
      if (r.pos + 8 > end) throw new ExtProcDecodeError('truncated double')
      v = { kind: 'number_value', number_value: r.buf.readDoubleLE(r.pos) }
      r.pos += 8
    } else if (field === 3 && wire === LEN)
      v = { kind: 'string_value', string_value: r.string(end) }
    else if (field === 4 && wire === VARINT)
      v = { kind: 'bool_value', bool_value: r.varint() !== 0 }
    else if (field === 5 && wire === LEN) {
      const e = r.lenEnd(end)
      v = { kind: 'struct_value', struct_value: structValue(r, e, depth + 1) }
      r.pos = e
    } else if (field === 6 && wire === LEN) {
      const e = r.lenEnd(end)
      const values: Value[] = []
      while (r.pos < e) {
        const t = r.varint()
        if (t === ((1 << 3) | LEN)) {
          const ve = r.lenEnd(e)
          values.push(structField(r, ve, depth + 1))
          r.pos = ve
        } else r.skip(t & 7, e)
      }
      v = { kind: 'list_value', list_value: values.length > 0 ? { values } : {} }
      r.pos = e
    } else r.skip(wire, end)
  }
  return v
}

function metadata(r: Reader, end: number): { filter_metadata?: Record<string, StructValue> } {
  const fm: Record<string, StructValue> = {}
  while (r.pos < end) {
    const tag = r.varint()
    if (tag === ((1 << 3) | LEN)) {
      const e = r.lenEnd(end)
      let key = ''
      let value: StructValue = {}
      while (r.pos < e) {
        const t = r.varint()
        if (t === ((1 << 3) | LEN)) key = r.string(e)
        else if (t === ((2 << 3) | LEN)) {
          const ve = r.lenEnd(e)
          value = structValue(r, ve, 0)
          r.pos = ve
        } else r.skip(t & 7, e)
      }
      Object.defineProperty(fm, key, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      })
      r.pos = e
    } else r.skip(tag & 7, end)
  }
  return Object.keys(fm).length > 0 ? { filter_metadata: fm } : {}
}

type RequestField = NonNullable<ProcessingRequest['request']>
const REQUEST_ONEOF: Record<number, RequestField> = {
  2: 'request_headers',
  3: 'response_headers',
  4: 'request_body',
  5: 'response_body',
  6: 'request_trailers',
  7: 'response_trailers',
}

/** A ProcessingRequest, in the shape proto-loader gives (`request` names the set oneof member). */
export function decodeProcessingRequest(buf: Buffer): ProcessingRequest {
  const r = new Reader(buf)
  const end = buf.length
  const out: {
    -readonly [K in keyof ProcessingRequest]: ProcessingRequest[K]
  } = {}
  while (r.pos < end) {
    const tag = r.varint()
    const field = tag >>> 3
    const wire = tag & 7
    if (wire !== LEN) {
      if (field === 10 && wire === VARINT) out.observability_mode = r.varint() !== 0
      else r.skip(wire, end)
      continue
    }
    const e = r.lenEnd(end)
    const oneof = REQUEST_ONEOF[field]
    if (oneof !== undefined) {
      // A oneof: the last member on the wire wins, the others are cleared.
      if (out.request !== undefined) delete out[out.request]
      out.request = oneof
    }
    switch (field) {
      case 2:
        out.request_headers = httpHeaders(r, e)
        break
      case 3:
        out.response_headers = httpHeaders(r, e)
        break
      case 4:
        out.request_body = httpBody(r, e)
        break
      case 5:
        out.response_body = httpBody(r, e)
        break
      case 6:
        out.request_trailers = trailers(r, e)
        break
      case 7:
        out.response_trailers = trailers(r, e)
        break
      case 8:
        out.metadata_context = metadata(r, e)
        break
      case 11: {
        const pc: {
          request_body_mode?: number
          response_body_mode?: number
          send_body_without_waiting_for_header_response?: boolean
        } = {}
        while (r.pos < e) {
          const t = r.varint()
          if (t === ((1 << 3) | VARINT)) pc.request_body_mode = r.varint()
          else if (t === ((2 << 3) | VARINT)) pc.response_body_mode = r.varint()
          else if (t === ((3 << 3) | VARINT))
            pc.send_body_without_waiting_for_header_response = r.varint() !== 0
          else r.skip(t & 7, e)
        }
        out.protocol_config = pc
        break
      }
      default:
        // attributes (9) and anything newer: not read by the EPP.
        break
    }
    r.pos = e
  }
  return out
}

// ---------------------------------------------------------------- encoding
//
// Two passes over the same tree: `size*` returns the encoded length of a message body, `write*`
// writes it. Lengths of nested messages are computed again while writing; the trees are a few
// nodes deep, the body bytes are only copied once.

function varintSize(n: number): number {
  if (n < 0x80) return 1
  if (n < 0x4000) return 2
  if (n < 0x200000) return 3
  if (n < 0x10000000) return 4
  return n < 2 ** 35 ? 5 : 10
}

const lenField = (n: number): number => 1 + varintSize(n) + n
const strBytes = (s: string): number => Buffer.byteLength(s, 'utf8')

class Writer {
  pos = 0
  readonly buf: Buffer
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size)
  }
  varint(n: number): void {
    let v = n
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80
      v = Math.floor(v / 128)
    }
    this.buf[this.pos++] = v
  }
  tag(field: number, wire: number): void {
    this.buf[this.pos++] = (field << 3) | wire
  }
  len(field: number, n: number): void {
    this.tag(field, LEN)
    this.varint(n)
  }
  string(field: number, s: string): void {
    const n = strBytes(s)
    this.len(field, n)
    this.pos += this.buf.write(s, this.pos, n, 'utf8')
  }
  bytes(field: number, b: Uint8Array): void {
    this.len(field, b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }
}

function headerValueOptionSize(o: HeaderValueOptionOut): number {
  const h = lenField(strBytes(o.header.key)) + lenField(o.header.raw_value.length)
  return lenField(h) + (o.append_action !== 0 ? 1 + varintSize(o.append_action) : 0)
}

function headerMutationSize(m: HeaderMutationOut): number {
  let n = 0
  for (const o of m.set_headers ?? []) n += lenField(headerValueOptionSize(o))
  for (const s of m.remove_headers ?? []) n += lenField(strBytes(s))
  return n
}

function writeHeaderMutation(w: Writer, m: HeaderMutationOut): void {
  for (const o of m.set_headers ?? []) {
    w.len(1, headerValueOptionSize(o))
    w.len(1, lenField(strBytes(o.header.key)) + lenField(o.header.raw_value.length))
    w.string(1, o.header.key)
    w.bytes(3, o.header.raw_value)
    if (o.append_action !== 0) {
      w.tag(3, VARINT)
      w.varint(o.append_action)
    }
  }
  for (const s of m.remove_headers ?? []) w.string(2, s)
}

type BodyMutationOut = NonNullable<CommonResponseOut['body_mutation']>

function bodyMutationSize(b: BodyMutationOut): number {
  if ('body' in b) return lenField(b.body.length)
  const s = b.streamed_response
  return lenField(lenField(s.body.length) + (s.end_of_stream ? 2 : 0))
}

function writeBodyMutation(w: Writer, b: BodyMutationOut): void {
  if ('body' in b) {
    w.bytes(1, b.body)
    return
  }
  const s = b.streamed_response
  w.len(3, lenField(s.body.length) + (s.end_of_stream ? 2 : 0))
  w.bytes(1, s.body)
  if (s.end_of_stream) {
    w.tag(2, VARINT)
    w.varint(1)
  }
}

function commonSize(c: CommonResponseOut): number {
  let n = 0
  if (c.header_mutation !== undefined) n += lenField(headerMutationSize(c.header_mutation))
  if (c.body_mutation !== undefined) n += lenField(bodyMutationSize(c.body_mutation))
  if (c.clear_route_cache === true) n += 2
  return n
}

function writeCommon(w: Writer, c: CommonResponseOut): void {
  if (c.header_mutation !== undefined) {
    w.len(2, headerMutationSize(c.header_mutation))
    writeHeaderMutation(w, c.header_mutation)
  }
  if (c.body_mutation !== undefined) {
    w.len(3, bodyMutationSize(c.body_mutation))
    writeBodyMutation(w, c.body_mutation)
  }
  if (c.clear_route_cache === true) {
    w.tag(5, VARINT)
    w.varint(1)
  }
}

/** HeadersResponse / BodyResponse: `{ response?: CommonResponse }`. */
function wrappedSize(m: { response?: CommonResponseOut }): number {
  return m.response !== undefined ? lenField(commonSize(m.response)) : 0
}

function writeWrapped(w: Writer, m: { response?: CommonResponseOut }): void {
  if (m.response === undefined) return
  w.len(1, commonSize(m.response))
  writeCommon(w, m.response)
}

function structSize(s: StructValue, depth: number): number {
  if (depth > MAX_DEPTH) throw new ExtProcDecodeError('metadata nested too deep')
  let n = 0
  for (const [k, v] of Object.entries(s.fields ?? {}))
    n += lenField(lenField(strBytes(k)) + lenField(valueSize(v, depth + 1)))
  return n
}

function valueSize(v: Value, depth: number): number {
  if (v.string_value !== undefined) return lenField(strBytes(v.string_value))
  if (v.number_value !== undefined) return 9
  if (v.bool_value !== undefined) return 2
  if (v.struct_value !== undefined) return lenField(structSize(v.struct_value, depth))
  if (v.list_value !== undefined) {
    let n = 0
    for (const x of v.list_value.values ?? []) n += lenField(valueSize(x, depth + 1))
    return lenField(n)
  }
  return 2 // null_value: NULL_VALUE (0), written explicitly so the oneof is set
}

function writeStruct(w: Writer, s: StructValue, depth: number): void {
  for (const [k, v] of Object.entries(s.fields ?? {})) {
    const vs = valueSize(v, depth + 1)
    w.len(1, lenField(strBytes(k)) + lenField(vs))
    w.string(1, k)
    w.len(2, vs)
    writeValue(w, v, depth + 1)
  }
}

function writeValue(w: Writer, v: Value, depth: number): void {
  if (v.string_value !== undefined) w.string(3, v.string_value)
  else if (v.number_value !== undefined) {
    w.tag(2, FIXED64)
    w.buf.writeDoubleLE(v.number_value, w.pos)
    w.pos += 8
  } else if (v.bool_value !== undefined) {
    w.tag(4, VARINT)
    w.varint(v.bool_value ? 1 : 0)
  } else if (v.struct_value !== undefined) {
    w.len(5, structSize(v.struct_value, depth))
    writeStruct(w, v.struct_value, depth)
  } else if (v.list_value !== undefined) {
    const values = v.list_value.values ?? []
    let n = 0
    for (const x of values) n += lenField(valueSize(x, depth + 1))
    w.len(6, n)
    for (const x of values) {
      w.len(1, valueSize(x, depth + 1))
      writeValue(w, x, depth + 1)
    }
  } else {
    w.tag(1, VARINT)
    w.varint(0)
  }
}

type Immediate = NonNullable<ProcessingResponse['immediate_response']>

function immediateSize(m: Immediate): number {
  let n = lenField(m.status.code !== 0 ? 1 + varintSize(m.status.code) : 0)
  if (m.headers !== undefined) n += lenField(headerMutationSize(m.headers))
  if (m.body !== undefined && m.body.length > 0) n += lenField(m.body.length)
  if (m.details !== undefined && m.details !== '') n += lenField(strBytes(m.details))
  return n
}

function writeImmediate(w: Writer, m: Immediate): void {
  w.len(1, m.status.code !== 0 ? 1 + varintSize(m.status.code) : 0)
  if (m.status.code !== 0) {
    w.tag(1, VARINT)
    w.varint(m.status.code)
  }
  if (m.headers !== undefined) {
    w.len(2, headerMutationSize(m.headers))
    writeHeaderMutation(w, m.headers)
  }
  if (m.body !== undefined && m.body.length > 0) w.bytes(3, m.body)
  if (m.details !== undefined && m.details !== '') w.string(5, m.details)
}

const WRAPPED = [
  ['request_headers', 1],
  ['response_headers', 2],
  ['request_body', 3],
  ['response_body', 4],
] as const

/** A ProcessingResponse as the EPP builds it (proto.ts shapes) → protobuf bytes. */
export function encodeProcessingResponse(m: ProcessingResponse): Buffer {
  let size = 0
  for (const [k] of WRAPPED) {
    const part = m[k]
    if (part !== undefined) size += lenField(wrappedSize(part))
  }
  // TrailersResponse: the EPP never mutates trailers, it only acknowledges them (empty message).
  if (m.request_trailers !== undefined) size += 2
  if (m.response_trailers !== undefined) size += 2
  if (m.immediate_response !== undefined) size += lenField(immediateSize(m.immediate_response))
  if (m.dynamic_metadata !== undefined) size += lenField(structSize(m.dynamic_metadata, 0))
  const w = new Writer(size)
  for (const [k, field] of WRAPPED) {
    const part = m[k]
    if (part === undefined) continue
    w.len(field, wrappedSize(part))
    writeWrapped(w, part)
  }
  if (m.request_trailers !== undefined) w.len(5, 0)
  if (m.response_trailers !== undefined) w.len(6, 0)
  if (m.immediate_response !== undefined) {
    w.len(7, immediateSize(m.immediate_response))
    writeImmediate(w, m.immediate_response)
  }
  if (m.dynamic_metadata !== undefined) {
    w.len(8, structSize(m.dynamic_metadata, 0))
    writeStruct(w, m.dynamic_metadata, 0)
  }
  if (w.pos !== size) throw new ExtProcDecodeError(`encoded ${w.pos} bytes, sized ${size}`)
  return w.buf
}

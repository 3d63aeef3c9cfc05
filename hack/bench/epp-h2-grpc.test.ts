import { connect, type IncomingHttpHeaders } from 'node:http2'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type BidiCall,
  type BidiMethod,
  encodeGrpcMessage,
  GrpcStatus,
  GrpcTransportError,
  type H2GrpcServer,
  listenBidi,
  MessageReader,
  messagePrefix,
  parseGrpcTimeout,
} from './epp-h2-grpc.js'

const framed = (...msgs: Buffer[]): Buffer =>
  Buffer.concat(msgs.flatMap((m) => [messagePrefix(m.length), m]))

/** Three messages: empty, short, and longer than any prefix. */
const MSGS = [Buffer.alloc(0), Buffer.from('abc'), Buffer.from('x'.repeat(300))]

function readAll(chunks: Buffer[], max = 1 << 20): string[] {
  const out: string[] = []
  const r = new MessageReader(max, (m) => out.push(m.toString()))
  for (const c of chunks) r.push(c)
  expect(r.partial).toBe(false)
  return out
}

describe('MessageReader', () => {
  const whole = framed(...MSGS)
  const want = MSGS.map((m) => m.toString())

  it('parses several messages from one chunk', () => {
    expect(readAll([whole])).toEqual(want)
  })

  it('parses the same messages whatever byte the chunk is cut at', () => {
    for (let i = 0; i <= whole.length; i++)
      expect(readAll([whole.subarray(0, i), whole.subarray(i)]), `cut at ${i}`).toEqual(want)
  })

  it('parses them fed one byte at a time', () => {
    expect(readAll([...whole].map((b) => Buffer.from([b])))).toEqual(want)
  })

  it('hands a message that lies in one chunk over as a view of it (no copy)', () => {
    const chunk = framed(Buffer.from('hello'))
    let got: Buffer | undefined
    new MessageReader(100, (m) => {
      got = m
    }).push(chunk)
    expect(got?.buffer).toBe(chunk.buffer)
  })

  it('says a message is partial until its last byte', () => {
    const r = new MessageReader(100, () => {})
    const f = framed(Buffer.from('abcd'))
    r.push(f.subarray(0, 3))
    expect(r.partial).toBe(true)
    r.push(f.subarray(3, f.length - 1))
    expect(r.partial).toBe(true)
    r.push(f.subarray(f.length - 1))
    expect(r.partial).toBe(false)
  })

  it('refuses a message over the limit with RESOURCE_EXHAUSTED, from its prefix alone', () => {
    const r = new MessageReader(10, () => {})
    const err = (() => {
      try {
        r.push(messagePrefix(11))
      } catch (e) {
        return e
      }
      return undefined
    })()
    expect(err).toBeInstanceOf(GrpcTransportError)
    expect((err as GrpcTransportError).code).toBe('GRPC_MESSAGE_TOO_LARGE')
    expect((err as GrpcTransportError).status).toBe(GrpcStatus.RESOURCE_EXHAUSTED)
    // The limit itself passes.
    expect(readAll([framed(Buffer.alloc(10))], 10)).toHaveLength(1)
  })

  it('refuses a compressed message with UNIMPLEMENTED', () => {
    const f = framed(Buffer.from('abc'))
    f[0] = 1
    expect(() => new MessageReader(100, () => {}).push(f)).toThrow(
      expect.objectContaining({ code: 'GRPC_COMPRESSED', status: GrpcStatus.UNIMPLEMENTED }),
    )
  })
})

describe('parseGrpcTimeout', () => {
  it('reads each unit', () => {
    expect(parseGrpcTimeout('2H')).toBe(7_200_000)
    expect(parseGrpcTimeout('3M')).toBe(180_000)
    expect(parseGrpcTimeout('5S')).toBe(5000)
    expect(parseGrpcTimeout('100m')).toBe(100)
    expect(parseGrpcTimeout('2500u')).toBe(2.5)
    expect(parseGrpcTimeout('3000000n')).toBe(3)
  })
  it('ignores absent and malformed values', () => {
    expect(parseGrpcTimeout(undefined)).toBeUndefined()
    expect(parseGrpcTimeout('5')).toBeUndefined()
    expect(parseGrpcTimeout('5s')).toBeUndefined()
    expect(parseGrpcTimeout('123456789S')).toBeUndefined()
    expect(parseGrpcTimeout(['5S'])).toBeUndefined()
  })
})

describe('encodeGrpcMessage', () => {
  it('percent-encodes what the spec says and nothing else', () => {
    expect(encodeGrpcMessage('plain text: ok')).toBe('plain text: ok')
    expect(encodeGrpcMessage('100%')).toBe('100%25')
    expect(encodeGrpcMessage('é\n')).toBe('%C3%A9%0A')
  })
})

// The server end to end through a node:http2 client, with a method whose messages are raw bytes.

interface Seen {
  messages: string[]
  ended: number
  cancelled: number
  call?: BidiCall<Buffer>
}

let server: H2GrpcServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

/** An echo method: each message answered with itself; ends OK when the client half-closes. */
async function echoServer(max = 1024): Promise<{ port: number; seen: Seen }> {
  const seen: Seen = { messages: [], ended: 0, cancelled: 0 }
  const method: BidiMethod<Buffer, Buffer> = {
    path: '/test.Echo/Chat',
    decode: (b) => b,
    encode: (b) => b,
    maxMessageBytes: max,
    open: (call) => {
      seen.call = call
      return {
        onMessage: (m) => {
          seen.messages.push(m.toString())
          call.send(m)
        },
        onEnd: () => {
          seen.ended++
          call.end()
        },
        onCancel: () => {
          seen.cancelled++
        },
      }
    },
  }
  server = await listenBidi(method, '127.0.0.1', 0)
  return { port: server.port, seen }
}

interface Answer {
  headers: IncomingHttpHeaders
  trailers: IncomingHttpHeaders
  messages: string[]
}

/** One call: sends `chunks` as they are (one DATA write each), then half-closes unless told not to. */
function call(
  port: number,
  chunks: Buffer[],
  opts: { path?: string; end?: boolean; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const client = connect(`http://127.0.0.1:${port}`)
  const req = client.request({
    ':method': 'POST',
    ':path': opts.path ?? '/test.Echo/Chat',
    'content-type': 'application/grpc',
    te: 'trailers',
    ...opts.headers,
  })
  const messages: string[] = []
  const reader = new MessageReader(1 << 20, (m) => messages.push(m.toString()))
  return new Promise((resolve, reject) => {
    let headers: IncomingHttpHeaders = {}
    let trailers: IncomingHttpHeaders = {}
    req.on('response', (h) => {
      headers = h
    })
    req.on('trailers', (t) => {
      trailers = t
    })
    req.on('data', (c: Buffer) => reader.push(c))
    req.on('error', reject)
    req.on('close', () => {
      client.close()
      resolve({ headers, trailers, messages })
    })
    for (const c of chunks) req.write(c)
    if (opts.end !== false) req.end()
  })
}

describe('listenBidi', () => {
  it('answers each message and ends with grpc-status 0 in the trailers', async () => {
    const { port, seen } = await echoServer()
    const whole = framed(...MSGS)
    // Several messages in one DATA frame, and one cut across two.
    const a = await call(port, [whole.subarray(0, 7), whole.subarray(7)])
    expect(a.headers[':status']).toBe(200)
    expect(a.headers['content-type']).toBe('application/grpc')
    expect(a.messages).toEqual(MSGS.map((m) => m.toString()))
    expect(a.trailers['grpc-status']).toBe('0')
    expect(seen.ended).toBe(1)
    expect(seen.cancelled).toBe(0)
  })

  it('answers an unknown method UNIMPLEMENTED (12), trailers-only', async () => {
    const { port, seen } = await echoServer()
    const a = await call(port, [framed(Buffer.from('x'))], { path: '/test.Echo/Other' })
    expect(a.headers['grpc-status']).toBe('12')
    expect(a.messages).toEqual([])
    expect(seen.call).toBeUndefined()
  })

  it('answers a message over the limit RESOURCE_EXHAUSTED (8) and settles the call', async () => {
    const { port, seen } = await echoServer(16)
    const a = await call(port, [framed(Buffer.from('ok')), framed(Buffer.alloc(17))])
    expect(a.messages).toEqual(['ok'])
    expect(a.trailers['grpc-status']).toBe('8')
    expect(a.trailers['grpc-message']).toContain('larger than max')
    expect(seen.messages).toEqual(['ok'])
    expect(seen.cancelled).toBe(1)
    expect(seen.call?.done).toBe(true)
  })

  it('ends a call past its grpc-timeout DEADLINE_EXCEEDED (4) and settles it', async () => {
    const { port, seen } = await echoServer()
    const a = await call(port, [], { end: false, headers: { 'grpc-timeout': '1m' } })
    expect(a.headers['grpc-status']).toBe('4')
    expect(seen.cancelled).toBe(1)
  })

  it('settles a call the client resets mid-stream, once', async () => {
    const { port, seen } = await echoServer()
    const client = connect(`http://127.0.0.1:${port}`)
    const req = client.request({
      ':method': 'POST',
      ':path': '/test.Echo/Chat',
      'content-type': 'application/grpc',
    })
    const f = framed(Buffer.from('first'), Buffer.from('second'))
    // One whole message and part of the next, then RST_STREAM (CANCEL).
    req.write(f.subarray(0, f.length - 3))
    await new Promise<void>((resolve) => req.once('data', () => resolve()))
    req.close(8)
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (seen.cancelled > 0) resolve()
        else setImmediate(check)
      }
      check()
    })
    client.close()
    expect(seen.messages).toEqual(['first'])
    expect(seen.cancelled).toBe(1)
    expect(seen.ended).toBe(0)
    expect(seen.call?.done).toBe(true)
    expect(seen.call?.send(Buffer.from('late'))).toBe(false)
  })
})

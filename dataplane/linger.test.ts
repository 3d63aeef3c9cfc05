// Lingering close on real sockets: a client still uploading when the gateway refuses its body reads
// the answer (no reset swallows it), and the lingering itself is bounded by time and bytes.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { nodeInbound } from './inbound.js'
import { closeAfterAnswer, type LingerOptions } from './linger.js'

const HOST = '127.0.0.171'
let server: Server | undefined

afterEach(async () => {
  server?.closeAllConnections()
  await new Promise((r) => server?.close(r) ?? r(undefined))
  server = undefined
})

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<number> {
  const s = createServer(handler)
  server = s
  await new Promise<void>((r) => s.listen(0, HOST, r))
  return (s.address() as AddressInfo).port
}

function answer413(res: ServerResponse): void {
  const body = JSON.stringify({
    error: { message: 'too large', type: 'invalid_request_error', code: 'request_too_large' },
  })
  res.writeHead(413, { 'content-type': 'application/json', 'content-length': body.length })
  res.end(body)
}

interface Upload {
  /** What the client read before the connection ended. */
  readonly received: string
  /** 'end': the server closed cleanly (FIN); 'error': a reset or failed write ended it. */
  readonly ended: 'end' | 'error'
}

/** Sends `head` then `body` (or an endless chunked body when `body` is 'endless') on one socket. */
function upload(port: number, head: string, body: Buffer | 'endless'): Promise<Upload> {
  return new Promise((resolve) => {
    // An endless uploader ignores the server's FIN and keeps sending (allowHalfOpen): only the
    // server's own bounds can end the exchange.
    const s = connect({ host: HOST, port, allowHalfOpen: body === 'endless' })
    let received = ''
    let ended: Upload['ended'] | undefined
    let pump: NodeJS.Timeout | undefined
    s.on('data', (c: Buffer) => {
      received += c.toString('latin1')
    })
    s.once('end', () => {
      ended ??= 'end'
    })
    s.on('error', () => {
      ended ??= 'error'
    })
    s.once('close', () => {
      clearInterval(pump)
      resolve({ received, ended: ended ?? 'end' })
    })
    s.write(head)
    if (body !== 'endless') {
      s.write(body)
      return
    }
    const chunk = Buffer.alloc(64 * 1024, 0x20)
    const frame = Buffer.concat([
      Buffer.from(`${chunk.length.toString(16)}\r\n`),
      chunk,
      Buffer.from('\r\n'),
    ])
    pump = setInterval(() => {
      while (s.writable && s.write(frame)) {}
    }, 1)
  })
}

const post = (framing: string) =>
  `POST /v1/chat/completions HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/json\r\n${framing}\r\n\r\n`

describe('lingering close after an early answer', () => {
  it('a client uploading 11 MiB past a declared-length limit always reads its 413', async () => {
    const port = await serve((req, res) => {
      nodeInbound(req, res)
        .readBody(10 * 1024 * 1024)
        .then(
          () => res.end('read'),
          () => answer413(res),
        )
    })
    const body = Buffer.alloc(11 * 1024 * 1024, 0x20)
    // Several at once: the race (reset before the answer is read) needs the upload in flight.
    const results = await Promise.all(
      Array.from({ length: 6 }, () => upload(port, post(`Content-Length: ${body.length}`), body)),
    )
    for (const r of results) {
      expect(r.received.slice(0, 12)).toBe('HTTP/1.1 413')
      expect(r.received.toLowerCase()).toContain('connection: close')
    }
  }, 60_000)

  it('a chunked upload that passes the limit mid-way reads its 413 and is closed cleanly', async () => {
    const port = await serve((req, res) => {
      nodeInbound(req, res)
        .readBody(1024 * 1024)
        .then(
          () => res.end('read'),
          () => answer413(res),
        )
    })
    const chunk = Buffer.alloc(2 * 1024 * 1024, 0x20)
    const body = Buffer.concat([
      Buffer.from(`${chunk.length.toString(16)}\r\n`),
      chunk,
      Buffer.from('\r\n0\r\n\r\n'),
    ])
    const results = await Promise.all(
      Array.from({ length: 6 }, () => upload(port, post('Transfer-Encoding: chunked'), body)),
    )
    for (const r of results) {
      expect(r.received.slice(0, 12)).toBe('HTTP/1.1 413')
      // The whole body arrived while lingering: a FIN, not a reset.
      expect(r.ended).toBe('end')
    }
  }, 60_000)

  function refusing(opts: LingerOptions) {
    return (req: IncomingMessage, res: ServerResponse): void => {
      closeAfterAnswer(req, res, opts)
      answer413(res)
    }
  }

  it('an endless upload is cut once the linger time is over', async () => {
    // The byte budget is out of reach here: only the time can end it.
    const port = await serve(refusing({ maxMs: 300, maxBytes: Number.MAX_SAFE_INTEGER }))
    const r = await upload(port, post('Transfer-Encoding: chunked'), 'endless')
    expect(r.received.slice(0, 12)).toBe('HTTP/1.1 413')
  }, 20_000)

  it('an endless upload is cut once the linger byte budget is spent', async () => {
    // The time budget is out of reach within the test's timeout: only the bytes can end it.
    const port = await serve(refusing({ maxMs: 10 * 60_000, maxBytes: 1024 * 1024 }))
    const r = await upload(port, post('Transfer-Encoding: chunked'), 'endless')
    expect(r.received.slice(0, 12)).toBe('HTTP/1.1 413')
  }, 20_000)
})

// Lingering close, as nginx (`lingering_close`) and Apache do it, for answers sent before the
// request body was read (413 request_too_large, a refused request line): the client may still be
// uploading when the answer is written. Closing the socket then, with unread bytes in the kernel's
// receive queue, makes the kernel send a TCP reset instead of a FIN, and a reset makes the client's
// stack drop what it has not read yet, the answer included (or its write fails first): the client
// sees ECONNRESET, never the 413. So the answer says `connection: close`, the gateway half-closes
// (FIN after the answer) and keeps reading and discarding the rest of the body for a bounded time
// and byte count, then closes. The client reads the answer, stops sending and closes its side.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

/** Longest a connection lingers after its answer was written. */
export const LINGER_MS = 2000
/** Most request bytes discarded while lingering; past it the socket is closed at once. */
export const LINGER_MAX_BYTES = 16 * 1024 * 1024

export interface LingerOptions {
  readonly maxMs?: number
  readonly maxBytes?: number
}

type Lingering = Socket & { destroySoon?: () => void }

/**
 * Call before answering a request whose body will not be read: marks the answer
 * `connection: close` and makes the connection close by lingering (see above) once it is written.
 */
export function closeAfterAnswer(
  req: IncomingMessage,
  res: ServerResponse,
  opts: LingerOptions = {},
): void {
  const maxMs = opts.maxMs ?? LINGER_MS
  const maxBytes = opts.maxBytes ?? LINGER_MAX_BYTES
  if (!res.headersSent) res.setHeader('connection', 'close')
  const socket = req.socket as Lingering
  let discarded = 0
  let lingering = false
  let timer: NodeJS.Timeout | undefined
  // Read and drop the rest of the body (the parser keeps feeding the request until its end).
  req.on('data', (c: Buffer) => {
    discarded += c.length
    if (lingering && discarded > maxBytes) socket.destroy()
  })
  req.resume()
  // Node ends a `connection: close` exchange with socket.destroySoon() once the answer is written
  // (so does @hono/node-server's drain of an unread body): FIN, then close as soon as the FIN is
  // written, without waiting for the client. On this one socket it lingers instead.
  const destroySoon = socket.destroySoon?.bind(socket)
  if (destroySoon === undefined) return
  const closeWhenWritten = (): void => {
    clearTimeout(timer)
    destroySoon()
  }
  socket.destroySoon = () => {
    if (lingering) return
    lingering = true
    if (socket.writable) socket.end()
    // The whole body is in: nothing left to read, the normal close is clean.
    if (req.complete) return closeWhenWritten()
    if (discarded > maxBytes) return void socket.destroy()
    req.once('end', closeWhenWritten)
    timer = setTimeout(() => socket.destroy(), maxMs)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
  }
}

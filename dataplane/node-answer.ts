// Writes a handler's fetch `Response` to Node's `ServerResponse`, for the inference routes the
// listener serves without Hono (app.ts nodeListener). Their answers are almost always already
// written (RESPONSE_ALREADY_SENT: proxy/respond.ts writes engine answers straight to Node); what
// is left are the gateway's own errors (small JSON) and, rarely, a body streamed through a WHATWG
// stream (a non-streamed engine answer past HOLD_WHOLE_BYTES). Same wire shape as the Hono
// adapter gives them: a body that ends within two reads gets a content-length, a longer one is
// chunked and pulled only as fast as the client reads; a client that leaves cancels the stream.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { errors } from './errors.js'
import { drained } from './proxy/respond.js'

export async function writeAnswer(r: Response, res: ServerResponse): Promise<void> {
  if (r === RESPONSE_ALREADY_SENT) return
  const headers: OutgoingHttpHeaders = {}
  r.headers.forEach((v, k) => {
    headers[k] = v
  })
  const body = r.body
  if (body === null) {
    res.writeHead(r.status, headers)
    res.end()
    return
  }
  const reader = body.getReader()
  const cancel = (): void => {
    reader.cancel().catch(() => {})
  }
  res.once('close', cancel)
  try {
    const first = await reader.read()
    const second = first.done ? first : await reader.read()
    if (second.done) {
      const whole = first.done ? undefined : first.value
      if (headers['content-length'] === undefined)
        headers['content-length'] = whole?.byteLength ?? 0
      res.writeHead(r.status, headers)
      res.end(whole)
      return
    }
    res.writeHead(r.status, headers)
    let chunk: Uint8Array | undefined = first.done ? undefined : first.value
    if (chunk !== undefined) res.write(chunk)
    chunk = second.value
    for (;;) {
      if (res.destroyed) return
      if (!res.write(chunk)) await drained(res)
      const next = await reader.read()
      if (next.done) break
      chunk = next.value
    }
    if (!res.destroyed) res.end()
  } catch {
    // The body broke (its producer has recorded why): a client that has the status already can
    // only see the connection cut; one that has nothing gets a clean 500.
    if (res.headersSent) {
      res.destroy()
      return
    }
    const e = errors.internal()
    const text = JSON.stringify(e.toBody())
    res.writeHead(e.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    })
    res.end(text)
  } finally {
    res.off('close', cancel)
  }
}

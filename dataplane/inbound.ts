// The client request as the handler needs it: headers, a bounded body read, and a signal for
// "client went away". On Node (the production path) it reads the IncomingMessage directly:
// materialising a WHATWG Request (headers object, body stream, AbortSignal) for every call was the
// largest avoidable cost on the request path in the proxy benchmark profile. Hono's
// `app.request()` (no Node bindings) falls back to the fetch Request.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIPv4 } from 'node:net'
import { readBodyLimited } from './body.js'
import { errors } from './errors.js'
import { closeAfterAnswer } from './linger.js'

export interface Inbound {
  /** The TCP peer (IPv4-mapped IPv6 written as plain IPv4); undefined off Node. */
  readonly remoteAddress: string | undefined
  /** The Node response, on Node: streams are written to it directly (proxy/respond.ts). */
  readonly nodeResponse?: ServerResponse
  header(name: string): string | undefined
  /**
   * Request headers with lower-cased names, read-only: on Node the IncomingMessage's own object
   * (not copied per request; the few multi-valued ones are arrays).
   */
  headers(): Readonly<Record<string, string | readonly string[] | undefined>>
  readBody(limit: number): Promise<Uint8Array>
  /** Calls `cb` once if the client disconnects before the response finished; returns an unsubscribe. */
  onClientGone(cb: () => void): () => void
}

export function nodeInbound(req: IncomingMessage, res: ServerResponse): Inbound {
  return new NodeInbound(req, res)
}

/**
 * A class, not an object literal of closures: its methods are shared by every request (only
 * `header`, which callers pass around detached, is a per-request arrow function).
 */
class NodeInbound implements Inbound {
  readonly #req: IncomingMessage
  readonly nodeResponse: ServerResponse
  /** Read at once: a destroyed socket no longer knows its peer. */
  readonly remoteAddress: string | undefined
  constructor(req: IncomingMessage, res: ServerResponse) {
    this.#req = req
    this.nodeResponse = res
    const peer = req.socket.remoteAddress
    this.remoteAddress = peer?.startsWith('::ffff:') && isIPv4(peer.slice(7)) ? peer.slice(7) : peer
  }

  readonly header = (name: string): string | undefined => {
    const v = this.#req.headers[name]
    return Array.isArray(v) ? v.join(', ') : v
  }

  headers(): Readonly<Record<string, string | readonly string[] | undefined>> {
    return this.#req.headers
  }

  readBody(limit: number): Promise<Uint8Array> {
    const req = this.#req
    const res = this.nodeResponse
    const declared = req.headers['content-length']
    if (declared !== undefined && Number(declared) > limit) {
      closeAfterAnswer(req, res)
      return Promise.reject(errors.bodyTooLarge(limit))
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      let total = 0
      const onData = (c: Buffer): void => {
        total += c.length
        if (total > limit) {
          cleanup()
          // The rest is discarded, not buffered; the connection closes after the 413 (lingering,
          // so the client gets to read it: linger.ts).
          closeAfterAnswer(req, res)
          reject(errors.bodyTooLarge(limit))
          return
        }
        chunks.push(c)
      }
      const onEnd = (): void => {
        cleanup()
        resolve(chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks))
      }
      const onError = (e: Error): void => {
        cleanup()
        reject(e)
      }
      const cleanup = (): void => {
        req.off('data', onData)
        req.off('end', onEnd)
        req.off('error', onError)
      }
      req.on('data', onData)
      req.on('end', onEnd)
      req.on('error', onError)
    })
  }

  onClientGone(cb: () => void): () => void {
    const res = this.nodeResponse
    const onClose = (): void => {
      if (!res.writableFinished) cb()
    }
    // 'close' fires once; `on` spares the once-wrapper `once` allocates.
    res.on('close', onClose)
    return () => res.off('close', onClose)
  }
}

export function fetchInbound(req: Request): Inbound {
  return {
    remoteAddress: undefined,
    header: (name) => req.headers.get(name) ?? undefined,
    headers() {
      const out: Record<string, string> = {}
      req.headers.forEach((v, k) => {
        out[k] = v
      })
      return out
    },
    readBody: (limit) => readBodyLimited(req, limit),
    onClientGone(cb) {
      if (req.signal.aborted) {
        cb()
        return () => {}
      }
      req.signal.addEventListener('abort', cb, { once: true })
      return () => req.signal.removeEventListener('abort', cb)
    },
  }
}

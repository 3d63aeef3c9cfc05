// The fast path for published snapshots: long-poll the operator's push channel
// (docs/snapshot-protocol.md). `GET <url>?after=<version>&timeoutSeconds=<n>` answers at once
// with a newer snapshot, or holds the request until one exists (then 200) or the wait ends
// (304). Any operator replica can answer: they publish byte-identical content. On errors the data
// plane keeps serving what it has and retries with jittered backoff; the ConfigMap file source
// (`--snapshot`) stays the durable fallback and both feed the same store (newest version wins).
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { request } from 'undici'
import { validateSnapshot } from '../api/index.js'
import type { Logger } from './log.js'
import type { GatewayMetrics } from './metrics.js'
import type { SnapshotStore } from './snapshot-store.js'

export interface PushSourceOptions {
  /** e.g. http://infer-gateway-operator.infer-gateway-system:8082/v1/snapshot */
  readonly url: string
  readonly store: SnapshotStore
  readonly metrics: GatewayMetrics
  readonly log: Logger
  /**
   * File holding the push channel's bearer token (the mounted push-token Secret). Read before
   * every poll: kubelet may create it after the pod starts, and rotates it in place.
   */
  readonly tokenFile?: string
  readonly waitSeconds?: number
  readonly minBackoffMs?: number
  readonly maxBackoffMs?: number
}

export class PushSource {
  private readonly opts: PushSourceOptions
  private stopped = false
  private abort = new AbortController()
  private loop: Promise<void> | undefined
  private failures = 0
  private firstResolve: (() => void) | undefined

  constructor(opts: PushSourceOptions) {
    this.opts = opts
  }

  /** Starts polling; resolves after the first answer (snapshot or not) or `timeoutMs`. */
  start(timeoutMs = 5000): Promise<void> {
    const first = new Promise<void>((r) => {
      this.firstResolve = r
      setTimeout(r, timeoutMs).unref()
    })
    this.loop = this.run()
    return first
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.abort.abort()
    await this.loop
  }

  private authorization(): Record<string, string> {
    if (this.opts.tokenFile === undefined) return {}
    let token = ''
    try {
      token = readFileSync(this.opts.tokenFile, 'utf8').trim()
    } catch {
      // Not mounted yet: poll without it; the 401 is logged and retried with backoff.
    }
    return token ? { authorization: `Bearer ${token}` } : {}
  }

  private async run(): Promise<void> {
    const { store, log, metrics } = this.opts
    const longWait = this.opts.waitSeconds ?? 30
    let first = true
    while (!this.stopped) {
      // The first poll does not wait: a data plane starting without any snapshot should learn at
      // once whether the operator has one, then long-poll for changes.
      const wait = first ? 0 : longWait
      first = false
      const after = store.snapshot?.version ?? 0
      const u = new URL(this.opts.url)
      u.searchParams.set('after', String(after))
      u.searchParams.set('timeoutSeconds', String(wait))
      try {
        const res = await request(u, {
          method: 'GET',
          headers: { 'accept-encoding': 'gzip', ...this.authorization() },
          signal: this.abort.signal,
          headersTimeout: (wait + 10) * 1000,
          bodyTimeout: 30_000,
        })
        if (res.statusCode === 304) {
          await res.body.dump()
        } else if (res.statusCode === 200) {
          let buf = Buffer.from(await res.body.arrayBuffer())
          if (res.headers['content-encoding'] === 'gzip') buf = gunzipSync(buf)
          const snapshot = validateSnapshot(JSON.parse(buf.toString('utf8')))
          if (store.offer(snapshot) === 'applied') {
            metrics.reloads.inc({ result: 'success' })
            metrics.snapshotVersion.set(snapshot.version)
            metrics.lastReloadSuccess.set(Date.now() / 1000)
            log('info', 'snapshot received from push channel', {
              version: snapshot.version,
              hash: snapshot.hash,
            })
          }
        } else {
          const text = (await res.body.text()).slice(0, 200)
          throw new Error(`push channel answered ${res.statusCode}: ${text}`)
        }
        this.failures = 0
      } catch (e) {
        if (this.stopped) break
        this.failures++
        metrics.reloads.inc({ result: 'failure' })
        const min = this.opts.minBackoffMs ?? 250
        const max = this.opts.maxBackoffMs ?? 5000
        const step = Math.min(max, min * 2 ** Math.min(10, this.failures - 1))
        const delay = step / 2 + Math.random() * (step / 2)
        // Log the first failure and then sparsely: an operator restart is normal, not an incident.
        if (this.failures === 1 || this.failures % 20 === 0) {
          log('warn', 'push channel unavailable; keeping the current snapshot', {
            error: e instanceof Error ? e.message : String(e),
            failures: this.failures,
          })
        }
        this.firstResolve?.()
        await new Promise((r) => setTimeout(r, delay))
        continue
      }
      this.firstResolve?.()
    }
  }
}

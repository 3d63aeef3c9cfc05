// Messages between the primary and the workers of `--workers N` (node:cluster IPC with the
// `advanced` serialization, so scraped metrics travel as structured clones). Every message of ours
// has a `t` starting with `igw:`; prom-client's own cluster messages (`type`) pass by untouched.
import type { ScrapeResult } from '../engines/scraper.js'
import type { RateLimitToPrimary, RateLimitToWorker } from './ratelimit.js'
import type { PeerUpdate } from './relay.js'

/** Env of a worker: its stable index (1..N, kept across restarts) and the command's arguments. */
export const WORKER_INDEX_ENV = 'INFER_GATEWAY_WORKER_INDEX'
/**
 * The dataplane arguments as JSON. A worker re-runs the same entry point, but not always with the
 * same argv: a single executable (SEA) sees its own path twice in argv, so argv is not reliable.
 */
export const WORKER_ARGS_ENV = 'INFER_GATEWAY_WORKER_ARGS'

export type ToWorker =
  /** A scrape of endpoint `id` is leaving now (the worker snapshots its in-flight counts). */
  | { readonly t: 'igw:scrape-start'; readonly id: string }
  | { readonly t: 'igw:scrape'; readonly id: string; readonly r: ScrapeResult }
  /**
   * From the other workers, in one message (relay.ts): their in-flight per endpoint (a full view:
   * an endpoint absent = none; `load` absent = unchanged) and the prefix blocks they dispatched.
   */
  | ({ readonly t: 'igw:peers' } & PeerUpdate)
  | {
      readonly t: 'igw:metrics'
      readonly rid: number
      readonly text?: string
      readonly error?: string
    }
  /** Drain and exit (the primary got SIGTERM/SIGINT). */
  | { readonly t: 'igw:shutdown' }
  /** The primary's answer to a rate-limit reservation (ratelimit.ts). */
  | RateLimitToWorker

export type ToPrimary =
  | { readonly t: 'igw:ready'; readonly url: string }
  /**
   * This worker's in-flight per endpoint (a full view; absent = unchanged) and the prefix blocks
   * it dispatched since its last report, in one message (relay.ts).
   */
  | ({ readonly t: 'igw:report' } & PeerUpdate)
  /** `/metrics` was asked of this worker: the primary answers with every worker's sum. */
  | { readonly t: 'igw:metrics-req'; readonly rid: number }
  /** Local rate limits: the counters live in the primary, workers hold leases (ratelimit.ts). */
  | RateLimitToPrimary

export function isOurs<M extends { t: string }>(m: unknown): m is M {
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof (m as { t?: unknown }).t === 'string' &&
    (m as { t: string }).t.startsWith('igw:')
  )
}

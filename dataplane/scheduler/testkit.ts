// Builders for scheduler unit tests: endpoints, servers, snapshots, pick contexts, engine metrics
// and scheduling requests, without the compiler or a network.

import {
  DEFAULT_RETRY,
  DEFAULT_TIMEOUTS,
  type RoutingSnapshot,
  type SnapshotEndpoint,
  type SnapshotScheduler,
  type SnapshotServer,
} from '../../api/snapshot.js'
import type { EngineMetrics } from '../engines/view.js'
import type { ExplainSink, PickContext } from '../picker.js'
import { expectedOutputTokens, promptPieces } from './prompt.js'
import { DEFAULT_STATE_OPTIONS, EndpointState, type StateOptions } from './state.js'
import type { Plugin, SchedRequest } from './types.js'

export function endpoint(
  name: string,
  host: number,
  labels: Record<string, string> = {},
  ready = true,
): SnapshotEndpoint {
  return { name, address: `127.0.0.${host}`, port: 8000, ready, labels }
}

export function server(
  endpoints: readonly SnapshotEndpoint[],
  opts: { name?: string; scheduler?: SnapshotScheduler; attempts?: number } = {},
): SnapshotServer {
  const name = opts.name ?? 'm'
  return {
    key: `default/${name}`,
    namespace: 'default',
    name,
    engine: 'vLLM',
    protocol: 'http',
    port: 8000,
    trafficPolicy: {
      timeouts: DEFAULT_TIMEOUTS,
      retry: { ...DEFAULT_RETRY, attempts: opts.attempts ?? 3 },
    },
    endpoints,
    ...(opts.scheduler !== undefined ? { scheduler: opts.scheduler } : {}),
  }
}

export function snapshot(servers: readonly SnapshotServer[], version = 1): RoutingSnapshot {
  return {
    schemaVersion: 1,
    version,
    hash: '0'.repeat(64),
    routes: [],
    servers: Object.fromEntries(servers.map((s) => [s.key, s])),
  }
}

export function pickContext(
  srv: SnapshotServer,
  body: Record<string, unknown> = {},
  headers: Record<string, string> = {},
  opts: { isLora?: boolean; model?: string; explain?: ExplainSink } = {},
): PickContext {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]))
  const model = opts.model ?? (typeof body['model'] === 'string' ? body['model'] : 'm')
  return {
    requestId: `req-${Math.random().toString(16).slice(2)}`,
    model,
    isLora: opts.isLora ?? false,
    server: srv,
    body: { model, ...body },
    header: (n) => lower[n.toLowerCase()],
    ...(opts.explain !== undefined ? { explain: opts.explain } : {}),
  }
}

export function chat(...contents: string[]): Record<string, unknown> {
  return { messages: contents.map((content) => ({ role: 'user', content })) }
}

export function metrics(m: Partial<EngineMetrics> = {}): EngineMetrics {
  return { waiting: 0, running: 0, missing: [], engineType: 'vLLM', ...m }
}

let slots = 0

export function state(
  name: string,
  host: number,
  opts: { labels?: Record<string, string>; state?: StateOptions } = {},
): EndpointState {
  return new EndpointState(
    endpoint(name, host, opts.labels ?? {}),
    slots++,
    opts.state ?? DEFAULT_STATE_OPTIONS,
  )
}

/** Give `st` a fresh scrape with these engine numbers at time `now`. */
export function scraped(st: EndpointState, now: number, m: Partial<EngineMetrics>): EndpointState {
  st.scrapeStarted()
  st.scrapeSucceeded(now, metrics(m))
  return st
}

export function request(
  ctx: PickContext,
  now = 0,
): SchedRequest & { scratch: Map<Plugin, unknown> } {
  const pieces = promptPieces(ctx.body)
  const text = pieces.join('')
  const lora = ctx.isLora ? ctx.model : undefined
  return {
    ctx,
    now,
    lora,
    ticket: {
      promptTokens: Math.ceil(text.length / 4),
      outputTokens: expectedOutputTokens(ctx.body),
      stream: ctx.body['stream'] === true,
      ...(lora !== undefined ? { lora } : {}),
    },
    pieces,
    text: () => text,
    scratch: new Map(),
  }
}

/** Run a plugin's score over `eps` and return the scores (undefined = abstained). */
export function scores(
  plugin: Plugin,
  req: SchedRequest,
  eps: readonly EndpointState[],
): number[] | undefined {
  const out = new Float64Array(eps.length)
  if (plugin.score === undefined) throw new Error(`${plugin.name} does not score`)
  return plugin.score(req, eps, out) ? Array.from(out) : undefined
}

/** A deterministic random source (mulberry32, dataplane/seeded-random.ts). */
export { seededRandom as seeded } from '../seeded-random.js'

// The plugin contract of the scheduler. A request goes through: admission (optional, may queue)
// → filters (each may narrow the candidates, never to nothing) → scorers (each fills a 0..1 score
// per candidate, or abstains) → weighted sum → ordered pick. Plugins that keep state learn from
// dispatch and completion, which the proxy reports once per attempt.

import type { SchedulerArgValue, SchedulerPluginName } from '../../api/snapshot.js'
import type { AbortLike } from '../abort.js'
import type { Admission, DispatchOutcome, PickContext } from '../picker.js'
import type { EndpointState, LoadTicket } from './state.js'

/** Per-request scheduling record, shared by all plugins for one request. */
export interface SchedRequest {
  readonly ctx: PickContext
  /** Clock of the decision (performance.now() ms). */
  now: number
  /** The adapter name when the request targets a LoRA adapter. */
  readonly lora: string | undefined
  readonly ticket: LoadTicket
  /** The flattened prompt (chat template applied) as pieces to read in order. */
  readonly pieces: readonly string[]
  /** The same joined into one string (allocates; for tests and diagnostics). */
  text(): string
  /**
   * Per-request data keyed by its owner: a plugin's private data (e.g. what it predicted at
   * dispatch), or a memo several plugins share (the prompt's block hashes, prompt-hasher.ts).
   */
  readonly scratch: Map<object, unknown>
  /**
   * A warm copy of this prompt's prefix a plugin wants on another endpoint, made by a shadow
   * request (predicted-latency's hot groups); set while scoring, handed to the caller after the
   * pick (Scheduler.shadow).
   */
  mirror?: Mirror | undefined
}

/**
 * A shadow request a plugin asks for: the prompt sent to `ep` with one output token and the
 * answer dropped, so the engine computes (caches) its prefix without a client waiting on it.
 * Nothing is recorded until the caller sends it (`started`): a caller that sends no shadows (the
 * EPP) leaves no trace of the request.
 */
export interface Mirror {
  readonly ep: EndpointState
  /** The shadow is on its way (`now`: the scheduler's clock). */
  started(now: number): void
  /** Once after `started`: it ended; `ok` = the engine answered 2xx (the prefix is computed). */
  ended(ok: boolean, now: number): void
}

export type { Admission }

export interface PluginEnv {
  readonly random: () => number
  readonly now: () => number
}

export interface Plugin {
  readonly name: SchedulerPluginName
  /** May narrow the candidates; the framework ignores an empty result (filters fail open). */
  filter?(req: SchedRequest, eps: readonly EndpointState[]): readonly EndpointState[]
  /**
   * Write one score in 0..1 per candidate into `out` (same order as `eps`). Return false to
   * abstain: the plugin does not apply to this request (e.g. lora-affinity for a base-model
   * request) and its weight is left out, so it cannot tilt the decision either way.
   */
  score?(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean
  /**
   * The filters left one candidate (`eps` holds it): no scores are needed to order one, and the
   * scheduler calls this instead of `score` (explain off). It must do what `score` does besides
   * scoring that later decisions or this request's dispatch read (a model refreshed from the last
   * scrape, a request counted, a random draw taken); `noScoreEffects` (scores.ts) for a score
   * that does nothing else. Absent: `score` is called as for more candidates.
   */
  single?(req: SchedRequest, eps: readonly EndpointState[]): void
  /**
   * Admission before scoring: resolve to proceed, reject with a GatewayError (429/503) to refuse.
   * `undefined` = admitted at once without a place to release. `signal`: the client left.
   */
  admit?(
    req: SchedRequest,
    eps: () => readonly EndpointState[],
    signal: AbortLike,
  ): Admission | Promise<Admission> | undefined
  onDispatch?(req: SchedRequest, ep: EndpointState): void
  onComplete?(req: SchedRequest, ep: EndpointState, outcome: DispatchOutcome): void
  /**
   * Prefix blocks this dispatch placed on its endpoint, for the other worker processes of
   * `--workers N` (dataplane/cluster/), which pass them to `recordPeer` of the same plugin.
   */
  blocksOf?(req: SchedRequest): ArrayLike<number> | undefined
  /** Another worker dispatched a prompt with these prefix blocks to `ep`. */
  recordPeer?(ep: EndpointState, hashes: ArrayLike<number>): void
  /** The endpoint left this server: drop what is remembered about it. */
  forget?(ep: EndpointState): void
  /** The engine behind the endpoint restarted (empty KV cache, no adapters): drop what is known. */
  onEndpointReset?(state: EndpointState, now?: number): void
  /** The endpoint went out of rotation (ejected; its engine may be dead): `now` the clock. */
  onEndpointDown?(state: EndpointState, now: number): void
  /** Plugin state for GET /debug/endpoints. */
  debug?(now: number): Record<string, unknown>
  /** Requests waiting in this plugin's admission queue (the queue-depth gauge). */
  readonly queued?: number
  close?(): void
}

export type PluginArgs = Readonly<Record<string, SchedulerArgValue>>

export type PluginFactory = (args: PluginArgs, env: PluginEnv) => Plugin

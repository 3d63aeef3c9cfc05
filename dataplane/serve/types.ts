// What the targets of a chain share: the request as parsed and admitted by the app, the
// data plane's parts, and the shape of one target's result.
import type { FallbackOn } from '../../api/snapshot.js'
import type { ClientSignal } from '../abort.js'
import type { GatewayError } from '../errors.js'
import type { Inbound } from '../inbound.js'
import type { GatewayMetrics } from '../metrics.js'
import type { EndpointPicker } from '../picker.js'
import type { ProviderCredentials } from '../providers/credentials.js'
import type { ProviderTransport } from '../providers/transport.js'
import type { ProviderApi } from '../providers/types.js'
import type { UpstreamPool } from '../proxy/upstream-pool.js'
import type { ChainDecision } from '../router.js'
import type { Outcome } from './outcome.js'

export interface ServeDeps {
  readonly pool: UpstreamPool
  readonly picker: EndpointPicker
  readonly metrics: GatewayMetrics
  readonly transport: ProviderTransport
  readonly credentials: ProviderCredentials
  readonly random: () => number
  /** Cap of a non-streamed upstream body (engines and providers); default 64 MiB. */
  readonly maxUpstreamBodyBytes?: number
  /** Cap of one SSE line from an engine or a provider; default 1 MiB. */
  readonly maxSseLineBytes?: number
}

export interface ServeRequest {
  /** The client's path, e.g. /v1/chat/completions. */
  readonly path: string
  readonly api: ProviderApi
  /** The model the client asked for. */
  readonly model: string
  readonly body: Readonly<Record<string, unknown>>
  /** The body as sent (or as re-serialised by the app): forwarded as is when nothing changes. */
  readonly raw: Uint8Array
  readonly inbound: Inbound
  /** The client asked for the scheduler's decision summary (and explain is enabled). */
  readonly explain?: boolean
  /** Client headers never forwarded to self-hosted engines (their credentials). */
  readonly stripHeaders?: ReadonlySet<string>
  /**
   * /v1/messages: the request as OpenAI chat (dataplane/api/messages), sent to every target but
   * an Anthropic provider, which gets the client's Anthropic body.
   */
  readonly translated?: ServeRequest | GatewayError
}

/** One chain walk: the decision, the request, what it holds, and the client's abort signal. */
export interface ChainContext {
  readonly d: ChainDecision
  readonly req: ServeRequest
  readonly out: Outcome
  readonly deps: ServeDeps
  /** Aborted (with a 499 client_closed reason) when the client goes away. */
  readonly client: ClientSignal
}

export type Step =
  | { readonly kind: 'done'; readonly response: Response }
  | {
      readonly kind: 'failed'
      readonly error: GatewayError
      /** Which fallback condition this failure is (absent = never falls back). */
      readonly reason?: FallbackOn
      /** The target cannot express this request (unsupported API or parameter). */
      readonly unsupported?: boolean
    }

export function failed(error: GatewayError, reason?: FallbackOn, unsupported = false): Step {
  return {
    kind: 'failed',
    error,
    ...(reason !== undefined ? { reason } : {}),
    ...(unsupported ? { unsupported } : {}),
  }
}

/** A failure moves on only when another target follows and the rule lists the condition. */
export function canFallback(d: ChainDecision, more: boolean, reason: FallbackOn): boolean {
  return more && d.fallbackOn.has(reason)
}

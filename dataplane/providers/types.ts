// The seam every provider implements: turn the client's OpenAI request into the provider's HTTP
// request, and the provider's answer (a JSON body, an event stream, an error body) back into
// OpenAI's shapes. Adapters are pure: no I/O, no clock beyond what they are given, so each is unit
// tested on recorded payloads; transport, credentials and fallback live in runtime.ts/dispatch.ts.
import type { SnapshotProvider } from '../../api/snapshot.js'
import type { ProviderErrorDetail } from './errors.js'
import type { SseEvent } from './sse.js'
import type { ProviderUsage } from './usage.js'

/**
 * The APIs a target may be asked for: OpenAI's chat, completions, embeddings and Responses, and
 * Anthropic's Messages (`messages`, passed through to Anthropic providers only: other targets get
 * it translated to `chat` by dataplane/api/messages).
 */
export type ProviderApi = 'chat' | 'completions' | 'embeddings' | 'responses' | 'messages'

export const API_PATHS: Readonly<Record<ProviderApi, string>> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
  responses: '/v1/responses',
  messages: '/v1/messages',
}

export interface BuildInput {
  readonly provider: SnapshotProvider
  readonly api: ProviderApi
  /** The client's request body, parsed. */
  readonly body: Readonly<Record<string, unknown>>
  /** The client's bytes, sent unchanged when nothing needs rewriting. */
  readonly raw: Uint8Array
  /** Model to ask the provider for (the provider's `model`, or the client's). */
  readonly upstreamModel: string
  /** The client's model name, which translated responses report. */
  readonly clientModel: string
  /** Unix seconds, for translated responses' `created`. */
  readonly now: number
  /** Identifier for translated responses (`chatcmpl-…`). */
  readonly requestId: string
}

export interface BuiltRequest {
  /** Full URL: the provider's base URL plus the API's path (and query, e.g. Azure's api-version). */
  readonly url: string
  /** Request headers except the credential (added by the runtime, last, so nothing overrides it). */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string | Uint8Array
  /** The client expects a `text/event-stream` answer. */
  readonly stream: boolean
}

export interface ParsedResponse {
  /** OpenAI-shaped JSON body for the client. */
  readonly body: string | Uint8Array
  readonly usage?: ProviderUsage
}

/** Turns a provider's event stream into OpenAI chunks, one upstream event at a time. */
export interface StreamTranslator {
  /** OpenAI SSE frames (already encoded) for one upstream event; throws `ProviderStreamError`. */
  push(ev: SseEvent): string[]
  /** The upstream body ended: final frames; throws `ProviderStreamError` if it ended too early. */
  end(): string[]
  readonly usage: ProviderUsage | undefined
}

/** A stream that cannot finish: an error event from the provider, or an early end. */
export class ProviderStreamError extends Error {
  override readonly name = 'ProviderStreamError'
  readonly code: string
  /** The provider reported overload/server trouble (worth a fallback if nothing was sent yet). */
  readonly retryable: boolean
  constructor(code: string, message: string, retryable: boolean) {
    super(message)
    this.code = code
    this.retryable = retryable
  }
}

export interface ProviderAdapter {
  /** The APIs this provider can serve as configured. */
  supports(provider: SnapshotProvider, api: ProviderApi): boolean
  /** Throws a 400 GatewayError for what cannot be expressed for the provider (never drops it). */
  build(input: BuildInput): BuiltRequest
  /** A 2xx JSON body → the client's body. Throws `ProviderStreamError`-free `Error` on garbage. */
  parse(input: BuildInput, body: Uint8Array): ParsedResponse
  stream(input: BuildInput): StreamTranslator
  /** What an error body says. */
  errorDetail(status: number, text: string): ProviderErrorDetail
}

/** Parsed JSON object or undefined. */
export function parseObject(text: string | Uint8Array): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(
      typeof text === 'string' ? text : Buffer.from(text).toString('utf8'),
    )
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

/** A JSON object (not an array, not null): the shape every provider payload is checked for. */
export function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A finite number from a provider payload, 0 otherwise (usage counters). */
export function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0
}

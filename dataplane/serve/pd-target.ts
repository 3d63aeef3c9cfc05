// A self-hosted target whose server is disaggregated (`pd`): each try is a pair, a prefill pod
// that computes the prompt's KV cache and a decode pod that receives it and generates. The pair
// picker (scheduler/pd-pairs.ts) orders the pairs; the connector says how the KV moves:
//
// - http, lmcache: a copy of the request with max_tokens=1 and no streaming goes to the prefill
//   pod; when it has answered, the request goes to the decode pod, with `x-prefiller-host-port`
//   naming the prefill pod (as llm-d's disaggregation does) for connectors that look the KV up
//   there. The engines' own KV connector (LMCache, P2P) moves the cache.
// - nixl (vLLM NixlConnector): the prefill copy carries kv_transfer_params {do_remote_decode:
//   true}; the kv_transfer_params of its answer (remote engine, block ids, host, port) go into
//   the decode request, whose engine then pulls the blocks.
// - sglang: prefill and decode get the same bootstrap host/port/room and are sent at once; the
//   decode engine waits for the prefill engine's room. The prefill is cancelled if decode fails.
//
// Retries walk the next pair, only before anything reached the client. A failed prefill costs
// the client nothing (no byte sent, decode not started), so it moves on whatever the retry policy
// says, as a refused connection does in forward(); a failed decode follows the retry policy.
// The decode answer goes to the client exactly as a plain server target's (answer()): streaming,
// usage, accounting and the access log (which names both pods).

import type { FallbackOn, RetryOn, SnapshotEndpoint, SnapshotServer } from '../../api/snapshot.js'
import { errors, GatewayError } from '../errors.js'
import type { Admission, PickContext } from '../picker.js'
import { endpointId, failureOf } from '../picker.js'
import { type AttemptFailure, forward, type UpstreamResponse } from '../proxy/forward.js'
import { upstreamHeaders } from '../proxy/headers.js'
import { requestUsage, wantsInjectedUsage } from '../proxy/usage-strip.js'
import { backoffMs, sleep } from '../retry.js'
import type { RouteTarget } from '../router.js'
import {
  PD_MIN_PAIRS,
  type PdPair,
  pdRoles,
  pickPairs,
  roleContext,
} from '../scheduler/pd-pairs.js'
import { type Deadline, deadline } from './deadline.js'
import { clientClosed } from './outcome.js'
import { answer } from './server-target.js'
import { type ChainContext, failed, type Step } from './types.js'

type ServerTarget = Extract<RouteTarget, { kind: 'server' }>
type Pd = NonNullable<SnapshotServer['pd']>

/** A prefill answer is one token and some metadata; more than this is not a prefill answer. */
const PREFILL_BODY_CAP = 1024 * 1024
/** Pod label giving an SGLang prefill pod's bootstrap port (absent: the engine's default, 8998). */
export const SGLANG_BOOTSTRAP_PORT_LABEL = 'infer-gateway.io/sglang-bootstrap-port'
/** Header naming the prefill pod on the decode request of the http/lmcache connectors. */
export const PREFILLER_HEADER = 'x-prefiller-host-port'

/** What one pair's try came to. */
type PairResult =
  | { readonly kind: 'answer'; readonly up: UpstreamResponse; readonly dispatchedAt: number }
  /** Try the next pair; `free` = it does not use up the retry policy's attempts. */
  | {
      readonly kind: 'next'
      readonly error: GatewayError
      readonly reason: FallbackOn
      readonly free: boolean
    }
  | { readonly kind: 'fail'; readonly error: GatewayError; readonly reason?: FallbackOn }

interface PairRun {
  readonly t: ServerTarget
  readonly ctx: ChainContext
  readonly pd: Pd
  readonly once: SnapshotServer
  readonly decodeCtx: PickContext
  readonly prefillCtx: PickContext
  readonly base: Readonly<Record<string, unknown>>
  readonly prefillBody: Readonly<Record<string, unknown>>
  readonly headers: Record<string, string>
  readonly injectUsage: boolean
  readonly dl: Deadline<AbortSignal>
  readonly retryOn: ReadonlySet<RetryOn>
  /** More pairs follow, and the retry policy has attempts left for a failed decode. */
  readonly canRetryDecode: boolean
}

const singles = new WeakMap<SnapshotServer, SnapshotServer>()

/** The server with one attempt per forward(): pairs, not forward(), are what retries walk. */
function singleAttempt(s: SnapshotServer): SnapshotServer {
  let o = singles.get(s)
  if (o === undefined) {
    const tp = s.trafficPolicy
    o = { ...s, trafficPolicy: { ...tp, retry: { ...tp.retry, attempts: 1 } } }
    singles.set(s, o)
  }
  return o
}

/** Body fields that steer a KV transfer: the gateway's to set, never the client's. */
const TRANSFER_FIELDS = ['kv_transfer_params', 'bootstrap_host', 'bootstrap_port', 'bootstrap_room']

/**
 * The client's request without transfer fields: a client naming a remote host or a room could
 * make a decode engine pull KV from wherever it says (or wait on another request's room).
 */
export function withoutTransferFields(
  body: Readonly<Record<string, unknown>>,
): Readonly<Record<string, unknown>> {
  if (!TRANSFER_FIELDS.some((f) => f in body)) return body
  const out: Record<string, unknown> = { ...body }
  for (const f of TRANSFER_FIELDS) delete out[f]
  return out
}

/** The prefill copy of the request: one token, no stream (Kthena's and vLLM's proxies do so). */
export function prefillRequest(
  base: Readonly<Record<string, unknown>>,
  connector: Pd['connector'],
): Record<string, unknown> {
  const b: Record<string, unknown> = { ...base, stream: false }
  delete b['stream_options']
  // SGLang's prefill engine stops after prefill by itself; the request stays the client's.
  if (connector === 'sglang') return b
  b['max_tokens'] = 1
  if ('max_completion_tokens' in b) b['max_completion_tokens'] = 1
  if (connector === 'nixl') {
    b['kv_transfer_params'] = {
      do_remote_decode: true,
      do_remote_prefill: false,
      remote_engine_id: null,
      remote_block_ids: null,
      remote_host: null,
      remote_port: null,
    }
  }
  return b
}

/** SGLang's bootstrap fields, the same on both requests of a pair. */
export function bootstrapFields(
  prefill: SnapshotEndpoint,
  random: () => number,
): Record<string, unknown> {
  const port = Number(prefill.labels[SGLANG_BOOTSTRAP_PORT_LABEL])
  return {
    bootstrap_host: prefill.address,
    ...(Number.isInteger(port) && port > 0 && port < 65536 ? { bootstrap_port: port } : {}),
    // A random room below 2^53: exact in JSON for every parser.
    bootstrap_room: Math.floor(random() * 2 ** 53),
  }
}

export async function pdDispatch(
  t: ServerTarget,
  pd: Pd,
  ctx: ChainContext,
  more: boolean,
  pickCtx: PickContext,
  admission: Admission | undefined,
  owned?: { byStream: boolean },
): Promise<Step> {
  const { req, deps, out } = ctx
  const server = t.server
  const picker = deps.picker
  const roles = pdRoles(server)
  if (roles === undefined) return failed(errors.internal())
  const base = withoutTransferFields(
    t.upstreamModel !== req.model ? { ...req.body, model: t.upstreamModel } : req.body,
  )
  const prefillBody = prefillRequest(base, pd.connector)
  const decodeCtx = roleContext(pickCtx, roles.decode, req.body)
  const prefillCtx = roleContext(pickCtx, roles.prefill, prefillBody)
  const retry = server.trafficPolicy.retry
  const pairs = pickPairs(
    picker,
    decodeCtx,
    prefillCtx,
    pd.groupKey,
    Math.max(retry.attempts, PD_MIN_PAIRS),
  )
  if (pickCtx.explain !== undefined) {
    pickCtx.explain.text = `decode: ${decodeCtx.explain?.text ?? '-'} || prefill: ${prefillCtx.explain?.text ?? '-'}`
    if (decodeCtx.explain !== undefined) decodeCtx.explain.text = pickCtx.explain.text
  }
  if (pairs.length === 0)
    return failed(
      new GatewayError(
        503,
        'no_ready_endpoint',
        `no ready prefill/decode pair for model server "${server.key}"`,
        { headers: { 'retry-after': '1' } },
      ),
      'no-ready-endpoints',
    )
  const headers = upstreamHeaders(
    req.inbound.headers(),
    out.requestId,
    req.stripHeaders,
    req.inbound.remoteAddress,
  )
  // Only the gateway names the prefill pod (http/lmcache set it per pair).
  delete headers[PREFILLER_HEADER]
  const requestMs = server.trafficPolicy.timeouts.requestMs
  // A real AbortSignal: a pair's prefill and decode each link their own to it.
  const dl = deadline(ctx.client.signal, requestMs)
  const retryOn = new Set(retry.retryOn)
  let budget = Math.max(1, retry.attempts) - 1
  let last: { error: GatewayError; reason: FallbackOn } | undefined
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i] as PdPair
    const run: PairRun = {
      t,
      ctx,
      pd,
      once: singleAttempt(server),
      decodeCtx,
      prefillCtx,
      base,
      prefillBody,
      headers,
      injectUsage: out.limits === undefined && wantsInjectedUsage(req.body),
      dl,
      retryOn,
      canRetryDecode: i < pairs.length - 1 && budget > 0,
    }
    let r: PairResult
    try {
      r = await tryPair(run, pair)
    } catch (e) {
      dl.clear()
      throw e
    }
    if (r.kind === 'answer') {
      const started = r.dispatchedAt
      return answer({
        t,
        ctx,
        more,
        up: { ...r.up, attempts: i + 1 },
        pickCtx: decodeCtx,
        dispatchedAt: started,
        admission,
        dl,
        injectUsage: run.injectUsage,
        finish: { prefillEndpoint: endpointId(pair.prefill) },
        onEnd: (o) =>
          deps.metrics.decodeDuration.observe(
            {
              server: server.key,
              connector: pd.connector,
              outcome: o.error === undefined && o.status < 400 ? 'ok' : 'error',
            },
            (performance.now() - started) / 1000,
          ),
        ...(owned !== undefined ? { owned } : {}),
      })
    }
    if (r.kind === 'fail') {
      dl.clear()
      return failed(r.error, r.reason)
    }
    last = { error: r.error, reason: r.reason }
    if (ctx.client.aborted) {
      dl.clear()
      return failed(clientClosed())
    }
    if (r.free) continue
    if (budget <= 0) break
    budget--
    try {
      await sleep(
        backoffMs(retry.attempts - budget, retry.intervalMs, retry.maxIntervalMs, deps.random),
        dl.signal,
      )
    } catch {
      dl.clear()
      return failed(
        ctx.client.aborted
          ? clientClosed()
          : errors.upstreamTimeout(`request exceeded ${requestMs} ms`),
      )
    }
  }
  dl.clear()
  return last === undefined
    ? failed(errors.upstreamUnavailable('no prefill/decode pair answered'))
    : failed(last.error, last.reason)
}

async function tryPair(run: PairRun, pair: PdPair): Promise<PairResult> {
  if (run.pd.connector === 'sglang') return trySglang(run, pair)
  const p = await prefill(run, pair.prefill, run.prefillBody, run.dl.signal)
  if (p.kind !== 'ok') return p.result
  let decodeBody: Readonly<Record<string, unknown>> = run.base
  const headers = { ...run.headers }
  if (run.pd.connector === 'nixl') {
    // The decode engine pulls the blocks the prefill engine names; without them it would
    // recompute the prompt, so a prefill answer without them is passed on as it is (no params).
    const kv = p.json?.['kv_transfer_params']
    if (typeof kv === 'object' && kv !== null) decodeBody = { ...run.base, kv_transfer_params: kv }
  } else {
    headers[PREFILLER_HEADER] = endpointId(pair.prefill)
  }
  return decode(run, pair.decode, decodeBody, headers, false)
}

/** SGLang: both at once; the prefill is cancelled when decode does not answer. */
async function trySglang(run: PairRun, pair: PdPair): Promise<PairResult> {
  const boot = bootstrapFields(pair.prefill, run.ctx.deps.random)
  const cancel = new AbortController()
  const onAbort = (): void => cancel.abort(run.dl.signal.reason)
  if (run.dl.signal.aborted) onAbort()
  else run.dl.signal.addEventListener('abort', onAbort, { once: true })
  let prefillFailed = false
  const pre = prefill(run, pair.prefill, { ...run.prefillBody, ...boot }, cancel.signal).then(
    (p) => {
      prefillFailed = p.kind !== 'ok'
      run.dl.signal.removeEventListener('abort', onAbort)
    },
    () => {
      prefillFailed = true
    },
  )
  const r = await decode(
    run,
    pair.decode,
    { ...run.base, ...boot },
    run.headers,
    () => prefillFailed,
  )
  // A decode that did not answer 2xx failed, even when its error goes to the client.
  if (r.kind !== 'answer' || r.up.statusCode >= 300) {
    cancel.abort(new GatewayError(499, 'client_closed', 'decode failed'))
    await pre
    // A decode that failed because its prefill died is the prefill's failure: free to move on.
    if (r.kind === 'next' && prefillFailed) return { ...r, free: true }
  }
  return r
}

type PrefillResult =
  | { readonly kind: 'ok'; readonly json: Record<string, unknown> | undefined }
  | { readonly kind: 'failed'; readonly result: PairResult }

async function prefill(
  run: PairRun,
  ep: SnapshotEndpoint,
  body: Readonly<Record<string, unknown>>,
  signal: AbortSignal,
): Promise<PrefillResult> {
  const { deps } = run.ctx
  const server = run.t.server
  const picker = deps.picker
  const ctx = run.prefillCtx
  const started = performance.now()
  const observe = (ok: boolean): void =>
    deps.metrics.prefillDuration.observe(
      { server: server.key, connector: run.pd.connector, outcome: ok ? 'ok' : 'error' },
      (performance.now() - started) / 1000,
    )
  const next = (error: GatewayError, reason: FallbackOn): PrefillResult => {
    observe(false)
    return { kind: 'failed', result: { kind: 'next', error, reason, free: true } }
  }
  let up: UpstreamResponse
  try {
    up = await forward(
      deps.pool,
      {
        server: run.once,
        candidates: [ep],
        method: 'POST',
        path: run.ctx.req.path,
        headers: run.headers,
        body: JSON.stringify(body),
        signal,
        onAttemptStart: (e) => picker.onDispatch?.(ctx, e),
        onAttemptFailed: (f) => attemptFailed(run, ctx, f, started),
      },
      deps.random,
    )
  } catch (e) {
    if (run.ctx.client.aborted) {
      observe(false)
      return { kind: 'failed', result: { kind: 'fail', error: clientClosed() } }
    }
    if (run.dl.timedOut()) {
      observe(false)
      return {
        kind: 'failed',
        result: { kind: 'fail', error: errors.upstreamTimeout('prefill') },
      }
    }
    const err = e instanceof GatewayError ? e : errors.upstreamUnavailable(String(e))
    return next(err, 'connect-failure')
  }
  const status = up.statusCode
  let text: string
  try {
    text = await readCapped(up.body, PREFILL_BODY_CAP)
  } catch {
    picker.onComplete?.(ctx, ep, {
      status,
      failure: signal.aborted ? 'aborted' : 'stream_cut',
      durationMs: performance.now() - started,
    })
    return next(errors.upstreamUnavailable(`${ep.name}: prefill answer cut`), '5xx')
  }
  const json = parseObject(text)
  const usage = json?.['usage'] as { prompt_tokens?: unknown } | undefined
  picker.onComplete?.(ctx, ep, {
    status,
    ...(status >= 500 || status === 429 ? { failure: 'retry_status' as const } : {}),
    durationMs: performance.now() - started,
    ...(typeof usage?.prompt_tokens === 'number' ? { promptTokens: usage.prompt_tokens } : {}),
  })
  if (status >= 500 || status === 429) {
    deps.metrics.upstreamFailures.inc({
      server: server.key,
      reason: status === 429 ? '429' : '5xx',
    })
    return next(
      new GatewayError(
        status === 429 ? 429 : 502,
        'upstream_error',
        `prefill pod ${ep.name} answered HTTP ${status}`,
      ),
      status === 429 ? '429' : '5xx',
    )
  }
  if (status >= 400) {
    // The engine refused the request itself (too long, bad parameter): decode would too.
    observe(false)
    const e = json?.['error'] as { message?: unknown; code?: unknown; param?: unknown } | undefined
    const message = typeof e?.message === 'string' ? e.message : `engine answered HTTP ${status}`
    const code = typeof e?.code === 'string' ? e.code : 'upstream_error'
    return {
      kind: 'failed',
      result: {
        kind: 'fail',
        error: new GatewayError(
          status,
          code,
          message,
          typeof e?.param === 'string' ? { param: e.param } : {},
        ),
      },
    }
  }
  observe(true)
  return { kind: 'ok', json }
}

async function decode(
  run: PairRun,
  ep: SnapshotEndpoint,
  body: Readonly<Record<string, unknown>>,
  headers: Record<string, string>,
  prefillFailed: false | (() => boolean),
): Promise<PairResult> {
  const { deps } = run.ctx
  const server = run.t.server
  const picker = deps.picker
  const ctx = run.decodeCtx
  let dispatchedAt = performance.now()
  let lastFailure: AttemptFailure['reason'] | undefined
  const json = JSON.stringify(body)
  const bytes = run.injectUsage ? requestUsage(json, body) : json
  const observeError = (): void =>
    deps.metrics.decodeDuration.observe(
      { server: server.key, connector: run.pd.connector, outcome: 'error' },
      (performance.now() - dispatchedAt) / 1000,
    )
  let up: UpstreamResponse
  try {
    up = await forward(
      deps.pool,
      {
        server: run.once,
        candidates: [ep],
        method: 'POST',
        path: run.ctx.req.path,
        headers,
        body: bytes,
        signal: run.dl.signal,
        onAttemptStart: (e) => {
          dispatchedAt = performance.now()
          picker.onDispatch?.(ctx, e)
        },
        onAttemptFailed: (f) => {
          lastFailure = f.reason
          attemptFailed(run, ctx, f, dispatchedAt)
        },
      },
      deps.random,
    )
  } catch (e) {
    observeError()
    if (run.ctx.client.aborted) return { kind: 'fail', error: clientClosed() }
    if (run.dl.timedOut()) return { kind: 'fail', error: errors.upstreamTimeout('decode') }
    const err = e instanceof GatewayError ? e : errors.upstreamUnavailable(String(e))
    // Nothing was sent: another pair is safe whatever the policy says.
    if (lastFailure === 'connect-failure')
      return { kind: 'next', error: err, reason: 'connect-failure', free: true }
    if (prefillFailed !== false && prefillFailed())
      return { kind: 'next', error: err, reason: '5xx', free: true }
    if (lastFailure === 'protocol' && run.retryOn.has('5xx') && run.canRetryDecode)
      return { kind: 'next', error: err, reason: '5xx', free: false }
    return { kind: 'fail', error: err }
  }
  const status = up.statusCode
  const retryable =
    (status >= 500 && run.retryOn.has('5xx')) || (status === 429 && run.retryOn.has('429'))
  const prefillGone = prefillFailed !== false && status >= 500 && prefillFailed()
  if ((retryable && run.canRetryDecode) || prefillGone) {
    up.body.dump().catch(() => {})
    observeError()
    deps.metrics.upstreamFailures.inc({
      server: server.key,
      reason: status === 429 ? '429' : '5xx',
    })
    picker.onComplete?.(ctx, ep, {
      status,
      failure: 'retry_status',
      durationMs: performance.now() - dispatchedAt,
    })
    return {
      kind: 'next',
      error: new GatewayError(
        status,
        'upstream_error',
        `decode pod ${ep.name} answered HTTP ${status}`,
      ),
      reason: status === 429 ? '429' : '5xx',
      free: prefillGone,
    }
  }
  return { kind: 'answer', up, dispatchedAt }
}

function attemptFailed(run: PairRun, ctx: PickContext, f: AttemptFailure, since: number): void {
  const { deps } = run.ctx
  const key = run.t.server.key
  deps.metrics.upstreamFailures.inc({ server: key, reason: f.reason })
  deps.metrics.endpoint(key, endpointId(f.endpoint)).error(f.reason)
  deps.picker.onComplete?.(ctx, f.endpoint, {
    status: f.status ?? 0,
    failure: failureOf(f.reason),
    durationMs: performance.now() - since,
  })
}

async function readCapped(body: UpstreamResponse['body'], cap: number): Promise<string> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of body) {
    const b = c as Buffer
    n += b.length
    if (n > cap) {
      body.destroy()
      throw new Error('prefill answer too large')
    }
    chunks.push(b)
  }
  return Buffer.concat(chunks).toString('utf8')
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

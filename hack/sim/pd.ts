// Prefill/decode disaggregation in the simulator, with the handshakes of the real engines so the
// gateway is tested against what they expect, not against our own reading of it:
//
// - vLLM NixlConnector: a request with kv_transfer_params {do_remote_decode: true} is prefilled
//   and answered with kv_transfer_params {do_remote_prefill: true, remote_engine_id,
//   remote_block_ids, remote_host, remote_port, remote_request_id}; the blocks are kept until a
//   decode engine pulls them. A decode request carrying those params pulls them from the named
//   engine (here: POST /sim/kv/pull on remote_host:remote_port) and then only waits for the
//   transfer; params that do not name live blocks (wrong engine, expired, already pulled, dead
//   pod) make it recompute the prompt at full cost, as vLLM does.
// - SGLang: prefill and decode get the same bootstrap_host/port/room at once; the decode engine
//   waits for the prefill engine's room (GET /sim/bootstrap/<room> long-polls) and fails the
//   request if the room never comes (the prefill was cancelled, or its pod is gone).
// - http / lmcache: a decode request with `x-prefiller-host-port` looks the prompt up at that pod
//   (POST /sim/kv/pull by prompt hash), as an LMCache/P2P lookup would; a miss recomputes.
//
// The transfer itself costs `kvTransferMsPerToken` per prompt token the decode engine does not
// cache already, and runs beside decoding (no GPU time: engine.ts).

import type { IncomingMessage } from 'node:http'
import { SimError } from './errors.js'
import { hash32 } from './rng.js'

export const SIM_ROLES = ['prefill', 'decode', 'both'] as const
export type SimRole = (typeof SIM_ROLES)[number]

/** How long prefilled blocks wait for a decode engine to pull them (vLLM's abort timeout is 480 s). */
const KEEP_MS = 120_000
/** How long a decode engine waits for a prefill engine's bootstrap room. */
export const BOOTSTRAP_WAIT_MS = 30_000
/** Prompts remembered for http lookups, and rooms, per pod (bounded: a long benchmark). */
const MAX_ENTRIES = 8192

export interface PdCounters {
  /** Prefills whose KV a decode engine took (nixl pull, http lookup, SGLang room). */
  kvSent: number
  /** Decode requests whose prompt KV arrived from a prefill pod. */
  kvReceived: number
  /** Decode-role requests that computed their prompt here (no or invalid KV source). */
  kvRecomputed: number
  /** SGLang decode requests failed because their room never came. */
  bootstrapFailed: number
}

interface Room {
  state: 'pending' | 'ready' | 'failed'
  tokens: number
  readonly waiters: Set<() => void>
  readonly at: number
}

/** What the decode side learned about the prompt: its KV is transferred, or computed here. */
export type KvSource = 'transfer' | 'compute'

/** One pod's side of the handshakes. */
export class PdState {
  readonly role: SimRole
  readonly engineId: string
  readonly host: string
  port = 0
  readonly counters: PdCounters = { kvSent: 0, kvReceived: 0, kvRecomputed: 0, bootstrapFailed: 0 }
  readonly #transfers = new Map<string, { tokens: number; prompt: string; until: number }>()
  readonly #prompts = new Map<string, number>()
  readonly #rooms = new Map<string, Room>()
  #ids = 0

  constructor(role: SimRole, name: string, host: string, seed: number) {
    this.role = role
    this.host = host
    this.engineId = `sim-${hash32(name, seed).toString(16).padStart(8, '0')}`
  }

  /**
   * The prompt of a finished prefill (role prefill or both): keep its blocks for a nixl pull and
   * for http lookups, and return the kv_transfer_params for the answer when nixl asked for them.
   */
  prefilled(
    body: Readonly<Record<string, unknown>>,
    prompt: string,
    tokens: number,
    blockSize: number,
  ): Record<string, unknown> | undefined {
    this.#remember(this.#prompts, promptKey(prompt), tokens)
    const kv = body['kv_transfer_params']
    if (!isObject(kv) || kv['do_remote_decode'] !== true) return undefined
    this.#ids++
    const id = `${this.engineId}-${this.#ids}`
    this.#remember(this.#transfers, id, {
      tokens,
      prompt: promptKey(prompt),
      until: Date.now() + KEEP_MS,
    })
    const blocks = Math.ceil(tokens / blockSize)
    return {
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_engine_id: this.engineId,
      remote_block_ids: Array.from({ length: blocks }, (_, i) => this.#ids * 100_000 + i),
      remote_host: this.host,
      remote_port: this.port,
      remote_request_id: id,
      tp_size: 1,
    }
  }

  /** POST /sim/kv/pull: blocks named by a nixl transfer, or a prompt by hash (http lookup). */
  pull(q: unknown): { tokens: number } {
    if (!isObject(q)) throw new SimError(400, 'invalid_pull', 'pull body must be an object')
    const id = q['remote_request_id']
    if (typeof id === 'string') {
      const t = this.#transfers.get(id)
      if (
        t === undefined ||
        q['remote_engine_id'] !== this.engineId ||
        t.until < Date.now() ||
        q['prompt'] !== t.prompt
      )
        throw new SimError(404, 'kv_not_found', `no blocks for request ${id} on ${this.engineId}`)
      this.#transfers.delete(id)
      this.counters.kvSent++
      return { tokens: t.tokens }
    }
    const key = q['prompt']
    const tokens = typeof key === 'string' ? this.#prompts.get(key) : undefined
    if (tokens === undefined) throw new SimError(404, 'kv_not_found', 'prompt not cached here')
    this.counters.kvSent++
    return { tokens }
  }

  /** An SGLang prefill request arrived: its room exists (pending) from now on. */
  openRoom(room: string): void {
    const r = this.#room(room)
    if (r.state === 'failed') r.state = 'pending'
  }

  /** The room's prefill is done (tokens) or will never be (cancelled, failed). */
  closeRoom(room: string, tokens: number | undefined): void {
    const r = this.#room(room)
    r.state = tokens === undefined ? 'failed' : 'ready'
    r.tokens = tokens ?? 0
    for (const w of r.waiters) w()
    r.waiters.clear()
  }

  /** GET /sim/bootstrap/<room>: waits until the room is ready or failed (or `waitMs` pass). */
  async awaitRoom(room: string, waitMs: number): Promise<{ tokens: number }> {
    const r = this.#room(room)
    if (r.state === 'pending') {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          resolve()
        }
        const timer = setTimeout(() => {
          r.waiters.delete(done)
          resolve()
        }, waitMs)
        r.waiters.add(done)
      })
    }
    if (r.state !== 'ready')
      throw new SimError(404, 'room_not_ready', `bootstrap room ${room} has no KV`)
    this.#rooms.delete(room)
    this.counters.kvSent++
    return { tokens: r.tokens }
  }

  /**
   * Decode side: where the prompt's KV comes from. Pulls it from the prefill pod the request
   * names (nixl params, SGLang bootstrap, or the http header); `compute` when nothing names one or
   * the pull fails (nixl, http), an error when SGLang's room never comes.
   */
  async source(
    body: Readonly<Record<string, unknown>>,
    req: IncomingMessage,
    prompt: string,
    signal: AbortSignal,
  ): Promise<KvSource> {
    if (this.role === 'prefill') return 'compute'
    const key = promptKey(prompt)
    const kv = body['kv_transfer_params']
    let got: boolean | undefined
    if (isObject(kv) && kv['do_remote_prefill'] === true) {
      const host = kv['remote_host']
      const port = kv['remote_port']
      got =
        typeof host === 'string' && typeof port === 'number'
          ? await fetchOk(`http://${hostPart(host)}:${port}/sim/kv/pull`, signal, {
              remote_request_id: kv['remote_request_id'],
              remote_engine_id: kv['remote_engine_id'],
              prompt: key,
            })
          : false
    } else if (body['bootstrap_room'] !== undefined && body['bootstrap_host'] !== undefined) {
      const port = typeof body['bootstrap_port'] === 'number' ? body['bootstrap_port'] : this.port
      const ok = await fetchOk(
        `http://${hostPart(String(body['bootstrap_host']))}:${port}/sim/bootstrap/${encodeURIComponent(String(body['bootstrap_room']))}`,
        signal,
      )
      if (!ok) {
        this.counters.bootstrapFailed++
        throw new SimError(
          500,
          'kv_transfer_failed',
          `KV transfer failed: bootstrap room ${String(body['bootstrap_room'])} never became ready`,
        )
      }
      got = true
    } else {
      const named = req.headers['x-prefiller-host-port']
      if (typeof named === 'string' && named !== '')
        got = await fetchOk(`http://${named}/sim/kv/pull`, signal, { prompt: key })
    }
    if (got === true) {
      this.counters.kvReceived++
      return 'transfer'
    }
    if (this.role === 'decode') this.counters.kvRecomputed++
    return 'compute'
  }

  #room(room: string): Room {
    let r = this.#rooms.get(room)
    if (r === undefined) {
      r = { state: 'pending', tokens: 0, waiters: new Set(), at: Date.now() }
      this.#remember(this.#rooms, room, r)
    }
    return r
  }

  #remember<V>(m: Map<string, V>, k: string, v: V): void {
    m.delete(k)
    m.set(k, v)
    if (m.size > MAX_ENTRIES) {
      const oldest = m.keys().next().value
      if (oldest !== undefined) m.delete(oldest)
    }
  }
}

/** The bootstrap room of an SGLang-shaped request, as a string key; undefined = not SGLang PD. */
export function roomOf(body: Readonly<Record<string, unknown>>): string | undefined {
  const r = body['bootstrap_room']
  return typeof r === 'number' || typeof r === 'string' ? String(r) : undefined
}

function promptKey(prompt: string): string {
  return `${hash32(prompt, 1).toString(16)}-${hash32(prompt, 2).toString(16)}-${prompt.length}`
}

function hostPart(h: string): string {
  return h.includes(':') ? `[${h}]` : h
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** A pull or a bootstrap wait: true when the other pod answered 200. */
async function fetchOk(url: string, signal: AbortSignal, body?: unknown): Promise<boolean> {
  try {
    const res = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      ...(body !== undefined
        ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
        : {}),
      signal: AbortSignal.any([signal, AbortSignal.timeout(BOOTSTRAP_WAIT_MS + 5_000)]),
    })
    await res.arrayBuffer()
    return res.status === 200
  } catch {
    return false
  }
}

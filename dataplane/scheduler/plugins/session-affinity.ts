// session-affinity: requests carrying the same session key (a header, or a cookie) go to the
// endpoint the session last went to, while that endpoint is a candidate (ready and not ejected).
// When it is gone the plugin abstains, the other plugins pick a new endpoint, and the session is
// re-bound to it at dispatch: failover needs no extra round trip. Bindings expire after `ttl` of
// inactivity and are capped at `maxSessions` (least recently used first out).

import { intArg, numArg, optStrArg, strArg } from '../args.js'
import { noScoreEffects } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, PluginEnv, SchedRequest } from '../types.js'

interface Binding {
  ep: EndpointState
  expires: number
}

/** Value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) {
      const v = part.slice(eq + 1).trim()
      return v === '' ? undefined : v
    }
  }
  return undefined
}

export class SessionAffinityPlugin implements Plugin {
  readonly name = 'session-affinity'
  readonly header: string
  readonly cookie: string | undefined
  readonly ttlMs: number
  readonly maxSessions: number
  readonly #sessions = new Map<string, Binding>()
  readonly #env: PluginEnv

  constructor(args: PluginArgs, env: PluginEnv) {
    this.header = strArg(args, 'header', 'x-session-id').toLowerCase()
    this.cookie = optStrArg(args, 'cookie')
    this.ttlMs = numArg(args, 'ttlMs', 600_000, 1, Number.MAX_SAFE_INTEGER)
    this.maxSessions = intArg(args, 'maxSessions', 100_000, 1, 10_000_000)
    this.#env = env
  }

  key(req: SchedRequest): string | undefined {
    const h = req.ctx.header(this.header)
    if (h !== undefined && h !== '') return h
    return this.cookie === undefined
      ? undefined
      : cookieValue(req.ctx.header('cookie'), this.cookie)
  }

  readonly single = noScoreEffects

  score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
    const key = this.key(req)
    if (key === undefined) return false
    const b = this.#sessions.get(key)
    if (b === undefined || b.expires <= req.now) return false
    const i = eps.indexOf(b.ep)
    if (i < 0) return false
    out.fill(0, 0, eps.length)
    out[i] = 1
    return true
  }

  onDispatch(req: SchedRequest, ep: EndpointState): void {
    const key = this.key(req)
    if (key === undefined) return
    const now = this.#env.now()
    this.#sessions.delete(key)
    this.#sessions.set(key, { ep, expires: now + this.ttlMs })
    // Map order is last-use order: expired and excess bindings sit at the front.
    for (const [k, v] of this.#sessions) {
      if (this.#sessions.size <= this.maxSessions && v.expires > now) break
      this.#sessions.delete(k)
    }
  }

  forget(ep: EndpointState): void {
    for (const [k, v] of this.#sessions) if (v.ep === ep) this.#sessions.delete(k)
  }

  /** The endpoint a session is bound to (tests, debug). */
  boundTo(key: string): string | undefined {
    return this.#sessions.get(key)?.ep.name
  }

  debug(): Record<string, unknown> {
    return { header: this.header, cookie: this.cookie ?? null, sessions: this.#sessions.size }
  }
}

export function sessionAffinity(args: PluginArgs, env: PluginEnv): Plugin {
  return new SessionAffinityPlugin(args, env)
}

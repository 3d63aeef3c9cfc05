// Health transitions as log lines an operator can read: one `endpoint ejected` when an endpoint
// leaves rotation and one `endpoint readmitted` when it is fully back, per episode, however many
// times the backoff re-ejected it in between (the count is on the readmitted line). An endpoint
// that keeps flapping logs at most one episode per `quietMs`; the episodes in between are counted
// and reported on its next line, and one that is still out after `quietMs` is logged then.

import type { Logger } from '../log.js'
import type { EndpointState } from './state.js'

interface Episode {
  /** An episode is open (the endpoint is not fully back). */
  open: boolean
  since: number
  logged: boolean
  lastLogAt: number
  suppressed: number
}

export class HealthLog {
  readonly #log: Logger | undefined
  readonly #quietMs: number
  readonly #episodes = new WeakMap<EndpointState, Episode>()

  constructor(log: Logger | undefined, quietMs = 30_000) {
    this.#log = log
    this.#quietMs = quietMs
  }

  /** Call after every health input of `st` (cheap when nothing changed). */
  note(st: EndpointState, now: number): void {
    if (this.#log === undefined) return
    const active = st.ejectionActive
    let e = this.#episodes.get(st)
    if (e === undefined) {
      if (!active) return
      e = {
        open: false,
        since: now,
        logged: false,
        lastLogAt: Number.NEGATIVE_INFINITY,
        suppressed: 0,
      }
      this.#episodes.set(st, e)
    }
    if (active && !e.open) {
      e.open = true
      e.since = now
      e.logged = false
    }
    if (active && !e.logged) {
      if (now - e.lastLogAt < this.#quietMs) return
      const last = st.lastEjection
      e.logged = true
      e.lastLogAt = now
      this.#log('warn', 'endpoint ejected', {
        endpoint: st.name,
        address: st.id,
        reason: last?.reason,
        periodMs: last?.periodMs,
        ...(now > e.since ? { outForMs: Math.round(now - e.since) } : {}),
        ...(e.suppressed > 0 ? { episodesNotLogged: e.suppressed } : {}),
      })
      e.suppressed = 0
      return
    }
    if (!active && e.open) {
      e.open = false
      if (!e.logged) {
        e.suppressed++
        return
      }
      this.#log('info', 'endpoint readmitted', {
        endpoint: st.name,
        address: st.id,
        outForMs: Math.round(now - e.since),
        ejections: st.episodeEjections,
      })
    }
  }
}

// The proxy's part of re-warming a dead engine's prefix groups (issue 9; the design is in
// dataplane/scheduler/plugins/rewarm.ts): a recent request per warm prefix group, kept so that a
// group whose engine died can have its prefix computed on its new pod before its next client
// request. serve/shadow.ts (serveShadow) keeps them and sends the re-warms as shadow requests
// under its rules: not client traffic, never held against an endpoint, MAX_SHADOWS_IN_FLIGHT
// shared with the copies, counted with reason="rewarm".
//
// What is kept: the request the shadow needs (server, API, path, parsed body, upstream model and
// upstream headers, the body's bytes counted), only for groups the scheduler calls warm
// (`rewarmGroup`: never LoRA requests, never in EPP mode where nobody asks), the most recent one
// per group replacing the previous one. Bounded: at most REWARM_MAX_GROUPS entries and
// REWARM_MAX_BYTES of bodies (least recently kept dropped first); an entry not refreshed for
// REWARM_TTL_MS is dropped (its group cooled: a warm group sends a request every few seconds).
// The bodies are those the proxy parsed anyway (no copy); keeping one holds it in memory for up
// to REWARM_TTL_MS. Per process: a `--workers N` worker other than the first asks nothing
// (scheduler `rewarm: false`), so its store stays empty.

import type { SnapshotServer } from '../../api/snapshot.js'
import type { EndpointPicker, PickContext, RewarmPlan } from '../picker.js'

export const REWARM_MAX_GROUPS = 256
export const REWARM_MAX_BYTES = 16 << 20
export const REWARM_TTL_MS = 15_000

interface Kept<T> {
  readonly value: T
  readonly bytes: number
  readonly at: number
}

/** Recent requests by (server, group key), bounded in count, bytes and age (see the header). */
export class RewarmStore<T> {
  readonly maxGroups: number
  readonly maxBytes: number
  readonly ttlMs: number
  readonly #kept = new Map<string, Kept<T>>()
  #bytes = 0

  constructor(maxGroups = REWARM_MAX_GROUPS, maxBytes = REWARM_MAX_BYTES, ttlMs = REWARM_TTL_MS) {
    this.maxGroups = maxGroups
    this.maxBytes = maxBytes
    this.ttlMs = ttlMs
  }

  get size(): number {
    return this.#kept.size
  }

  get bytes(): number {
    return this.#bytes
  }

  /** Keeps `value` (of `bytes`) for the group, replacing its previous one; expired ones go. */
  keep(server: string, group: number, value: T, bytes: number, now: number): void {
    const k = keyOf(server, group)
    this.#delete(k)
    this.expire(now)
    if (bytes > this.maxBytes) return
    while (this.#kept.size >= this.maxGroups || this.#bytes + bytes > this.maxBytes) {
      const oldest = this.#kept.keys().next()
      if (oldest.done === true) break
      this.#delete(oldest.value)
    }
    this.#kept.set(k, { value, bytes, at: now })
    this.#bytes += bytes
  }

  /** The kept request of the group, if any and not expired. */
  get(server: string, group: number, now: number): T | undefined {
    const k = keyOf(server, group)
    const e = this.#kept.get(k)
    if (e === undefined) return undefined
    if (now - e.at > this.ttlMs) {
      this.#delete(k)
      return undefined
    }
    return e.value
  }

  /** Drops entries not refreshed for ttlMs (oldest first: entries are in keeping order). */
  expire(now: number): void {
    for (const [k, e] of this.#kept) {
      if (now - e.at <= this.ttlMs) break
      this.#delete(k)
    }
  }

  #delete(k: string): void {
    const e = this.#kept.get(k)
    if (e === undefined) return
    this.#kept.delete(k)
    this.#bytes -= e.bytes
  }
}

function keyOf(server: string, group: number): string {
  return `${server}\u0000${group}`
}

/**
 * What a caller that sends shadows does after each pick (serve/shadow.ts; the virtual fleet the
 * same): keeps `value` (the request, `bytes` long) if the picker calls its group warm, then asks
 * for the one re-warm planned now among the groups the store holds a request for, and returns it
 * with that group's kept request. Undefined: nothing to send.
 */
export function nextRewarm<T>(
  picker: EndpointPicker,
  store: RewarmStore<T>,
  ctx: PickContext,
  server: SnapshotServer,
  value: T,
  bytes: number,
  now: number,
): { readonly plan: RewarmPlan; readonly kept: T } | undefined {
  if (picker.rewarm === undefined || picker.rewarmGroup === undefined) return undefined
  const group = picker.rewarmGroup(ctx)
  if (group !== undefined) store.keep(server.key, group, value, bytes, now)
  const plan = picker.rewarm(server, (g) => store.get(server.key, g, now) !== undefined)
  const kept = plan === undefined ? undefined : store.get(server.key, plan.group, now)
  return plan === undefined || kept === undefined ? undefined : { plan, kept }
}

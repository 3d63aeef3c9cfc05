// lora-affinity: for a request naming a LoRA adapter, prefer endpoints that already have it loaded,
// then endpoints with a free adapter slot, last those that must evict another adapter first. A
// soft preference (a score, never a filter): every endpoint stays eligible, and the preference is
// dropped for an endpoint whose outstanding requests exceed the least-loaded candidate's by more
// than `loadMargin`, so a popular adapter spreads to a second pod instead of queueing on one.
//
// What is loaded comes from `vllm:lora_requests_info` (adapters of running and waiting requests,
// `max_lora` slots) plus this replica's own requests in flight there (sent since the scrape too)
// and its recent dispatches: an adapter idle for a moment stays in its slot on the engine but
// disappears from the metric, and forgetting it would make the next request for it load it
// somewhere else. predicted-latency prices the same facts in ms (adapterNeed): a load, an
// eviction's reload, the wait for a busy adapter to drain.

import type { EngineMetrics } from '../../engines/view.js'
import { numArg } from '../args.js'
import { noScoreEffects } from '../scores.js'
import type { EndpointState } from '../state.js'
import type { Plugin, PluginArgs, SchedRequest } from '../types.js'

/**
 * Loaded beats everything within the load margin; an adapter already queued on a pod will be
 * loaded there; a free slot still costs a load (a miss), so it ranks well below.
 */
export const LORA_SCORES = { loaded: 1, queuedThere: 0.6, freeSlot: 0.3, mustEvict: 0 } as const

/** Where an adapter stands on an endpoint (adapterOn). */
export interface AdapterPlace {
  /** Held in a slot there (running, this replica's requests there, or idle but recent). */
  readonly resident: boolean
  /** Slots believed filled. */
  readonly used: number
  /** Slots filled by adapters with requests running or queued there: these cannot be evicted. */
  readonly busy: number
  readonly slots: number
}

/**
 * Where `adapter` stands on `ep`. Busy (cannot be evicted): the adapters running at the last fresh
 * scrape and those this replica has requests in flight for there now (sent since the scrape
 * included: they are in its batch or queue, whatever the scrape said). Idle but still loaded: the
 * adapters this replica sent there most recently, newest first (the engine evicts the least
 * recently used idle one), as many as the busy ones leave slots for.
 * This runs for every candidate of every LoRA request: the answer for every adapter is worked out
 * once per endpoint (#viewOf) and kept while nothing about its adapters changed (the endpoint's
 * loraVersion; the scrape still fresh or not, and a new one reporting the same adapters:
 * sameAdapters). Kept by endpoint slot in arrays, and which slots hold an adapter as a bitset per
 * adapter (residentSlots): an object and a Set per endpoint, read for each candidate, were three
 * cache misses per candidate and most of an adapter request's lookups (CPU profile).
 */
export function adapterOn(ep: EndpointState, adapter: string, now: number): AdapterPlace {
  const s = viewSlot(ep, now)
  return {
    resident: held(residentSlots.get(adapter), s),
    used: views.used[s] as number,
    busy: views.busy[s] as number,
    slots: views.slots[s] as number,
  }
}

/**
 * Two fresh scrapes whose adapter part gives viewOf the same answers: the same slot count and the
 * same running adapters in the same order (a stale one, undefined, is never the same as a fresh).
 */
function sameAdapters(a: EngineMetrics | undefined, b: EngineMetrics | undefined): boolean {
  if (a === undefined || b === undefined) return false
  const x = a.lora
  const y = b.lora
  if (x === undefined || y === undefined) return x === y
  if (x.maxLora !== y.maxLora || x.running.length !== y.running.length) return false
  for (let i = 0; i < x.running.length; i++) if (x.running[i] !== y.running[i]) return false
  return true
}

/**
 * adapterOn's answers by endpoint slot (one state held per slot at most), and what each was
 * worked out from: the state, its loraVersion, the scrape (or a later one reporting the same
 * adapters). `resident`: the adapters believed held there, to clear their bits when remade.
 */
const views = {
  ep: [] as (EndpointState | undefined)[],
  fresh: [] as (EngineMetrics | undefined)[],
  resident: [] as (ReadonlySet<string> | undefined)[],
  version: new Float64Array(64) as Float64Array,
  used: new Int32Array(64) as Int32Array,
  busy: new Int32Array(64) as Int32Array,
  slots: new Int32Array(64) as Int32Array,
}

/** Adapter → bit s set when slot s's view holds it resident (no entry: no slot does). */
const residentSlots = new Map<string, Uint32Array>()

/** Whether bit `s` of `bits` is set. */
function held(bits: Uint32Array | undefined, s: number): boolean {
  return (
    bits !== undefined &&
    s >>> 5 < bits.length &&
    (((bits[s >>> 5] as number) >>> (s & 31)) & 1) === 1
  )
}

/** The slot of `ep`, its view there made current. */
function viewSlot(ep: EndpointState, now: number): number {
  const s = ep.slot
  const fresh = ep.fresh(now)
  if (views.ep[s] === ep && views.version[s] === ep.loraVersion) {
    if (views.fresh[s] === fresh) return s
    if (sameAdapters(views.fresh[s], fresh)) {
      views.fresh[s] = fresh
      return s
    }
  }
  remake(ep, fresh)
  return s
}

let made = 0

/** Views worked out so far, in this process (tests: kept, or made again). */
export function loraViewsMade(): number {
  return made
}

/** Slot `ep.slot`'s view worked out afresh from `ep` and its scrape `fresh`. */
function remake(ep: EndpointState, fresh: EngineMetrics | undefined): void {
  made++
  const s = ep.slot
  if (s >= views.version.length) {
    const n = Math.max(s + 1, views.version.length * 2)
    views.version = grownF64(views.version, n)
    views.used = grownI32(views.used, n)
    views.busy = grownI32(views.busy, n)
    views.slots = grownI32(views.slots, n)
  }
  for (const name of views.resident[s] ?? NONE) {
    const bits = residentSlots.get(name)
    if (bits === undefined || s >>> 5 >= bits.length) continue
    bits[s >>> 5] = (bits[s >>> 5] as number) & ~(1 << (s & 31))
    if (bits.every((w) => w === 0)) residentSlots.delete(name)
  }
  const v = viewOf(ep, fresh)
  for (const name of v.resident) {
    let bits = residentSlots.get(name)
    if (bits === undefined || s >>> 5 >= bits.length) {
      const grown = new Uint32Array(Math.max((s >>> 5) + 1, views.version.length >>> 5))
      if (bits !== undefined) grown.set(bits)
      bits = grown
      residentSlots.set(name, bits)
    }
    bits[s >>> 5] = (bits[s >>> 5] as number) | (1 << (s & 31))
  }
  views.ep[s] = ep
  views.fresh[s] = fresh
  views.resident[s] = v.resident
  views.version[s] = ep.loraVersion
  views.used[s] = v.used
  views.busy[s] = v.busy
  views.slots[s] = v.slots
}

function grownF64(a: Float64Array, n: number): Float64Array {
  const g = new Float64Array(n)
  g.set(a)
  return g
}

function grownI32(a: Int32Array, n: number): Int32Array {
  const g = new Int32Array(n)
  g.set(a)
  return g
}

const NONE: readonly string[] = []

function viewOf(
  ep: EndpointState,
  fresh: EngineMetrics | undefined,
): { resident: Set<string>; used: number; busy: number; slots: number } {
  const info = fresh?.lora
  // The slot count is the engine's configuration (`--max-loras`): a stale scrape (a busy engine
  // answers /metrics late) still tells it. Assuming 1 then would count only the adapter sent
  // last as loaded, and send the other one's requests where it must be loaded again.
  const slots = info?.maxLora ?? ep.metrics?.lora?.maxLora ?? 1
  const running = info?.running ?? NONE
  const resident = new Set<string>(running)
  let busy = running.length
  for (const name of ep.loraInFlight.keys()) {
    if (running.includes(name)) continue
    busy++
    resident.add(name)
  }
  // Idle ones: loraSeen iterates oldest first, so the newest `room` of them are the last `room`.
  const room = Math.max(0, slots - busy)
  let idle = 0
  for (const name of ep.loraSeen.keys()) {
    if (!running.includes(name) && !ep.loraInFlight.has(name)) idle++
  }
  if (room > 0) {
    let k = 0
    for (const name of ep.loraSeen.keys()) {
      if (running.includes(name) || ep.loraInFlight.has(name)) continue
      k++
      if (idle - k < room) resident.add(name)
    }
  }
  const used = Math.min(slots, busy + Math.min(room, idle))
  return { resident, used, busy, slots }
}

/**
 * What a request for `adapter` needs on `ep` before it can run: nothing (resident); a load into a
 * free slot; a load after evicting an idle adapter (whose next request then finds it gone);
 * or, with every slot's adapter busy, a wait until one of them drains before that (the engine
 * skips the request meanwhile, and it can starve behind those adapters' traffic).
 */
export type AdapterNeed = 'resident' | 'freeSlot' | 'evictIdle' | 'blocked'

export function adapterNeed(ep: EndpointState, adapter: string, now: number): AdapterNeed {
  return needOf(residentSlots.get(adapter), viewSlot(ep, now))
}

/** adapterNeed at slot `s` (its view current), the adapter's slot bits looked up by the caller. */
function needOf(bits: Uint32Array | undefined, s: number): AdapterNeed {
  if (held(bits, s)) return 'resident'
  const slots = views.slots[s] as number
  if ((views.used[s] as number) < slots) return 'freeSlot'
  return (views.busy[s] as number) < slots ? 'evictIdle' : 'blocked'
}

/** req.scratch key of adapterNeeds' answer for the request's last candidates. */
const NEEDS = {}

/** What adapterNeeds worked out, and for which candidates, adapter and time. */
interface NeedsMemo {
  readonly eps: readonly EndpointState[]
  readonly adapter: string
  readonly now: number
  readonly needs: readonly AdapterNeed[]
}

/**
 * `adapterNeed` of `req`'s adapter on each of `eps` (by position), at `req.now`; undefined for a
 * base-model request. Worked out once per decision and shared by its plugins (predicted-latency
 * prices it, lora-affinity ranks by it): each asked for every candidate, and the lookups were a
 * tenth of an adapter request's decision. A new array whenever the candidates, the adapter or the
 * time differ (a caller may keep one it was handed).
 */
export function adapterNeeds(
  req: SchedRequest,
  eps: readonly EndpointState[],
): readonly AdapterNeed[] | undefined {
  const adapter = req.lora
  if (adapter === undefined) return undefined
  const memo = req.scratch.get(NEEDS) as NeedsMemo | undefined
  if (memo !== undefined && memo.eps === eps && memo.now === req.now && memo.adapter === adapter) {
    return memo.needs
  }
  const needs: AdapterNeed[] = new Array(eps.length)
  // Each candidate's view read right after it is made current: two candidates may share a slot (a
  // throwaway state beside a live one), each remaking it for itself. A remake may replace or drop
  // the adapter's bits: looked up again after one.
  let bits = residentSlots.get(adapter)
  let seen = made
  for (let i = 0; i < eps.length; i++) {
    const s = viewSlot(eps[i] as EndpointState, req.now)
    if (made !== seen) {
      bits = residentSlots.get(adapter)
      seen = made
    }
    needs[i] = needOf(bits, s)
  }
  const next: NeedsMemo = { eps, adapter, now: req.now, needs }
  req.scratch.set(NEEDS, next)
  return needs
}

/** Adapters believed resident on `ep` (tests, debug). */
export function residentAdapters(ep: EndpointState, now: number): Set<string> {
  const info = ep.fresh(now)?.lora
  const out = new Set<string>(info?.running ?? [])
  for (const name of ep.loraSeen.keys()) if (adapterOn(ep, name, now).resident) out.add(name)
  return out
}

export function loraAffinity(args: PluginArgs): Plugin {
  const margin = numArg(args, 'loadMargin', 16, 0, 100_000)
  return {
    name: 'lora-affinity',
    single: noScoreEffects,
    score(req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
      const adapter = req.lora
      if (adapter === undefined) return false
      let minLoad = Number.POSITIVE_INFINITY
      for (const e of eps) minLoad = Math.min(minLoad, e.pending(req.now))
      // As adapterOn answers: 'resident' is held there; 'freeSlot' not held with a slot free; the
      // other two not held with every slot used.
      const needs = adapterNeeds(req, eps) as readonly AdapterNeed[]
      for (let i = 0; i < eps.length; i++) {
        const e = eps[i] as EndpointState
        if (e.pending(req.now) - minLoad > margin) {
          out[i] = 0
          continue
        }
        const need = needs[i]
        if (need === 'resident') out[i] = LORA_SCORES.loaded
        else if (e.fresh(req.now)?.lora?.waiting.includes(adapter) === true) {
          out[i] = LORA_SCORES.queuedThere
        } else if (need === 'freeSlot') out[i] = LORA_SCORES.freeSlot
        else out[i] = LORA_SCORES.mustEvict
      }
      return true
    },
  }
}

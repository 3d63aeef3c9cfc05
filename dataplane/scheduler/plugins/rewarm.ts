// Re-warming a dead engine's prefix groups as soon as the kill is seen (issue 9, engines restarted
// under load; predicted-latency's part, the proxy's part is dataplane/serve/rewarm.ts).
//
// Why: a group whose only warm pod dies pays a cold prefill at its next request, and its requests
// arriving meanwhile wait for that prefill (docs/scheduling.md, "After engine restarts": 242 forced
// cold prefills and 206 waiting followers of 482 slow requests on virtual time). Computing the
// group's prefix on its new pod as soon as the kill is seen, with no client waiting, turns the
// next request into a hit when it comes later than that prefill takes.
//
// Design:
// - Seen: the scheduler tells the plugin when an endpoint goes out of rotation (ejected: a cut
//   stream, a refused connection, an unanswered scrape; Plugin.onEndpointDown) and when a new
//   process start time or counters going backwards show a restart (onEndpointReset, also for a
//   restart fast enough never to be ejected). `lostGroups` marks every warm group (below) whose
//   prefix key the prefix index lists on that endpoint.
// - Warm: a group whose decayed request count (HOT_TAU_MS, as #replicate counts) is at least
//   REWARM_MIN_COUNT, i.e. about two requests in the last few seconds. Lower than #replicate's
//   bar on purpose: a second copy of a group costs a prefill for a gain only if its pod dies,
//   while a re-warm of a lost group moves the cold prefill its next request would pay on the same
//   pod to an earlier time. A group that cools is dropped from the lost set and its kept blocks
//   are released (the proxy's store expires its body on its own clock, serve/rewarm.ts).
// - Which: groups no live pod holds any more (as far as the index knows). Not groups that kept
//   one live holder (their copy died): their next request hits that holder and #replicate makes
//   the copy again then. Re-warming those too sent 652 re-warms in 41 runs (33 dropped at the
//   in-flight bound) and gave 542 slow requests against 482 without re-warms; only the lost ones,
//   144 re-warms and 347 (virtual time, the numbers below). One re-warm at a time per group (a
//   copy or re-warm in flight waits); none for the group whose own request is being placed (the
//   proxy asks right after its pick: that request is the group's re-home).
// - Where: the pod #rehome gives the group now (bounded moves in flight, free slots, room in
//   the KV cache, rendezvous on the group's key), the same rule its next client request meets
//   through #placeCold, so the request goes where the warm-up went; the index records the blocks
//   there when the shadow starts (as a copy is recorded) and the move counts in flight until it
//   ends. Its copy counts as ready after the cheapest calibrated cold prefill among the live pods
//   (see pickRewarm).
// - When: at the next pick of any request of the server (the proxy asks after each pick, one
//   re-warm per pick), not from a timer: no extra wake-ups, and at ~16 req/s the next pick comes
//   within ~60 ms of the kill being seen. A lost group's own next request may come first; it is
//   then placed by #rehome as before and the index shows it held, so no re-warm follows.
// - Never for LoRA requests (no group is counted for them), never in EPP mode (Envoy sends the
//   requests: nobody asks), never when the profile filters candidates (a filter may confine a
//   tenant or an adapter to some pods; a re-warm has no request to filter for).
//
// Measured (virtual time, `RESTART_CLASSIFY=1 npx vitest run hack/bench/virtual-sweep.test.ts`,
// the quick restart regime, seeds 10-49 and the bench sequence): slow requests (> 100 ms) 482 →
// 347 (forced cold prefills 242 → 112, their followers 206 → 97, queued 25 → 124: requests of
// a re-warmed group that arrive during its re-warm still wait for it), 144 re-warms in 41 runs;
// restart p90 within 10 % of fresh 41 of 41 runs against 40. 16 s window (R_MS=16000,
// R_SEEDS=10-29): 284 → 218.
import type { EndpointState } from '../state.js'
import type { HotGroup } from './predicted-latency.js'
import type { PrefixCachePlugin } from './prefix-cache.js'

/** Decayed requests a group needs to be worth keeping and re-warming (see the header). */
export const REWARM_MIN_COUNT = 2

/** The plugin state the re-warm reads and the callbacks it updates the plugin through. */
export interface RewarmView {
  readonly groups: Map<number, HotGroup>
  readonly lost: Set<number>
  readonly index: PrefixCachePlugin
  readonly affinityBlocks: number
  readonly tauMs: number
  /** A cold prefill of `tokens` on `ep` (ms, as calibrated). */
  coldMs(ep: EndpointState, tokens: number): number
  started(ep: EndpointState, key: number, g: HotGroup, at: number, coldMs: number): void
  ended(ep: EndpointState, g: HotGroup, ok: boolean): void
}

/** A planned re-warm: the group's key and kept prompt blocks, the pod, and its callbacks. */
export interface RewarmTarget {
  readonly key: number
  readonly ep: EndpointState
  readonly tokens: number
  started(at: number): void
  ended(ok: boolean): void
}

/** Whether group `g` is warm enough at `now` to keep its prompt and re-warm it. */
export function groupWarm(g: HotGroup, now: number, tauMs: number): boolean {
  return g.n * Math.exp(-(now - g.t) / tauMs) >= REWARM_MIN_COUNT
}

/**
 * `ep` died or restarted: every warm group whose prefix key the index lists there is lost.
 * Groups that cooled give up their kept blocks here.
 */
export function lostGroups(v: RewarmView, ep: EndpointState, now: number): void {
  for (const [key, g] of v.groups) {
    if (g.kept === undefined) continue
    if (!groupWarm(g, now, v.tauMs)) {
      g.kept = undefined
      continue
    }
    if (v.index.index.holds(ep, key)) v.lost.add(key)
  }
}

/**
 * The first lost group that needs and can have a re-warm now among `eps` (live candidates), its
 * pod by `rehome`; groups that need none any more (cooled, no prompt kept by the proxy, held by
 * two live pods) leave the lost set. Undefined: nothing to send now.
 */
export function pickRewarm(
  v: RewarmView,
  eps: readonly EndpointState[],
  now: number,
  has: (group: number) => boolean,
  rehome: (key: number, match: ArrayLike<number>) => Float64Array | undefined,
): RewarmTarget | undefined {
  for (const key of v.lost) {
    const g = v.groups.get(key)
    const kept = g?.kept
    if (g === undefined || kept === undefined || !groupWarm(g, now, v.tauMs) || !has(key)) {
      v.lost.delete(key)
      continue
    }
    if (g.copying) continue
    const match = v.index.matchDepths(kept.hashes, eps)
    let holders = 0
    for (const ep of eps) if ((match[ep.slot] ?? 0) >= v.affinityBlocks) holders++
    if (holders >= 1) {
      v.lost.delete(key)
      continue
    }
    const hrw = rehome(key, match)
    if (hrw === undefined) continue
    let target = -1
    let top = 0
    for (let i = 0; i < eps.length; i++) {
      const w = hrw[i] as number
      if (w > top) {
        top = w
        target = i
      }
    }
    if (target < 0) continue
    v.lost.delete(key)
    const ep = eps[target] as EndpointState
    const group = g
    // When the copy is ready, as the group's next request will compare it with a cold prefill
    // elsewhere: the cheapest calibrated cold prefill among the live pods, not the target's own
    // fit. Identical engines' fits differ (virtual time, seed 27: 0.33 ms/token on a pod back from
    // a restart against 0.19 on a survivor), and with the target's own the next request found
    // the copy's remaining prefill longer than a cold one elsewhere and paid that instead.
    let cold = Number.POSITIVE_INFINITY
    for (const e of eps) cold = Math.min(cold, v.coldMs(e, kept.tokens))
    return {
      key,
      ep,
      tokens: kept.tokens,
      started: (at) => {
        // Recorded as a dispatch is: the group's next request sees the blocks there at once.
        v.index.record(ep, kept.hashes)
        v.started(ep, key, group, at, cold)
      },
      ended: (ok) => v.ended(ep, group, ok),
    }
  }
  return undefined
}

// Scheduler profiles: the plugin registry, the default profile, and how a snapshot's profile
// becomes plugin instances. Plugins with unchanged name and arguments survive a snapshot swap
// with their state (prefix-cache beliefs, sessions, fairness counters); weights may change freely.

import { canonicalJson } from '../../api/canonical-json.js'
import type {
  SchedulerPluginName,
  SnapshotScheduler,
  SnapshotSchedulerPlugin,
} from '../../api/snapshot.js'
import { fairness } from './plugins/fairness.js'
import { gpuAware } from './plugins/gpu-aware.js'
import { kvCache } from './plugins/kv-cache.js'
import { leastKvCache } from './plugins/least-kv-cache.js'
import { leastLatency } from './plugins/least-latency.js'
import { leastPending } from './plugins/least-pending.js'
import { loraAffinity } from './plugins/lora-affinity.js'
import { PredictedLatencyPlugin, predictedLatency } from './plugins/predicted-latency.js'
import { PrefixCachePlugin, prefixCache } from './plugins/prefix-cache.js'
import { randomPlugin } from './plugins/random.js'
import { roundRobin } from './plugins/round-robin.js'
import { sessionAffinity } from './plugins/session-affinity.js'
import type { PrefixIndex } from './prefix-index.js'
import type { Plugin, PluginEnv, PluginFactory } from './types.js'

export const PLUGINS: Readonly<Record<SchedulerPluginName, PluginFactory>> = {
  'least-kv-cache': leastKvCache,
  'least-latency': leastLatency,
  'least-pending': leastPending,
  'prefix-cache': prefixCache,
  'kv-cache': kvCache,
  'predicted-latency': predictedLatency,
  'lora-affinity': loraAffinity,
  'session-affinity': sessionAffinity,
  'gpu-aware': gpuAware,
  fairness,
  random: randomPlugin,
  'round-robin': roundRobin,
}

/**
 * Used for every ModelServer without `spec.scheduler`. One scorer decides by predicted time to
 * first token: the prefill a prefix hit saves against the queueing it adds (an engine at its
 * batch limit), calibrated online, so the same profile is right when prefill dominates, when
 * decode does, and when nothing is shared (least loaded) — no load margin to tune.
 * lora-affinity, session-affinity and gpu-aware abstain unless the request names an adapter,
 * carries a session key, or the fleet mixes GPU types. No fairness queue by default: admission
 * control changes failure modes (429/503 under overload) and is opted into per server.
 */
export const DEFAULT_PROFILE: SnapshotScheduler = {
  plugins: [
    { name: 'predicted-latency', weight: 6, args: {} },
    { name: 'lora-affinity', weight: 4, args: {} },
    { name: 'session-affinity', weight: 4, args: {} },
    { name: 'gpu-aware', weight: 2, args: {} },
  ],
}

export interface ProfileEntry {
  readonly key: string
  readonly name: SchedulerPluginName
  readonly weight: number
  readonly plugin: Plugin
}

export function entryKey(p: SnapshotSchedulerPlugin): string {
  return `${p.name}:${canonicalJson(p.args)}`
}

/**
 * Plugin instances for `profile`, reusing those of `previous` whose name and arguments match.
 * Returns the entries and the instances that were not reused (to be closed).
 */
export function buildProfile(
  profile: SnapshotScheduler,
  previous: readonly ProfileEntry[],
  env: PluginEnv,
): { entries: ProfileEntry[]; dropped: Plugin[] } {
  const old = new Map(previous.map((e) => [e.key, e]))
  const entries: ProfileEntry[] = []
  for (const p of profile.plugins) {
    const key = entryKey(p)
    const reuse = old.get(key)
    old.delete(key)
    const plugin = reuse?.plugin ?? PLUGINS[p.name](p.args, env)
    entries.push({ key, name: p.name, weight: p.weight, plugin })
  }
  shareIndexes(entries)
  return { entries, dropped: [...old.values()].map((e) => e.plugin) }
}

/**
 * Plugins of one profile whose prefix indexes cut prompts the same way (prefix-cache, and
 * predicted-latency's index) share one index (prefix-index.ts): the one holding the most, so a
 * plugin kept across a snapshot swap keeps what it learned. The first user in profile order
 * feeds it from request events; the others only read it. Run on every build: profiles change.
 */
function shareIndexes(entries: readonly ProfileEntry[]): void {
  const groups = new Map<string, PrefixCachePlugin[]>()
  for (const e of entries) {
    const p = e.plugin
    const user =
      p instanceof PrefixCachePlugin ? p : p instanceof PredictedLatencyPlugin ? p.index : undefined
    if (user === undefined) continue
    const g = groups.get(user.index.key)
    if (g === undefined) groups.set(user.index.key, [user])
    else g.push(user)
  }
  for (const users of groups.values()) {
    let best: PrefixIndex | undefined
    let most = -1
    for (const u of users) {
      const n = u.index.stats().blocksIndexed
      if (n > most) {
        most = n
        best = u.index
      }
    }
    if (best === undefined) continue
    for (const u of users) u.index = best
    best.owner = users[0]
  }
}

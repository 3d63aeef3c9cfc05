// Diagnosis only, skipped unless asked: bench:routing's regimes on virtual time over many seeds.
// LORA_SWEEP=1: multi-LoRA, the adapter hit rate per seed and the misses explained (LORA_SEEDS=30-49
// LORA_LOADS=0.7,0.8 LORA_SCALE=2.5 (engine time scale; the offered rate stays that of 2.5, so 3
// is a slower machine) LORA_SCRAPE=200 LORA_POLICY=default,lora,rr,lp LORA_SHOW=3 misses printed).
// UNIFORM_SWEEP=1: uniform prompts, TTFT p90/p99/mean per policy (U_SEEDS, U_LOADS, U_POLICY).
// COPY_SWEEP=1: hot-group copies (predicted-latency hotCopyTheta) on against off in every regime
// of bench:routing, with and without the simulator's prefill interference: per regime the median
// and worst TTFT p90 ratio on/off, and for the restart regime how many seeds stay within 10 % of
// their own fresh run (C_SEEDS=10-49, C_REGIMES=sp,sp-restart,db,un,rep3 C_INTERFERENCE=0,1
// C_LOAD=0.7 C_ILOAD=0.4 (the load with interference: 0.7 saturates that shape) C_SHOW=1 per seed,
// C_THETA=0.5 the "on" side's hotCopyTheta instead of the default's).
// RESTART_CLASSIFY=1: the restart regime's slow requests sorted into what a router could still
// save and what it cannot (R_SEEDS=10-49, R_REWARM=0 without re-warms, see the block).
import { afterEach, beforeEach, describe, it, vi } from 'vitest'
import type { SnapshotSchedulerPlugin } from '../../api/snapshot.js'
import { DEFAULT_PROFILE } from '../../dataplane/scheduler/profile.js'
import { EndpointState } from '../../dataplane/scheduler/state.js'
import { seeded } from '../../dataplane/scheduler/testkit.js'
import { createRng, generateWords } from '../sim/rng.js'
import { poissonTimes } from './routing-load.js'
import {
  DECODE_BOUND,
  type EngineShape,
  PREFILL_BOUND,
  runVirtualFleet,
  ttftPercentile,
  type VirtualRequest,
} from './virtual-fleet.js'
import { words } from './words.js'

const env = process.env
const range = (s: string): number[] => {
  const [a, b] = s.split('-').map(Number) as [number, number]
  return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => a + i)
}
const POLICIES: Record<string, readonly SnapshotSchedulerPlugin[] | undefined> = {
  default: undefined,
  lora: [{ name: 'lora-affinity', weight: 1, args: {} }],
  rr: [{ name: 'round-robin', weight: 1, args: {} }],
  lp: [{ name: 'least-pending', weight: 1, args: {} }],
}

beforeEach(() => {
  vi.useFakeTimers({
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    now: 1_700_000_000_000,
  })
})
afterEach(() => {
  vi.useRealTimers()
})

/**
 * The shared-prefix requests of the copy and restart sweeps: 16 groups of a 1,500-word system
 * prompt and a 60-word question each, Poisson at `rate` per second over `ms`, seeded.
 */
function sharedSequence(rate: number, out: number, seed: number, ms: number): VirtualRequest[] {
  const r = seeded(seed)
  const systems = Array.from(
    { length: 16 },
    (_, g) => `Group ${g} policy. ${generateWords(100 + g, 'system', 1500).join('')}`,
  )
  return poissonTimes(rate, ms, r).map((at, k) => {
    const g = Math.floor(r() * systems.length)
    const user = generateWords(seed, `q${k}`, 60).join('')
    return { at, system: systems[g] as string, user, maxTokens: out, tag: `g${g}` }
  })
}

describe.skipIf(env['LORA_SWEEP'] !== '1')('multi-LoRA sweep (diagnosis)', () => {
  it('sweeps', async () => {
    const seeds = range(env['LORA_SEEDS'] ?? '30-39')
    const loads = (env['LORA_LOADS'] ?? '0.7').split(',').map(Number)
    const policies = (env['LORA_POLICY'] ?? 'default').split(',')
    const scrapeMs = Number(env['LORA_SCRAPE'] ?? 200)
    const show = Number(env['LORA_SHOW'] ?? 0)
    const ms = Number(env['LORA_MS'] ?? 8000)
    const scale = Number(env['LORA_SCALE'] ?? 2.5)
    // capacity as routing.ts computes it (300-token prompts, 16 output tokens)
    const e = PREFILL_BOUND
    const decode = 16 * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
    const cap =
      (4 * e.maxNumSeqs) /
      ((2.5 * (e.prefillOverheadMs + 300 * e.prefillMsPerToken + decode)) / 1000)
    const loras = Array.from({ length: 8 }, (_, i) => `adapter-${i}`)
    // Diagnosis: each change of an endpoint's learned batch limit (state.ts), with the scrape.
    const learned: string[] = []
    const orig = EndpointState.prototype.scrapeSucceeded
    EndpointState.prototype.scrapeSucceeded = function (this: EndpointState, now, m, restart) {
      const before = this.learnedCapacity
      const out = orig.call(this, now, m, restart)
      if (this.learnedCapacity !== before) {
        learned.push(
          `${this.name} ${before}->${this.learnedCapacity} (running ${m.running} waiting ${m.waiting} lora ${JSON.stringify(m.lora)})`,
        )
      }
      return out
    }
    for (const policy of policies) {
      for (const load of loads) {
        const hits: number[] = []
        const lines: string[] = []
        for (const seed of seeds) {
          const r = seeded(seed)
          const requests = poissonTimes(load * cap, ms, r).map((at, k) => ({
            at,
            user: generateWords(seed, `l${k}`, 300).join(''),
            maxTokens: 16,
            lora: loras[Math.floor(r() * loras.length)] as string,
          }))
          const x = await runVirtualFleet({
            shape: PREFILL_BOUND,
            pods: 4,
            timeScale: scale,
            loras,
            maxLoras: 2,
            requests,
            scrapeMs,
            explain: show > 0,
            ...(POLICIES[policy] !== undefined ? { plugins: POLICIES[policy] } : {}),
            advance: async (t) => vi.advanceTimersByTime(t),
          })
          hits.push(x.adapterHitRate)
          if (show > 0) lines.push(`  learned: ${learned.splice(0).join('; ')}`)
          learned.length = 0
          const sent = x.results.filter((q) => q.adapter !== undefined)
          const away = sent.filter((q) => q.adapter?.loaded === false)
          const awayHomed = away.filter((q) => (q.adapter?.homes.length ?? 0) > 0)
          const p90 = ttftPercentile(x.results, 90, 2000)
          const p99 = ttftPercentile(x.results, 99, 2000)
          lines.push(
            `  seed ${seed}: hit ${(100 * x.adapterHitRate).toFixed(1)} % (${requests.length} req), sent where not loaded ${away.length} (of which loaded elsewhere ${awayHomed.length}), p90 ${p90.toFixed(0)} p99 ${p99.toFixed(0)}`,
          )
          for (const q of awayHomed.slice(0, show)) {
            lines.push(
              `    at ${q.at.toFixed(0)} -> ${q.pod} homes ${q.adapter?.homes.join(',')} ttft ${q.ttftMs.toFixed(0)}: ${q.explain ?? ''}`,
            )
          }
        }
        const sorted = [...hits].sort((a, b) => a - b)
        const mean = hits.reduce((a, b) => a + b, 0) / hits.length
        process.stdout.write(
          `${policy} load ${load} scale ${scale} scrape ${scrapeMs}: adapter hit mean ${(100 * mean).toFixed(1)} % min ${(100 * (sorted[0] ?? 0)).toFixed(1)} max ${(100 * (sorted.at(-1) ?? 0)).toFixed(1)}; below 95 %: ${hits.filter((h) => h < 0.95).length}/${hits.length}\n${lines.join('\n')}\n`,
        )
      }
    }
    EndpointState.prototype.scrapeSucceeded = orig
  }, 600_000)
})

describe.skipIf(env['UNIFORM_SWEEP'] !== '1')('uniform sweep (diagnosis)', () => {
  it('sweeps', async () => {
    const seeds = range(env['U_SEEDS'] ?? '20-29')
    const loads = (env['U_LOADS'] ?? '0.7').split(',').map(Number)
    const policies = (env['U_POLICY'] ?? 'default,rr,lp').split(',')
    const ms = Number(env['U_MS'] ?? 8000)
    const e = PREFILL_BOUND
    const decode = 16 * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
    const cap =
      (4 * e.maxNumSeqs) / ((2 * (e.prefillOverheadMs + 600 * e.prefillMsPerToken + decode)) / 1000)
    for (const load of loads) {
      const rows: string[] = []
      const sums: Record<string, { p90: number; p99: number; mean: number }> = {}
      for (const seed of seeds) {
        const r = seeded(seed)
        const requests = poissonTimes(load * cap, ms, r).map((at, k) => ({
          at,
          user: generateWords(seed, `u${k}`, 600).join(''),
          maxTokens: 16,
        }))
        const cells: string[] = []
        for (const policy of policies) {
          const x = await runVirtualFleet({
            shape: PREFILL_BOUND,
            pods: 4,
            timeScale: 2,
            requests,
            ...(POLICIES[policy] !== undefined ? { plugins: POLICIES[policy] } : {}),
            advance: async (t) => vi.advanceTimersByTime(t),
          })
          const judged = x.results.filter((q) => q.ok && q.at >= 2000)
          const mean = judged.reduce((a, q) => a + q.ttftMs, 0) / judged.length
          const p90 = ttftPercentile(x.results, 90, 2000)
          const p99 = ttftPercentile(x.results, 99, 2000)
          const s = sums[policy] ?? { p90: 0, p99: 0, mean: 0 }
          sums[policy] = s
          s.p90 += p90 / seeds.length
          s.p99 += p99 / seeds.length
          s.mean += mean / seeds.length
          cells.push(`${policy} ${p90.toFixed(0)}/${p99.toFixed(0)}/${mean.toFixed(1)}`)
        }
        rows.push(`  seed ${seed}: ${cells.join('  ')}`)
      }
      process.stdout.write(
        `uniform load ${load} (p90/p99/mean TTFT): ${Object.entries(sums)
          .map(([k, v]) => `${k} ${v.p90.toFixed(1)}/${v.p99.toFixed(1)}/${v.mean.toFixed(1)}`)
          .join('  ')}\n${rows.join('\n')}\n`,
      )
    }
  }, 600_000)
})

describe.skipIf(env['COPY_SWEEP'] !== '1')('hot-group copies sweep (diagnosis)', () => {
  // bench:routing --quick's regimes (routing.ts): the workload, engine shape, time scale and
  // whether 2 of 4 engines restart (pod-1 at 35 %, pod-2 at 50 % of the 8 s, down 1 s each).
  const MS = 8000
  const restarts = [
    { pod: 1, at: 0.35 * MS, downMs: 1000 },
    { pod: 2, at: 0.5 * MS, downMs: 1000 },
  ]
  const cap = (e: EngineShape, prompt: number, out: number, scale: number): number =>
    (4 * e.maxNumSeqs) /
    ((scale *
      (e.prefillOverheadMs +
        prompt * e.prefillMsPerToken +
        out * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2))) /
      1000)
  const shared = (rate: number, out: number, seed: number): VirtualRequest[] =>
    sharedSequence(rate, out, seed, MS)
  interface Regime {
    readonly shape: EngineShape
    readonly scale: number
    readonly replicas: number
    readonly restart: boolean
    requests(load: number, seed: number): VirtualRequest[]
  }
  const sp = (load: number, seed: number) =>
    shared(load * cap(PREFILL_BOUND, 1560, 16, 1), 16, seed)
  const REGIMES: Record<string, Regime> = {
    sp: { shape: PREFILL_BOUND, scale: 1, replicas: 1, restart: false, requests: sp },
    'sp-restart': { shape: PREFILL_BOUND, scale: 1, replicas: 1, restart: true, requests: sp },
    db: {
      shape: DECODE_BOUND,
      scale: 1,
      replicas: 1,
      restart: false,
      requests: (load, seed) => shared(load * cap(DECODE_BOUND, 1560, 64, 1), 64, seed),
    },
    'db-restart': {
      shape: DECODE_BOUND,
      scale: 1,
      replicas: 1,
      restart: true,
      requests: (load, seed) => shared(load * cap(DECODE_BOUND, 1560, 64, 1), 64, seed),
    },
    un: {
      shape: PREFILL_BOUND,
      scale: 2,
      replicas: 1,
      restart: false,
      requests: (load, seed) => {
        const r = seeded(seed)
        return poissonTimes(load * cap(PREFILL_BOUND, 600, 16, 2), MS, r).map((at, k) => ({
          at,
          user: generateWords(seed, `u${k}`, 600).join(''),
          maxTokens: 16,
        }))
      },
    },
    rep3: { shape: PREFILL_BOUND, scale: 1, replicas: 3, restart: false, requests: sp },
  }
  const profile = (theta?: number): SnapshotSchedulerPlugin[] =>
    DEFAULT_PROFILE.plugins.map((p) =>
      p.name === 'predicted-latency' && theta !== undefined
        ? { name: p.name, weight: p.weight, args: { ...p.args, hotCopyTheta: theta } }
        : { name: p.name, weight: p.weight, args: p.args },
    )
  const median = (xs: readonly number[]): number => {
    const s = [...xs].sort((a, b) => a - b)
    return s.length === 0
      ? Number.NaN
      : ((s[(s.length - 1) >> 1] as number) + (s[s.length >> 1] as number)) / 2
  }

  it('sweeps', async () => {
    const seeds = range(env['C_SEEDS'] ?? '10-49')
    const regimes = (env['C_REGIMES'] ?? 'sp,sp-restart,db,un,rep3').split(',')
    const modes = (env['C_INTERFERENCE'] ?? '0,1').split(',').map((x) => x === '1')
    const show = env['C_SHOW'] === '1'
    // The "on" side's hotCopyTheta (the default profile's when not given).
    const THETA = env['C_THETA'] !== undefined ? Number(env['C_THETA']) : undefined
    for (const interference of modes) {
      const load = Number(interference ? (env['C_ILOAD'] ?? 0.4) : (env['C_LOAD'] ?? 0.7))
      for (const name of regimes) {
        const g = REGIMES[name]
        if (g === undefined) throw new Error(`unknown regime ${name}`)
        const shape = interference ? { ...g.shape, prefillInterference: true } : g.shape
        const ratios: number[] = []
        const within = { on: 0, off: 0 }
        let copies = 0
        let copiedSeeds = 0
        const lines: string[] = []
        for (const seed of seeds) {
          const requests = g.requests(load, seed)
          const p90 = async (theta: number | undefined, restart: boolean) => {
            const x = await runVirtualFleet({
              shape,
              pods: 4,
              timeScale: g.scale,
              replicas: g.replicas,
              requests,
              plugins: profile(theta),
              ...(restart ? { restarts } : {}),
              advance: async (t) => vi.advanceTimersByTime(t),
            })
            return { p90: ttftPercentile(x.results, 90, 2000), copies: x.shadows.sent }
          }
          const on = await p90(THETA, g.restart)
          const off = await p90(0, g.restart)
          ratios.push(on.p90 / off.p90)
          copies += on.copies
          if (on.copies > 0) copiedSeeds++
          let extra = ''
          if (g.restart) {
            const fOn = await p90(THETA, false)
            const fOff = await p90(0, false)
            if (on.p90 <= 1.1 * fOn.p90) within.on++
            if (off.p90 <= 1.1 * fOff.p90) within.off++
            extra = ` fresh on ${fOn.p90.toFixed(0)} off ${fOff.p90.toFixed(0)}`
          }
          lines.push(
            `  seed ${seed}: on ${on.p90.toFixed(0)} off ${off.p90.toFixed(0)} (${(on.p90 / off.p90).toFixed(2)}) copies ${on.copies}${extra}`,
          )
        }
        const worst = Math.max(...ratios)
        const restartNote = g.restart
          ? `; restart within 10 % of own fresh: on ${within.on}/${seeds.length} off ${within.off}/${seeds.length}`
          : ''
        process.stdout.write(
          `COPY ${name} interference ${interference ? 1 : 0} load ${load}: p90 on/off median ${median(ratios).toFixed(3)} worst ${worst.toFixed(2)} (seed ${seeds[ratios.indexOf(worst)]}), worse by >5 % ${ratios.filter((r) => r > 1.05).length}/${seeds.length}; copies ${copies} in ${copiedSeeds} seeds${restartNote}\n${show ? `${lines.join('\n')}\n` : ''}`,
        )
      }
    }
  }, 3_600_000)
})

describe.skipIf(env['RESTART_CLASSIFY'] !== '1')(
  'restart slow requests classified (diagnosis)',
  () => {
    // bench:routing --quick's shared-prefix + restart regime (pod-1 killed at 2.8 s, pod-2 at 4.0 s,
    // each down 1 s; the first 2 s not judged), default profile. Every judged request slower than
    // R_SLOW_MS (100) in the restarted run is put in one class, to see what a router could still
    // save: "forced" cold prefills (the group's previous request went to an engine killed since, or
    // to the same pod: no live pod had it), "needless" cold prefills (sent away from a pod that was
    // up all along and had served the group), "followers" (a hit that waited for its group's cold
    // prefill, sent within R_WAIT_MS (450) of it), "other" (queued). "rewarm" is the upper bound of
    // re-warming a killed engine's groups elsewhere as soon as the kill is seen: forced cold
    // prefills arriving more than R_REWARM_MS (460: seen + a cold prefill) after the kill, and their
    // followers. R_SEEDS=10-49, R_MS=8000 (the window: 16000 is bench:routing without --quick, the
    // kills at 5.6 and 8 s); the bench's own sequence (createRng(10)) is always included.
    const MS = Number(env['R_MS'] ?? 8000)
    // Judged from here on, as routing.ts (its WARMUP_MS).
    const WARMUP = Math.min(3000, MS / 4)
    const restarts = [
      { pod: 1, at: 0.35 * MS, downMs: 1000 },
      { pod: 2, at: 0.5 * MS, downMs: 1000 },
    ]
    const e = PREFILL_BOUND
    const decode = 16 * e.decodeMsPerToken * (1 + (e.batchSlowdown * (e.maxNumSeqs - 1)) / 2)
    const rate =
      (0.7 * 4 * e.maxNumSeqs) /
      ((e.prefillOverheadMs + 1560 * e.prefillMsPerToken + decode) / 1000)
    const seededSequence = (seed: number): VirtualRequest[] => sharedSequence(rate, 16, seed, MS)
    const benchSequence = (): VirtualRequest[] => {
      const r = createRng(10)
      const systems = Array.from(
        { length: 16 },
        (_, g) => `Group ${g} policy. ${words(1500, createRng(100 + g))}`,
      )
      return poissonTimes(rate, MS, r).map((at) => {
        const g = Math.floor(r() * 16)
        return { at, system: systems[g] as string, user: words(60, r), maxTokens: 16, tag: `g${g}` }
      })
    }

    it('classifies', async () => {
      const slowMs = Number(env['R_SLOW_MS'] ?? 100)
      const waitMs = Number(env['R_WAIT_MS'] ?? 450)
      const rewarmMs = Number(env['R_REWARM_MS'] ?? 460)
      const cases: [string, VirtualRequest[]][] = [['bench', benchSequence()]]
      for (const s of range(env['R_SEEDS'] ?? '10-49')) cases.push([String(s), seededSequence(s)])
      const total = {
        slow: 0,
        forced: 0,
        needless: 0,
        followers: 0,
        other: 0,
        rewarm: 0,
        judged: 0,
        rewarms: 0,
        shadows: 0,
        dropped: 0,
      }
      const lines: string[] = []
      for (const [name, requests] of cases) {
        const run = await runVirtualFleet({
          shape: PREFILL_BOUND,
          pods: 4,
          requests,
          restarts,
          rewarm: env['R_REWARM'] !== '0',
          advance: async (t) => vi.advanceTimersByTime(t),
        })
        total.rewarms += run.shadows.rewarms
        total.shadows += run.shadows.sent
        total.dropped += run.shadows.dropped
        const c = { slow: 0, forced: 0, needless: 0, followers: 0, other: 0, rewarm: 0 }
        const last = new Map<string, { pod: string; at: number }>()
        // Per group: when its last cold prefill was sent, and whether a re-warm could have saved it.
        const cold = new Map<string, { at: number; saved: boolean }>()
        for (const x of [...run.results].sort((a, b) => a.at - b.at)) {
          if (!x.ok || x.tag === undefined) continue
          const prev = last.get(x.tag)
          const isCold = x.cachedTokens < 1000
          // The kill that took the pod this group's previous request went to, if any.
          const kill = restarts.find(
            (k) =>
              prev !== undefined && `pod-${k.pod}` === prev.pod && k.at > prev.at && k.at <= x.at,
          )
          const saved = isCold && kill !== undefined && x.at - kill.at > rewarmMs
          if (x.at >= WARMUP) total.judged++
          if (x.at >= WARMUP && x.ttftMs > slowMs) {
            c.slow++
            const c0 = cold.get(x.tag)
            if (isCold) {
              const died =
                prev === undefined ||
                prev.pod === x.pod ||
                restarts.some(
                  (k) => `pod-${k.pod}` === prev.pod && k.at > prev.at && k.at <= x.at + x.ttftMs,
                )
              if (died) c.forced++
              else c.needless++
              if (saved) c.rewarm++
            } else if (c0 !== undefined && c0.at > x.at - waitMs) {
              c.followers++
              if (c0.saved) c.rewarm++
            } else c.other++
          }
          if (isCold) cold.set(x.tag, { at: x.at, saved })
          last.set(x.tag, { pod: x.pod, at: x.at })
        }
        for (const k of Object.keys(c) as (keyof typeof c)[]) total[k] += c[k]
        lines.push(
          `${name}: ${c.slow} = ${c.forced}+${c.needless}n+${c.followers}f+${c.other}o (rewarm ${c.rewarm}; re-warms sent ${run.shadows.rewarms})`,
        )
      }
      process.stdout.write(
        `RESTART slow > ${slowMs} ms over ${cases.length} runs: ${JSON.stringify(total)}\n  ${lines.join('\n  ')}\n`,
      )
    }, 3_600_000)
  },
)

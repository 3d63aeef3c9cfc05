// Diagnosis only, skipped unless asked: bench:routing's regimes on virtual time over many seeds.
// LORA_SWEEP=1: multi-LoRA, the adapter hit rate per seed and the misses explained (LORA_SEEDS=30-49
// LORA_LOADS=0.7,0.8 LORA_SCALE=2.5 (engine time scale; the offered rate stays that of 2.5, so 3
// is a slower machine) LORA_SCRAPE=200 LORA_POLICY=default,lora,rr,lp LORA_SHOW=3 misses printed).
// UNIFORM_SWEEP=1: uniform prompts, TTFT p90/p99/mean per policy (U_SEEDS, U_LOADS, U_POLICY).
// COPY_SWEEP=1: hot-group copies (predicted-latency hotCopyTheta) on against off in every regime
// of bench:routing, with and without the simulator's prefill interference: per regime the median
// and worst TTFT p90 ratio on/off, and for the restart regime how many seeds stay within 10 % of
// their own fresh run (C_SEEDS=10-49, C_REGIMES=sp,sp-restart,db,un,rep3 C_INTERFERENCE=0,1
// C_LOAD=0.7 C_ILOAD=0.4 (the load with interference: 0.7 saturates that shape) C_SHOW=1 per seed).
import { afterEach, beforeEach, describe, it, vi } from 'vitest'
import type { SnapshotSchedulerPlugin } from '../../api/snapshot.js'
import { DEFAULT_PROFILE } from '../../dataplane/scheduler/profile.js'
import { EndpointState } from '../../dataplane/scheduler/state.js'
import { seeded } from '../../dataplane/scheduler/testkit.js'
import { generateWords } from '../sim/rng.js'
import { poissonTimes } from './routing-load.js'
import {
  DECODE_BOUND,
  type EngineShape,
  PREFILL_BOUND,
  runVirtualFleet,
  ttftPercentile,
  type VirtualRequest,
} from './virtual-fleet.js'

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
  const shared = (rate: number, out: number, seed: number): VirtualRequest[] => {
    const r = seeded(seed)
    const systems = Array.from(
      { length: 16 },
      (_, g) => `Group ${g} policy. ${generateWords(100 + g, 'system', 1500).join('')}`,
    )
    return poissonTimes(rate, MS, r).map((at, k) => {
      const g = Math.floor(r() * systems.length)
      const user = generateWords(seed, `q${k}`, 60).join('')
      return { at, system: systems[g] as string, user, maxTokens: out, tag: `g${g}` }
    })
  }
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
          const on = await p90(undefined, g.restart)
          const off = await p90(0, g.restart)
          ratios.push(on.p90 / off.p90)
          copies += on.copies
          if (on.copies > 0) copiedSeeds++
          let extra = ''
          if (g.restart) {
            const fOn = await p90(undefined, false)
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

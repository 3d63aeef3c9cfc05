// Diagnosis only, skipped unless asked: bench:routing's regimes on virtual time over many seeds.
// LORA_SWEEP=1: multi-LoRA, the adapter hit rate per seed and the misses explained (LORA_SEEDS=30-49
// LORA_LOADS=0.7,0.8 LORA_SCALE=2.5 (engine time scale; the offered rate stays that of 2.5, so 3
// is a slower machine) LORA_SCRAPE=200 LORA_POLICY=default,lora,rr,lp LORA_SHOW=3 misses printed).
// UNIFORM_SWEEP=1: uniform prompts, TTFT p90/p99/mean per policy (U_SEEDS, U_LOADS, U_POLICY).
import { afterEach, beforeEach, describe, it, vi } from 'vitest'
import type { SnapshotSchedulerPlugin } from '../../api/snapshot.js'
import { EndpointState } from '../../dataplane/scheduler/state.js'
import { seeded } from '../../dataplane/scheduler/testkit.js'
import { generateWords } from '../sim/rng.js'
import { poissonTimes } from './routing-load.js'
import { PREFILL_BOUND, runVirtualFleet, ttftPercentile } from './virtual-fleet.js'

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

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import type { InferenceEngine } from '../../api/snapshot.js'
import { adapterFor } from './adapters/index.js'
import { parsePrometheusText } from './prom-parser.js'
import { fingerprint } from './restart.js'
import { EngineMetricsTracker } from './tracker.js'

const scrape = (sum: number, count: number, waiting = 1): string =>
  [
    `sglang:num_queue_reqs ${waiting}`,
    'sglang:num_running_reqs 2',
    `sglang:time_to_first_token_seconds_sum ${sum}`,
    `sglang:time_to_first_token_seconds_count ${count}`,
  ].join('\n')

describe('EngineMetricsTracker', () => {
  it('parses each scrape and keeps interval state between them', () => {
    const t = new EngineMetricsTracker('SGLang')
    expect(t.metricsPath).toBe('/metrics')
    expect(t.ingestText(scrape(10, 10)).metrics.ttftMeanSec).toBe(1)
    const second = t.ingestText(scrape(12, 20, 4))
    expect(second.metrics.ttftMeanSec).toBeCloseTo(0.2, 12)
    expect(second.metrics.waiting).toBe(4)
    expect(second.parsed.sampleCount).toBe(4)
    t.reset()
    expect(t.ingestText(scrape(12, 20)).metrics.ttftMeanSec).toBe(0.6)
  })

  it('surfaces parse errors and honours parse options', () => {
    const t = new EngineMetricsTracker('TensorRT-LLM', { parse: { maxLength: 30 } })
    expect(t.metricsPath).toBe('/prometheus/metrics')
    const r = t.ingestText('trtllm_num_requests_waiting 2\n{bad\ntrtllm_num_requests_running 5\n')
    expect(r.metrics.waiting).toBe(2)
    expect(r.metrics.missing).toEqual(['running'])
    expect(r.parsed.truncated).toBe(true)
    expect(r.parsed.errors.map((e) => e.code)).toEqual(['PROM_INPUT_TRUNCATED'])
  })

  it('uses the generic mapping for Generic engines', () => {
    const t = new EngineMetricsTracker('Generic', { generic: { running: 'busy' } })
    expect(t.ingestText('busy 7').metrics).toEqual({
      waiting: 0,
      running: 7,
      missing: ['waiting'],
      engineType: 'Generic',
    })
  })

  it('reports an engine restart and starts its interval means over', () => {
    // Engines declare their families; only declared counters and histograms are compared.
    const typed = (sum: number, count: number) =>
      `# TYPE sglang:time_to_first_token_seconds histogram\n${scrape(sum, count)}`
    const t = new EngineMetricsTracker('SGLang')
    expect(t.ingestText(typed(10, 10)).restart).toBeUndefined()
    expect(t.ingestText(typed(12, 20)).restart).toBeUndefined()
    // Counts fell: a new process. The mean is its own cumulative one, not a negative delta.
    const after = t.ingestText(typed(3, 10))
    expect(after.restart).toBe('counter_reset')
    expect(after.metrics.ttftMeanSec).toBeCloseTo(0.3, 12)
    expect(t.ingestText(typed(4, 20)).restart).toBeUndefined()
    const withStart = (s: number) => `process_start_time_seconds ${s}\n${typed(5, 30)}`
    expect(t.ingestText(withStart(1.7e9)).restart).toBeUndefined()
    expect(t.ingestText(withStart(1.7e9 + 5)).restart).toBe('start_time')
  })
})

describe('EngineMetricsTracker: a body equal to the previous one', () => {
  it('gives the previous view again without a parse, and never a restart twice', () => {
    const t = new EngineMetricsTracker('SGLang')
    const first = t.ingestText(scrape(10, 10))
    const again = t.ingestText(scrape(10, 10))
    expect(again.parsed).toBe(first.parsed)
    expect(again.metrics).toBe(first.metrics)
    // A counter went back: a restart, said once; the same body again is no second restart.
    const counted = (n: number): string =>
      `# TYPE sglang:prompt_tokens counter\nsglang:prompt_tokens_total ${n}\n${scrape(1, 1)}`
    t.ingestText(counted(50))
    const restarted = t.ingestText(counted(5))
    expect(restarted.restart).toBe('counter_reset')
    const same = t.ingestText(counted(5))
    expect(same.restart).toBeUndefined()
    expect(same.metrics).toBe(restarted.metrics)
  })

  it('parses it again after reset() or an ingest() of parsed metrics', () => {
    const t = new EngineMetricsTracker('SGLang')
    t.ingestText(scrape(10, 10))
    t.ingestText(scrape(12, 20))
    // The same body as the last: the interval mean stays 0.2 (nothing moved since).
    expect(t.ingestText(scrape(12, 20)).metrics.ttftMeanSec).toBeCloseTo(0.2, 12)
    t.reset()
    const afterReset = t.ingestText(scrape(12, 20))
    expect(afterReset.metrics.ttftMeanSec).toBe(0.6)
    t.ingest(parsePrometheusText(scrape(14, 30)))
    // ingest() moved the state on: the same text as before is a new interval (12-14 over 20-30
    // went backwards: starts over with the cumulative mean).
    const after = t.ingestText(scrape(12, 20))
    expect(after.parsed).not.toBe(afterReset.parsed)
    expect(after.metrics.ttftMeanSec).toBe(0.6)
  })
})

describe('EngineMetricsTracker: histogram buckets skipped', () => {
  const fixtures: readonly (readonly [InferenceEngine, string])[] = [
    ['vLLM', 'vllm-metrics-sample.txt'],
    ['vLLM', 'llm-d-inference-sim-metrics-sample.txt'],
    ['SGLang', 'sglang-metrics-sample.txt'],
    ['TGI', 'tgi-metrics-sample.txt'],
    ['TensorRT-LLM', 'trtllm-serve-metrics-sample.txt'],
  ]
  it.each(fixtures)('%s (%s): the same view and restart signals as a full parse', (engine, f) => {
    const text = readFileSync(new URL(`./testdata/${f}`, import.meta.url), 'utf8')
    // Counters up by one and a histogram count up: the second scrape has interval means.
    const later = text.replace(/(_count(?:\{[^}]*\})? )(\d+)/g, (_m, p: string, n: string) => {
      return `${p}${Number(n) + 2}`
    })
    const t = new EngineMetricsTracker(engine)
    const full = parsePrometheusText(text)
    const adapter = adapterFor(engine)
    const ref1 = adapter.extract(full)
    const got1 = t.ingestText(text)
    expect(got1.metrics).toEqual(ref1.metrics)
    expect(got1.parsed.sampleCount).toBe(full.sampleCount)
    expect(fingerprint(got1.parsed)).toEqual(fingerprint(full))
    const ref2 = adapter.extract(parsePrometheusText(later), ref1.state)
    const got2 = t.ingestText(later)
    expect(got2.metrics).toEqual(ref2.metrics)
    expect(got2.restart).toBeUndefined()
    // The tracker did skip them.
    const buckets = [...got1.parsed.families.values()].flatMap((fam) =>
      fam.samples.filter((s) => fam.type === 'histogram' && s.name === `${fam.name}_bucket`),
    )
    expect(buckets).toEqual([])
  })
})

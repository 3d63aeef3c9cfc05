import { describe, expect, it } from 'vitest'
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
})

// Engine auto-detection for InferencePools that name no engine: the engine simulator's /metrics in
// each engine's format, read over real HTTP by the real scraper.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from '../../hack/sim/index.js'
import type { MetricsFormat } from '../../hack/sim/metrics.js'
import { detectEngine } from './detect.js'
import { parsePrometheusText } from './prom-parser.js'
import { MetricsScraper, type ScrapeResult } from './scraper.js'
import { EngineMetricsTracker } from './tracker.js'

const FORMATS: readonly (readonly [MetricsFormat, string])[] = [
  ['vllm', 'vLLM'],
  ['sglang', 'SGLang'],
  ['tgi', 'TGI'],
]

const sims = new Map<MetricsFormat, SimHandle>()
const texts = new Map<MetricsFormat, string>()

beforeAll(async () => {
  let i = 0
  for (const [format] of FORMATS) {
    const sim = await startSimulator({
      name: `detect-${format}`,
      host: `127.0.0.${171 + i++}`,
      port: 0,
      model: 'detect-model',
      metricsFormat: format,
      zeroLatency: true,
    })
    sims.set(format, sim)
    texts.set(format, await (await fetch(`http://${sim.host}:${sim.port}/metrics`)).text())
  }
})

afterAll(async () => {
  await Promise.all([...sims.values()].map((s) => s.close()))
})

describe('detectEngine', () => {
  for (const [format, engine] of FORMATS) {
    it(`names ${engine} from its /metrics`, () => {
      expect(detectEngine(parsePrometheusText(texts.get(format) ?? ''))).toBe(engine)
    })
  }

  it('names nothing for a server with none of the engines’ metrics', () => {
    const text =
      '# TYPE http_requests_total counter\nhttp_requests_total 3\nprocess_cpu_seconds 1\n'
    expect(detectEngine(parsePrometheusText(text))).toBeUndefined()
    expect(detectEngine(parsePrometheusText(''))).toBeUndefined()
  })

  it('goes by the majority when a server exports a stray family of another engine', () => {
    const text = [
      'vllm:num_requests_running 1',
      'sglang:num_running_reqs 2',
      'sglang:num_queue_reqs 0',
    ].join('\n')
    expect(detectEngine(parsePrometheusText(text))).toBe('SGLang')
  })
})

describe('EngineMetricsTracker with detect', () => {
  it('switches from the assumed vLLM adapter to the engine the scrape shows', () => {
    const text = texts.get('sglang') ?? ''
    const assumed = new EngineMetricsTracker('vLLM')
    const blind = assumed.ingestText(text).metrics
    // vLLM's names on an SGLang pod: the load signals are missing.
    expect(blind.missing).toEqual(expect.arrayContaining(['waiting', 'running']))
    const detecting = new EngineMetricsTracker('vLLM', { detect: true })
    const seen = detecting.ingestText(text).metrics
    expect(detecting.engine).toBe('SGLang')
    expect(seen.missing ?? []).not.toContain('running')
    expect(seen.missing ?? []).not.toContain('waiting')
  })

  it('keeps a named engine when detection is off', () => {
    const t = new EngineMetricsTracker('vLLM')
    t.ingestText(texts.get('tgi') ?? '')
    expect(t.engine).toBe('vLLM')
  })
})

describe('MetricsScraper with an assumed engine', () => {
  it('reads every pod of a mixed pool with the right adapter', async () => {
    const results = new Map<string, ScrapeResult>()
    const scraper = new MetricsScraper({
      intervalMs: 50,
      onResult: (id, r) => {
        if (r.ok) results.set(id, r)
      },
    })
    try {
      scraper.sync(
        FORMATS.map(([format]) => {
          const s = sims.get(format) as SimHandle
          return {
            id: format,
            origin: `http://${s.host}:${s.port}`,
            engine: 'vLLM' as const,
            detectEngine: true,
          }
        }),
      )
      await expect.poll(() => results.size, { timeout: 10_000 }).toBe(FORMATS.length)
      for (const [format] of FORMATS) {
        const r = results.get(format)
        expect(r?.ok).toBe(true)
        if (r?.ok) expect(r.metrics.missing ?? [], format).not.toContain('running')
      }
    } finally {
      await scraper.close()
    }
  })
})

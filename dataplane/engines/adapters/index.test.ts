import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from '../prom-parser.js'
import { adapterFor } from './index.js'

describe('adapterFor', () => {
  it('returns the adapter of each snapshot engine kind with its scrape path', () => {
    expect(
      (['vLLM', 'SGLang', 'TGI', 'TensorRT-LLM', 'Generic'] as const).map((e) => {
        const a = adapterFor(e)
        return [a.engine, a.metricsPath]
      }),
    ).toEqual([
      ['vLLM', '/metrics'],
      ['SGLang', '/metrics'],
      ['TGI', '/metrics'],
      ['TensorRT-LLM', '/prometheus/metrics'],
      ['Generic', '/metrics'],
    ])
  })

  it('passes the generic mapping through', () => {
    const text = readFileSync(
      new URL('../testdata/llamacpp-metrics-sample.txt', import.meta.url),
      'utf8',
    )
    const adapter = adapterFor('Generic', { waiting: 'llamacpp:requests_deferred' })
    const { metrics } = adapter.extract(parsePrometheusText(text))
    expect(metrics.waiting).toBe(2)
    expect(metrics.missing).toEqual(['running'])
  })
})

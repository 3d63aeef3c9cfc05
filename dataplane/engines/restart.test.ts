import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parsePrometheusText } from './prom-parser.js'
import { fingerprint, restartBetween } from './restart.js'

const fp = (text: string) => fingerprint(parsePrometheusText(text))

/** prometheus_client default-registry style: `_total` and `_created` samples, process collector. */
const vllm = (start: number, prompt: number, ok: number, ttftCount: number): string =>
  [
    '# TYPE process_start_time_seconds gauge',
    `process_start_time_seconds ${start}`,
    '# TYPE vllm:num_requests_running gauge',
    'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
    '# TYPE vllm:prompt_tokens counter',
    `vllm:prompt_tokens_total{engine="0",model_name="m"} ${prompt}`,
    `vllm:prompt_tokens_created{engine="0",model_name="m"} ${start + 2}`,
    '# TYPE vllm:request_success counter',
    `vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} ${ok}`,
    '# TYPE vllm:time_to_first_token_seconds histogram',
    `vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} ${ttftCount}`,
    `vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} ${ttftCount}`,
    `vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} ${ttftCount * 0.1}`,
  ].join('\n')

describe('engine restart detection', () => {
  it('sees nothing on the first scrape or while counters only grow', () => {
    const a = fp(vllm(1.7e9, 100, 5, 5))
    expect(restartBetween(undefined, a)).toBeUndefined()
    expect(restartBetween(a, fp(vllm(1.7e9, 100, 5, 5)))).toBeUndefined()
    expect(restartBetween(a, fp(vllm(1.7e9, 900, 9, 9)))).toBeUndefined()
  })

  it('a new process start time is a restart, even when counters already passed the old values', () => {
    const a = fp(vllm(1.7e9, 100, 5, 5))
    expect(restartBetween(a, fp(vllm(1.7e9 + 31.5, 500, 50, 50)))).toBe('start_time')
  })

  it('any counter family going backwards is a restart (no start time exported)', () => {
    const noStart = (prompt: number, ok: number, n: number) =>
      vllm(0, prompt, ok, n).split('\n').slice(2).join('\n')
    const a = fp(noStart(1000, 40, 40))
    expect(a.startTime).toBeUndefined()
    expect(restartBetween(a, fp(noStart(1000, 40, 39)))).toBe('counter_reset') // histogram count
    expect(restartBetween(a, fp(noStart(12, 40, 40)))).toBe('counter_reset') // tokens
    expect(restartBetween(a, fp(noStart(1000, 2, 40)))).toBe('counter_reset')
  })

  it('ignores _created timestamps, gauges, and series that appear or vanish between scrapes', () => {
    const a = fp('# TYPE x counter\nx_total{r="a"} 5\nx_created{r="a"} 100\n# TYPE g gauge\ng 9')
    // _created moved (it is a timestamp), the gauge fell, a new series of x appeared: no reset.
    const b = fp(
      '# TYPE x counter\nx_total{r="a"} 5\nx_total{r="b"} 1\nx_created{r="a"} 50\n# TYPE g gauge\ng 1',
    )
    expect(restartBetween(a, b)).toBeUndefined()
    // A family that disappears entirely says nothing either.
    expect(restartBetween(a, fp('# TYPE g gauge\ng 1'))).toBeUndefined()
  })

  it('finds both signals in the checked-in vLLM and SGLang samples', () => {
    for (const f of ['vllm', 'sglang']) {
      const text = readFileSync(
        new URL(`./testdata/${f}-metrics-sample.txt`, import.meta.url),
        'utf8',
      )
      const print = fp(text)
      expect(print.totals.size).toBeGreaterThan(3)
      // Halve every counter: the same text a freshly restarted engine could show.
      const halved = text.replace(
        /^([a-z_:]+(?:_total|_count)(?:\{[^}]*\})?) ([0-9.e+]+)$/gm,
        (_m, name: string, v: string) => `${name} ${Number(v) / 2}`,
      )
      expect(halved).not.toBe(text)
      expect(restartBetween(print, fp(halved))).toBe('counter_reset')
    }
  })
})

import { afterEach, describe, expect, it } from 'vitest'
import type { MetricsFormat } from './metrics.js'
import { type SimHandle, startSimulator } from './server.js'
import { parseProm, postSse, promValue } from './testkit.js'

const sims: SimHandle[] = []
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()))
})

async function start(format: MetricsFormat, loras: string[] = []): Promise<SimHandle> {
  const s = await startSimulator({
    name: `m-${format}`,
    host: '127.0.0.2',
    port: 0,
    model: 'org/model-x',
    metricsFormat: format,
    maxNumSeqs: 1,
    prefillOverheadMs: 2,
    prefillMsPerToken: 0,
    decodeMsPerToken: 10,
    numGpuBlocks: 100,
    blockSize: 16,
    loras,
    maxLoras: 1,
    loraLoadMs: 0,
  })
  sims.push(s)
  return s
}

const scrape = async (s: SimHandle) => {
  const res = await fetch(`${s.url}/metrics`)
  expect(res.headers.get('content-type')).toContain('text/plain')
  return res.text()
}

/** Start 3 streaming requests (one runs, two wait) and return their completion plus a mid-load scrape. */
async function underLoad(s: SimHandle, model = 'org/model-x') {
  const send = (i: number, maxTokens: number) =>
    postSse(`${s.url}/v1/chat/completions`, {
      model,
      messages: [{ role: 'user', content: `request number ${i} with some words in it` }],
      max_tokens: maxTokens,
      stream: true,
    })
  const until = async (pred: () => boolean) => {
    const deadline = Date.now() + 3000
    while (!pred() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2))
  }
  // A long request (2 + 29 x 10 ms ≈ 0.3 s) holds the single slot; two short ones queue behind it.
  // Sending them only once it runs keeps the scenario independent of machine speed.
  const long = send(0, 30)
  await until(() => s.stats().running === 1)
  const short = [send(1, 6), send(2, 6)]
  await until(() => s.stats().waiting === 2)
  const mid = await scrape(s)
  await Promise.all([long, ...short])
  return { mid, after: await scrape(s) }
}

// Totals for the scenario above: 30 + 6 + 6 generated tokens, 29 + 5 + 5 inter-token gaps.
const GEN = 42
const ITL = 39

describe('vllm format', () => {
  it('exposes the v1 families with engine/model_name labels, and gauges/counters follow the load', async () => {
    const s = await start('vllm', ['ad-1'])
    const idle = await scrape(s)
    expect(idle).toContain(
      '# HELP vllm:num_requests_running Number of requests in model execution batches.',
    )
    expect(idle).toContain('# TYPE vllm:prefix_cache_queries_total counter')
    expect(idle).toContain('# TYPE vllm:time_to_first_token_seconds histogram')
    const p0 = parseProm(idle)
    const lbl = { engine: '0', model_name: 'org/model-x' }
    expect(promValue(p0, 'vllm:num_requests_running', lbl)).toBe(0)
    expect(promValue(p0, 'vllm:kv_cache_usage_perc', lbl)).toBe(0)
    expect(
      promValue(p0, 'vllm:cache_config_info', { block_size: '16', num_gpu_blocks: '100' }),
    ).toBe(1)
    expect(idle).toMatch(/vllm:num_requests_running\{engine="0",model_name="org\/model-x"\} 0\.0\n/)

    const { mid, after } = await underLoad(s, 'ad-1')
    const pm = parseProm(mid)
    expect(promValue(pm, 'vllm:num_requests_running', lbl)).toBe(1)
    expect(promValue(pm, 'vllm:num_requests_waiting', lbl)).toBe(2)
    expect(promValue(pm, 'vllm:kv_cache_usage_perc', lbl)).toBeGreaterThan(0)
    const lora = pm.filter((x) => x.name === 'vllm:lora_requests_info')
    const latest = lora.reduce((a, b) => (b.value > a.value ? b : a))
    expect(latest.labels).toEqual({
      max_lora: '1',
      running_lora_adapters: 'ad-1',
      waiting_lora_adapters: 'ad-1',
    })

    const pa = parseProm(after)
    expect(promValue(pa, 'vllm:num_requests_running', lbl)).toBe(0)
    expect(promValue(pa, 'vllm:kv_cache_usage_perc', lbl)).toBe(0)
    expect(promValue(pa, 'vllm:generation_tokens_total', lbl)).toBe(GEN)
    expect(promValue(pa, 'vllm:prompt_tokens_total', lbl)).toBe(
      promValue(pa, 'vllm:prefix_cache_queries_total', lbl),
    )
    expect(promValue(pa, 'vllm:time_to_first_token_seconds_count', lbl)).toBe(3)
    expect(promValue(pa, 'vllm:time_to_first_token_seconds_bucket', { ...lbl, le: '+Inf' })).toBe(3)
    expect(promValue(pa, 'vllm:inter_token_latency_seconds_count', lbl)).toBe(ITL)
    expect(promValue(pa, 'vllm:e2e_request_latency_seconds_count', lbl)).toBe(3)
    expect(promValue(pa, 'vllm:request_success_total', { ...lbl, finished_reason: 'length' })).toBe(
      3,
    )
    // Queued requests waited: TTFT sum well above 3 x prefill.
    expect(promValue(pa, 'vllm:time_to_first_token_seconds_sum', lbl)).toBeGreaterThan(0.05)
  })
})

describe('sglang format', () => {
  it('uses SGLang names and label sets', async () => {
    const s = await start('sglang')
    const idle = parseProm(await scrape(s))
    const sched = {
      engine_type: 'unified',
      model_name: 'org/model-x',
      moe_ep_rank: '0',
      pp_rank: '0',
      tp_rank: '0',
    }
    expect(promValue(idle, 'sglang:num_running_reqs', sched)).toBe(0)
    expect(promValue(idle, 'sglang:max_total_num_tokens', sched)).toBe(1600)
    // Tokenizer-side families are absent until used.
    expect(idle.some((x) => x.name.startsWith('sglang:time_to_first_token_seconds'))).toBe(false)

    const { mid, after } = await underLoad(s)
    const pm = parseProm(mid)
    expect(promValue(pm, 'sglang:num_running_reqs', sched)).toBe(1)
    expect(promValue(pm, 'sglang:num_queue_reqs', sched)).toBe(2)
    expect(promValue(pm, 'sglang:token_usage', sched)).toBeGreaterThan(0)
    const pa = parseProm(after)
    const st = { is_streaming: 'true', model_name: 'org/model-x' }
    expect(promValue(pa, 'sglang:time_to_first_token_seconds_count', st)).toBe(3)
    expect(promValue(pa, 'sglang:generation_tokens_total', st)).toBe(GEN)
    expect(promValue(pa, 'sglang:num_requests_total', st)).toBe(3)
    expect(
      promValue(pa, 'sglang:inter_token_latency_seconds_count', { model_name: 'org/model-x' }),
    ).toBe(ITL)
    expect(promValue(pa, 'sglang:token_usage', sched)).toBe(0)
    expect(after).toContain('# HELP sglang:cache_hit_rate The prefix cache hit rate.')
  })
})

describe('tgi format', () => {
  it('uses TGI names, no model label, no _total suffix, Rust number format', async () => {
    const s = await start('tgi')
    const idleText = await scrape(s)
    expect(idleText).toContain('# TYPE tgi_request_count counter\ntgi_request_count 0\n\n')
    expect(idleText).toContain('tgi_batch_max_total_tokens 1600\n')
    expect(idleText).not.toContain('tgi_request_duration')
    const { mid, after } = await underLoad(s)
    const pm = parseProm(mid)
    expect(promValue(pm, 'tgi_batch_current_size')).toBe(1)
    expect(promValue(pm, 'tgi_queue_size')).toBe(2)
    expect(promValue(pm, 'tgi_batch_current_max_tokens')).toBeGreaterThan(12)
    const pa = parseProm(after)
    expect(promValue(pa, 'tgi_request_count')).toBe(3)
    expect(promValue(pa, 'tgi_request_success')).toBe(3)
    expect(promValue(pa, 'tgi_request_duration_count')).toBe(3)
    expect(promValue(pa, 'tgi_request_mean_time_per_token_duration_count')).toBe(3)
    expect(promValue(pa, 'tgi_request_generated_tokens_sum')).toBe(GEN)
    expect(after).toContain('tgi_request_duration_bucket{le="0.00015000000000000001"} 0')
    expect(pa.every((x) => !('model_name' in x.labels))).toBe(true)
    expect(pa.some((x) => x.name.endsWith('_total'))).toBe(false)
  })
})

describe('process start time', () => {
  it('vLLM exposes process_start_time_seconds like prometheus_client; SGLang and TGI do not', async () => {
    const v = await start('vllm')
    const p = parseProm(await scrape(v))
    const t = promValue(p, 'process_start_time_seconds', {})
    expect(t).toBeGreaterThan(1.5e9) // Unix seconds, not ms
    expect(t).toBeLessThan(Date.now() / 1000 + 1)
    expect(await scrape(v)).toContain('# TYPE process_start_time_seconds gauge')
    for (const f of ['sglang', 'tgi'] as const) {
      const s = await start(f)
      expect(await scrape(s)).not.toContain('process_start_time_seconds')
    }
  })
})

// The simulator's prefill/decode model: prefill interference on aggregated engines (engine clock,
// no wall-clock assertions), KV transfer instead of prefill compute, and the vLLM nixl, SGLang
// bootstrap and http-lookup handshakes between real simulated pods on 127.0.0.x.
import { afterEach, describe, expect, it } from 'vitest'
import { parseSimArgs } from './command.js'
import { Engine, type EngineConfig, type GenerationResult } from './engine.js'
import { type SimHandle, startSimulator } from './server.js'
import { postJson } from './testkit.js'

const CONFIG: EngineConfig = {
  // Real milliseconds: steps must be long against timer granularity (the assertions read the
  // engine clock, not the wall clock).
  timeScale: 1,
  zeroLatency: false,
  prefillOverheadMs: 10,
  prefillMsPerToken: 0.1,
  decodeMsPerToken: 10,
  batchSlowdown: 0,
  maxNumSeqs: 8,
  numGpuBlocks: 1024,
  blockSize: 16,
  maxModelLen: 8192,
  loras: [],
  maxLoras: 1,
  loraLoadMs: 0,
  kvTransferMsPerToken: 0.02,
}

const words = (n: number, tag: string): string[] =>
  Array.from({ length: n }, (_, i) => `${tag}${i} `)

/** Runs one long decode (A) and, once it has produced 3 tokens, a long prompt (B). */
async function interleave(
  interference: boolean,
  kvTransfer: boolean,
): Promise<{ gaps: number[]; b: GenerationResult }> {
  const gaps: number[] = []
  let seen = 0
  const engine = new Engine(
    { ...CONFIG, prefillInterference: interference },
    {
      prefix: () => {},
      firstToken: () => {},
      interToken: (s) => {
        if (seen === 0) gaps.push(s * 1000)
      },
      finished: () => {},
      aborted: () => {},
    },
  )
  let startB: () => void = () => {}
  const bStarted = new Promise<void>((r) => {
    startB = r
  })
  const a = new Promise<void>((resolve) =>
    engine.submit(
      {
        lora: null,
        promptTokens: words(10, 'a'),
        outputTokens: words(12, 'x'),
        finishReason: 'length',
        streaming: true,
      },
      { token: (_t, i) => i === 2 && startB(), finish: () => resolve() },
    ),
  )
  await bStarted
  const b = await new Promise<GenerationResult>((resolve) =>
    engine.submit(
      {
        lora: null,
        promptTokens: words(1000, 'b'),
        outputTokens: words(1, 'y'),
        finishReason: 'length',
        streaming: true,
        ...(kvTransfer ? { kvTransfer: true } : {}),
      },
      { token: () => {}, finish: resolve },
    ),
  )
  await a
  seen++
  engine.close()
  return { gaps, b }
}

describe('engine: prefill interference and KV transfer', () => {
  const decodeMs = CONFIG.decodeMsPerToken * CONFIG.timeScale
  const prefillMs = (CONFIG.prefillOverheadMs + 1000 * CONFIG.prefillMsPerToken) * CONFIG.timeScale

  it('an aggregated engine stalls a running decode for the whole prefill of a new prompt', async () => {
    const { gaps, b } = await interleave(true, false)
    expect(Math.max(...gaps)).toBeGreaterThanOrEqual(decodeMs + prefillMs - 0.01)
    expect(b.ttftMs).toBeGreaterThanOrEqual(prefillMs - 0.01)
  })

  it('without interference (the original model) decode keeps its pace', async () => {
    const { gaps } = await interleave(false, false)
    expect(Math.max(...gaps)).toBeCloseTo(decodeMs, 3)
  })

  it('a prompt whose KV is transferred costs only the transfer, and stalls nobody', async () => {
    const { gaps, b } = await interleave(true, true)
    expect(Math.max(...gaps)).toBeCloseTo(decodeMs, 3)
    const transferMs = 1000 * (CONFIG.kvTransferMsPerToken ?? 0) * CONFIG.timeScale
    expect(b.ttftMs).toBeLessThan(prefillMs / 5)
    expect(b.ttftMs).toBeGreaterThanOrEqual(transferMs - 0.01)
    expect(b.cachedTokens).toBe(0)
  })
})

describe('sim CLI', () => {
  it('--role, --kv-transfer-ms-per-token and --prefill-interference reach every instance', () => {
    const o = parseSimArgs([
      '--count',
      '2',
      '--role',
      'decode',
      '--kv-transfer-ms-per-token',
      '0.5',
      '--prefill-interference',
    ])
    expect(
      o === 'help' ? [] : o.map((x) => [x.role, x.kvTransferMsPerToken, x.prefillInterference]),
    ).toEqual([
      ['decode', 0.5, true],
      ['decode', 0.5, true],
    ])
    expect(() => parseSimArgs(['--role', 'encode'])).toThrow(
      /--role must be one of prefill, decode, both/,
    )
  })
})

describe('handshakes between simulated pods', () => {
  const sims: SimHandle[] = []
  afterEach(async () => {
    await Promise.all(sims.splice(0).map((s) => s.close()))
  })
  const start = async (host: string, role: 'prefill' | 'decode', timeScale = 0.01) => {
    const s = await startSimulator({
      name: `${role}-${host}`,
      host,
      port: 0,
      model: 'm',
      metricsFormat: 'vllm',
      role,
      timeScale,
    })
    sims.push(s)
    return s
  }
  const prompt = 'Summarise the following policy for a new employee. '.repeat(20)
  const chat = (extra: Record<string, unknown> = {}) => ({
    model: 'm',
    messages: [{ role: 'user', content: prompt }],
    max_tokens: 4,
    ...extra,
  })

  it('nixl: the prefill answer names its blocks; the decode pod pulls them once', async () => {
    const p = await start('127.0.0.171', 'prefill')
    const d = await start('127.0.0.172', 'decode')
    const pre = await postJson(
      `${p.url}/v1/chat/completions`,
      chat({ max_tokens: 1, kv_transfer_params: { do_remote_decode: true } }),
    )
    expect(pre.status).toBe(200)
    const kv = (pre.json as { kv_transfer_params: Record<string, unknown> }).kv_transfer_params
    expect(kv).toMatchObject({
      do_remote_prefill: true,
      remote_host: '127.0.0.171',
      remote_port: p.port,
    })
    const promptTokens = (pre.json as { usage: { prompt_tokens: number } }).usage.prompt_tokens
    expect((kv['remote_block_ids'] as number[]).length).toBe(Math.ceil(promptTokens / 16))
    const dec = await postJson(`${d.url}/v1/chat/completions`, chat({ kv_transfer_params: kv }))
    expect(dec.status).toBe(200)
    expect(d.stats().pd).toMatchObject({ kvReceived: 1, kvRecomputed: 0 })
    expect(p.stats().pd.kvSent).toBe(1)
    // Pulled already: the same params again make the decode pod recompute.
    const again = await postJson(`${d.url}/v1/chat/completions`, chat({ kv_transfer_params: kv }))
    expect(again.status).toBe(200)
    expect(d.stats().pd).toMatchObject({ kvReceived: 1, kvRecomputed: 1 })
  })

  it('sglang: decode waits for the prefill room; a cancelled prefill fails the decode', async () => {
    // The prefill pod is slow enough (engine time 20x real) to be cancelled while computing, even
    // when a loaded machine delays the poll below.
    const p = await start('127.0.0.173', 'prefill', 20)
    const d = await start('127.0.0.174', 'decode')
    const boot = { bootstrap_host: '127.0.0.173', bootstrap_port: p.port, bootstrap_room: 77 }
    const [dec, pre] = await Promise.all([
      postJson(`${d.url}/v1/chat/completions`, chat(boot)),
      postJson(`${p.url}/v1/chat/completions`, chat(boot)),
    ])
    expect([dec.status, pre.status]).toEqual([200, 200])
    expect(d.stats().pd.kvReceived).toBe(1)

    const ctl = new AbortController()
    // A prompt the prefill pod has not cached: its prefill is computed in full (~1 s), not
    // the one-token remainder of a cache hit that could finish before the abort lands.
    const fresh = [{ role: 'user', content: `A different request. ${prompt}` }]
    const lost = { ...boot, bootstrap_room: 78, messages: fresh }
    const decoding = postJson(`${d.url}/v1/chat/completions`, chat(lost))
    const prefilling = fetch(`${p.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat({ ...lost, max_tokens: 1 })),
      signal: ctl.signal,
    }).catch(() => undefined)
    // Cancelled once the prefill pod is computing it.
    while (p.stats().running + p.stats().waiting === 0) await new Promise((r) => setTimeout(r, 2))
    ctl.abort()
    await prefilling
    const failed = await decoding
    expect(failed.status).toBe(500)
    expect((failed.json as { error: { code: string } }).error.code).toBe('kv_transfer_failed')
    expect(d.stats().pd.bootstrapFailed).toBe(1)
  })

  it('http: the decode pod looks the prompt up at the prefill pod the header names', async () => {
    const p = await start('127.0.0.175', 'prefill')
    const d = await start('127.0.0.176', 'decode')
    await postJson(`${p.url}/v1/chat/completions`, chat({ max_tokens: 1 }))
    const res = await fetch(`${d.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-prefiller-host-port': `127.0.0.175:${p.port}`,
      },
      body: JSON.stringify(chat()),
    })
    expect(res.status).toBe(200)
    await res.arrayBuffer()
    expect(d.stats().pd).toMatchObject({ kvReceived: 1, kvRecomputed: 0 })
    // Without the header the decode-only pod computes the prompt itself.
    await postJson(`${d.url}/v1/chat/completions`, chat())
    expect(d.stats().pd.kvRecomputed).toBe(1)
  })
})

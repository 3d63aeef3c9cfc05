// /metrics shows how full the process-wide cache of hashed long prompt pieces is: it is bounded but
// fills with traffic over hours, and the heap rises with it (docs/hardening-soak.md).
import { describe, expect, it } from 'vitest'
import { GatewayMetrics } from './metrics.js'
import { chainSeed } from './scheduler/prompt.js'
import { promptHasher } from './scheduler/prompt-hasher.js'

function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  if (line === undefined) throw new Error(`${name} missing`)
  return Number(line.split(' ')[1])
}

describe('prompt cache gauges', () => {
  it('report the bytes and entries the prompt-piece cache holds at scrape time', async () => {
    const m = new GatewayMetrics()
    const before = promptHasher.stats()
    const text = await m.registry.metrics()
    expect(sample(text, 'infer_gateway_prompt_cache_bytes')).toBe(before.bytes)
    // A long piece seen twice is admitted: the gauges follow.
    const piece = 'ab'.repeat(2048)
    for (let i = 0; i < 2; i++) promptHasher.hash(['<s>', piece], 64, 2048, chainSeed('m'))
    const after = promptHasher.stats()
    expect(after.entries).toBe(before.entries + 1)
    const text2 = await m.registry.metrics()
    expect(sample(text2, 'infer_gateway_prompt_cache_entries')).toBe(after.entries)
    expect(sample(text2, 'infer_gateway_prompt_cache_bytes')).toBe(after.bytes)
    expect(after.bytes).toBeGreaterThanOrEqual(before.bytes + 2 * piece.length)
  })
})

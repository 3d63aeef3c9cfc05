import { afterEach, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from '../sim/server.js'
import { oracleChoice, startOracle } from './kv-oracle.js'

const o = { kvWeight: 10, loadWeight: 1, loadMargin: 2 }

describe('kv oracle', () => {
  it('picks the longest resident prefix among pods within the load margin, then the least loaded', () => {
    const p = (cached: number) => ({ promptTokens: 100, cachedTokens: cached })
    expect(oracleChoice([p(0), p(96), p(48)], [0, 1, 0], o)).toBe(1)
    // The holder is more than the margin busier than the least loaded: load decides.
    expect(oracleChoice([p(0), p(96), p(48)], [0, 3, 3], o)).toBe(0)
    // A shorter prefix on a pod within the margin still beats no prefix.
    expect(oracleChoice([p(0), p(96), p(48)], [0, 3, 2], o)).toBe(2)
    // Nothing resident anywhere: the least loaded.
    expect(oracleChoice([p(0), p(0), p(0)], [2, 1, 3], o)).toBe(1)
    // Ties go by the prompt's key, not always to the first pod.
    const picks = new Set<number>()
    for (let k = 0; k < 32; k++) picks.add(oracleChoice([p(0), p(0), p(0)], [0, 0, 0], o, k))
    expect(picks.size).toBe(3)
  })

  const sims: SimHandle[] = []
  afterEach(async () => {
    for (const s of sims.splice(0)) await s.close()
  })

  it('routes a repeated prompt to the simulator that caches it (read through /sim/kv/peek)', async () => {
    for (const host of ['127.0.4.1', '127.0.4.2'])
      sims.push(
        await startSimulator({
          name: host,
          host,
          port: 0,
          model: 'm',
          metricsFormat: 'vllm',
          zeroLatency: true,
        }),
      )
    const oracle = await startOracle(sims, { host: '127.0.0.1', port: 0 }, o)
    try {
      const body = JSON.stringify({
        model: 'm',
        max_tokens: 2,
        messages: [{ role: 'system', content: 'Shared instructions for everyone. '.repeat(20) }],
      })
      const pods: string[] = []
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${oracle.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        })
        expect(res.status).toBe(200)
        pods.push(res.headers.get('x-inference-pod') ?? '?')
        await res.text()
      }
      expect(new Set(pods).size).toBe(1)
      const holder = sims.find((s) => s.name === pods[0]) as SimHandle
      expect(holder.stats().prefixHitTokens).toBeGreaterThan(0)
    } finally {
      await oracle.close()
    }
  })
})

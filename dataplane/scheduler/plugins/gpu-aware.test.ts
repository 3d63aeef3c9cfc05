import { describe, expect, it } from 'vitest'
import { pickContext, request, scores, server, state } from '../testkit.js'
import { DEFAULT_GPU_CAPACITY, DEFAULT_GPU_LABELS, gpuAware, gpuCapacity } from './gpu-aware.js'

const ticket = { promptTokens: 1, outputTokens: 1, stream: false }
const req = () => request(pickContext(server([])), 1)

describe('gpu-aware', () => {
  it('maps GPU labels to capacity: exact table keys, then the longest known name contained', () => {
    const table = new Map(Object.entries(DEFAULT_GPU_CAPACITY))
    const cap = (labels: Record<string, string>) =>
      gpuCapacity(labels, DEFAULT_GPU_LABELS, table, 1)
    expect(cap({ 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' })).toBe(4)
    expect(cap({ gpu: 'a100' })).toBe(2.5)
    expect(cap({ gpu: 'A10' })).toBe(1)
    expect(cap({ gpu: 'TPU-v5' })).toBe(1)
    expect(cap({})).toBe(1)
    expect(gpuCapacity({ gpu: 'big' }, ['gpu'], new Map([['big', 7]]), 1)).toBe(7)
  })

  it('abstains on a homogeneous fleet', () => {
    const eps = [
      state('a', 2, { labels: { gpu: 'H100' } }),
      state('b', 3, { labels: { gpu: 'H100' } }),
    ]
    expect(scores(gpuAware({}), req(), eps)).toBeUndefined()
  })

  it('prefers the bigger GPU when idle and keeps load proportional to capacity', () => {
    const h100 = state('h', 2, { labels: { gpu: 'H100' } })
    const a10 = state('a', 3, { labels: { gpu: 'A10' } })
    const p = gpuAware({})
    expect(scores(p, req(), [h100, a10])).toEqual([1, 0])
    // Place 50 requests greedily by this score alone: the H100 should take about 4/5 of them.
    for (let i = 0; i < 50; i++) {
      const s = scores(p, req(), [h100, a10]) as number[]
      ;((s[0] as number) >= (s[1] as number) ? h100 : a10).dispatchStarted(ticket, 1)
    }
    expect(h100.inFlight).toBeGreaterThanOrEqual(39)
    expect(h100.inFlight).toBeLessThanOrEqual(41)
  })

  it('follows an endpoint whose labels changed (a new snapshot)', () => {
    const a = state('a', 2, { labels: { gpu: 'H100' } })
    const b = state('b', 3, { labels: { gpu: 'A10' } })
    const p = gpuAware({})
    expect(scores(p, req(), [a, b])).toEqual([1, 0])
    a.labels = { gpu: 'T4' }
    expect(scores(p, req(), [a, b])).toEqual([0, 1])
  })

  it('takes the capacity table and label keys from the profile', () => {
    const big = state('x', 2, { labels: { accel: 'fast' } })
    const small = state('y', 3, { labels: { accel: 'slow' } })
    const p = gpuAware({ labelKeys: ['accel'], capacities: { fast: 3, slow: 1 } })
    for (let i = 0; i < 3; i++) big.dispatchStarted(ticket, 1)
    // (3+1)/3 = 1.33 vs (0+1)/1 = 1: the small one is relatively less loaded.
    expect(scores(p, req(), [big, small])).toEqual([0, 1])
  })
})

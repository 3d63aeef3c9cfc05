// The in-process cost probe of bench:epp measures something real: every step runs the EPP's
// code (a stream that fails to decide would allocate far less), and the allocation count sees
// at least the body the decision parses.
import { describe, expect, it } from 'vitest'
import { benchBody, eppCost } from './epp-cost.js'

describe('eppCost', () => {
  it('reports CPU and heap per stream for each step; the decision parses the whole body', async () => {
    const rows = await eppCost({ streams: 40, rounds: 1, promptTokens: 2048 })
    const by = new Map(rows.map((r) => [r.step, r]))
    expect([...by.keys()]).toEqual([
      'whole stream',
      'decode requests',
      'phases, no coding',
      'encode answers',
      'decide + finish',
      'parse body',
    ])
    const bodyBytes = benchBody(2048).length
    // JSON.parse of the body: its text and the prompt string it holds, at the least.
    expect(by.get('parse body')?.heapBytes).toBeGreaterThan(bodyBytes)
    expect(by.get('whole stream')?.heapBytes).toBeGreaterThan(by.get('parse body')?.heapBytes ?? 0)
    for (const r of rows) expect(r.cpuUs).toBeGreaterThan(0)
  })
})

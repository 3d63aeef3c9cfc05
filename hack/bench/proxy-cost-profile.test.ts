import { describe, expect, it } from 'vitest'
import { type CpuProfile, summarizeProfile } from './proxy-cost-profile.js'

const frame = (functionName: string, url: string, lineNumber = 0) => ({
  functionName,
  url,
  lineNumber,
  columnNumber: 0,
})

// 1,000 µs of samples at 10 µs each: idle 20, our handler 30 (10 self), undici under it 20,
// Node's writev 50.
const PROFILE: CpuProfile = {
  startTime: 0,
  endTime: 1000,
  nodes: [
    { id: 1, callFrame: frame('(root)', ''), hitCount: 0, children: [2, 3, 5] },
    { id: 2, callFrame: frame('(idle)', ''), hitCount: 20 },
    {
      id: 3,
      callFrame: frame('handle', 'file:///x/dataplane/app.ts', 9),
      hitCount: 10,
      children: [4],
    },
    {
      id: 4,
      callFrame: frame('request', 'file:///x/node_modules/undici/lib/api.js', 3),
      hitCount: 20,
    },
    { id: 5, callFrame: frame('writev', ''), hitCount: 50 },
  ],
}

describe('summarizeProfile', () => {
  it('gives self time by file and function and our inclusive time per request', () => {
    const s = summarizeProfile(PROFILE, 10, undefined, (f) => f.startsWith('app.ts'))
    // 80 busy samples × 10 µs over 10 requests.
    expect(s.busyUsPerRequest).toBe(80)
    expect(s.byFunction[0]).toEqual(['writev (native):0', 50])
    expect(s.byFile).toContainEqual(['(native)', 50])
    expect(s.byFile).toContainEqual(['app.ts', 10])
    // The handler's own 10 samples and undici's 20 below it.
    expect(s.oursInclusive).toEqual([['handle app.ts:10', 30]])
  })
})

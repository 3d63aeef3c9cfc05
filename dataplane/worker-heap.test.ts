import { describe, expect, it } from 'vitest'
import { semiSpaceFlag } from './worker-heap.js'

// workerWithOwnHeap's effect on a worker's young generation is tested where a process runs with
// the flags: dataplane/engines/scrape-thread.test.ts ("keeps the worker's young generation ...").
describe('semiSpaceFlag', () => {
  it('reads --max-semi-space-size from the command line and NODE_OPTIONS', () => {
    expect(semiSpaceFlag([], undefined)).toBeUndefined()
    expect(semiSpaceFlag([], '--max-semi-space-size=32')).toBe(32)
    expect(semiSpaceFlag(['--max_semi_space_size', '64'], '--max-semi-space-size=32')).toBe(64)
    expect(semiSpaceFlag(['--trace-gc'], '--enable-source-maps  --max-semi-space-size=16')).toBe(16)
    const both = ['--max-semi-space-size=32', '--min_semi_space_size', '8']
    expect(semiSpaceFlag(both, undefined, 'min')).toBe(8)
    expect(semiSpaceFlag(both, undefined)).toBe(32)
    expect(semiSpaceFlag(['--max-semi-space-size=32'], undefined, 'min')).toBeUndefined()
  })
})

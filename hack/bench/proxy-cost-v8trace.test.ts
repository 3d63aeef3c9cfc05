import { describe, expect, it } from 'vitest'
import { countV8Trace, tally } from './proxy-cost-v8trace.js'

// Lines as Node 20.20 prints them with --trace-opt --trace-deopt (addresses shortened).
const TRACE = `[marking 0x1 <JSFunction f (sfi = 0x2)> for optimization to TURBOFAN, ConcurrencyMode::kConcurrent, reason: small function]
[compiling method 0x1 <JSFunction f (sfi = 0x2)> (target TURBOFAN), mode: ConcurrencyMode::kConcurrent]
[completed compiling 0x1 <JSFunction f (sfi = 0x2)> (target TURBOFAN) - took 0.011, 0.557, 0.009 ms]
[completed optimizing 0x1 <JSFunction f (sfi = 0x2)> (target TURBOFAN)]
data plane listening on 127.0.0.1:1
[completed optimizing 0x3 <JSFunction (sfi = 0x4)> (target TURBOFAN) OSR]
[bailout (kind: deopt-eager, reason: wrong map): begin. deoptimizing 0x1 <JSFunction f (sfi = 0x2)>, 0x5 <Code TURBOFAN>, opt id 0, bytecode offset 0, deopt exit 1, FP to SP delta 32, caller SP 0x6, pc 0x7]
[bailout (kind: deopt-soft, reason: Insufficient type feedback for compare operation): begin. deoptimizing 0x3 <JSFunction (sfi = 0x4)>, 0x8 <Code TURBOFAN>, opt id 2, bytecode offset 100, deopt exit 6, FP to SP delta 152, caller SP 0x6, pc 0x9]
[marking dependent code 0xa <Code TURBOFAN> (0x2 <SharedFunctionInfo f>) (opt id 3) for deoptimization, reason: field-representation]
[10422:0x371a1d00]    52117 ms: Scavenge 3.9 (4.0) -> 3.6 (5.0) MB, 1.69 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; 
[10422:0x371a1d00]    61025 ms: Mark-Compact 31.1 (44.0) -> 22.6 (45.0) MB, 6.00 / 0.00 ms  (average mu = 0.990, current mu = 0.980) finalize incremental marking via task; GC in old space requested
[marking dependent code 0xb <Code TURBOFAN> (0x4 <SharedFunctionInfo>) (opt id 2) for deoptimization, reason: code dependencies]
`

describe('countV8Trace', () => {
  it('counts marks, compiles by tier, deopts with kind and reason, and dependent code', () => {
    const c = countV8Trace(TRACE)
    expect(c.marked).toBe(1)
    expect([...c.compiled.entries()]).toEqual([
      ['TURBOFAN', 1],
      ['TURBOFAN OSR', 1],
    ])
    expect(c.compiledFns).toEqual(['f', '(anonymous)'])
    expect(c.deopts).toEqual([
      { fn: 'f', kind: 'deopt-eager', reason: 'wrong map' },
      {
        fn: '(anonymous)',
        kind: 'deopt-soft',
        reason: 'Insufficient type feedback for compare operation',
      },
    ])
    expect(c.dependentCode).toEqual([
      { fn: 'f', reason: 'field-representation' },
      { fn: '(anonymous)', reason: 'code dependencies' },
    ])
    expect(c.markCompacts).toEqual(['finalize incremental marking via task'])
  })

  it('finds nothing in output without trace lines', () => {
    const c = countV8Trace('data plane listening\n[not a trace line]\n')
    expect(c.marked).toBe(0)
    expect(c.compiled.size).toBe(0)
    expect(c.deopts).toEqual([])
    expect(c.markCompacts).toEqual([])
  })
})

describe('tally', () => {
  it('counts keys, most frequent first, ties by name', () => {
    expect(tally(['b', 'a', 'b', 'c', 'a', 'b'])).toEqual([
      ['b', 3],
      ['a', 2],
      ['c', 1],
    ])
  })
})

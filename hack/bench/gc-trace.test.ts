import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { GC_MAIN_FIRST_ARGS, parseTraceGc, summariseGc, watchGc } from './gc-trace.js'

describe('gc-trace', () => {
  it('reads the pause of scavenges and mark-compacts, nothing from other lines', () => {
    expect(
      parseTraceGc(
        '[18124:0x3a4c12c0]     6303 ms: Scavenge 45.2 (66.3) -> 30.4 (66.3) MB, 5.62 / 0.02 ms  (average mu = 0.972, current mu = 0.972) allocation failure; ',
      ),
    ).toEqual({
      kind: 'scavenge',
      pauseMs: 5.62,
      isolate: '0x3a4c12c0',
      atMs: 6303,
      afterMb: 30.4,
      committedMb: 66.3,
    })
    expect(
      parseTraceGc(
        '[7:0x5e0]    90210 ms: Mark-Compact (reduce) 61.0 (80.1) -> 40.2 (79.9) MB, 12.3 / 0.0 ms  (+ 3.1 ms in 12 steps since start of marking) finalize incremental marking',
      ),
    ).toEqual({
      kind: 'mark-compact',
      pauseMs: 12.3,
      isolate: '0x5e0',
      atMs: 90210,
      afterMb: 40.2,
      committedMb: 79.9,
    })
    // Node 24 (the image's): `pooled: N MB,` before the pause.
    expect(
      parseTraceGc(
        '[14033:0x36172000]       49 ms: Scavenge 4.8 (5.6) -> 3.9 (6.6) MB, pooled: 0 MB, 1.72 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ',
      ),
    ).toEqual({
      kind: 'scavenge',
      pauseMs: 1.72,
      isolate: '0x36172000',
      atMs: 49,
      afterMb: 3.9,
      committedMb: 6.6,
    })
    expect(parseTraceGc('{"level":"info","msg":"epp listening"}')).toBeUndefined()
    const at = { isolate: '0x1', atMs: 0, afterMb: 1, committedMb: 2 }
    const s = summariseGc([
      { kind: 'scavenge', pauseMs: 1, ...at },
      { kind: 'scavenge', pauseMs: 3, ...at },
      { kind: 'mark-compact', pauseMs: 10, ...at },
    ])
    expect(s).toEqual({
      pauses: 3,
      scavenges: 2,
      markCompacts: 1,
      totalMs: 14,
      medianMs: 3,
      maxMs: 10,
    })
  })

  it("collects a real Node process's pauses from its --trace-gc output", async () => {
    // Allocates ~100 MB of short-lived arrays: the young generation is collected many times.
    const child = spawn(
      process.execPath,
      [
        '--trace-gc',
        '--max-semi-space-size=1',
        '-e',
        'let k = 0; for (let i = 0; i < 20000; i++) k += new Array(1000).fill(i).length; console.log(k)',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const gc = watchGc(child.stdout)
    await new Promise((r) => child.once('close', r))
    const pauses = gc.take()
    expect(summariseGc(pauses).scavenges).toBeGreaterThan(5)
    expect(gc.take()).toEqual([])
  })

  it("counts the main thread's pauses apart from a worker thread's", async () => {
    // The main thread collects first, then a worker allocates while the main thread waits.
    const alloc = 'let k = 0; for (let i = 0; i < 20000; i++) k += new Array(1000).fill(i).length'
    const child = spawn(
      process.execPath,
      [
        '--trace-gc',
        '--max-semi-space-size=1',
        '-e',
        `${alloc}; const { Worker } = require('node:worker_threads'); new Worker(${JSON.stringify(alloc)}, { eval: true })`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const gc = watchGc(child.stdout)
    await new Promise((r) => child.once('close', r))
    const all = gc.takeAll()
    const isolates = [...new Set(all.map((p) => p.isolate))]
    expect(isolates).toHaveLength(2)
    const main = all.filter((p) => p.isolate === isolates[0])
    const worker = all.filter((p) => p.isolate === isolates[1])
    expect(main.length).toBeGreaterThan(5)
    expect(worker.length).toBeGreaterThan(5)
    // take() is the main isolate's share alone.
    const again = spawn(process.execPath, child.spawnargs.slice(1), {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const gc2 = watchGc(again.stdout)
    await new Promise((r) => again.once('close', r))
    const mainOnly = gc2.take()
    expect(mainOnly.length).toBeGreaterThan(5)
    expect(new Set(mainOnly.map((p) => p.isolate)).size).toBe(1)
    expect(gc2.takeAll()).toEqual([])
  })

  it('with GC_MAIN_FIRST_ARGS the main isolate is the first, even when only a worker allocates', async () => {
    const alloc = 'let k = 0; for (let i = 0; i < 20000; i++) k += new Array(1000).fill(i).length'
    const child = spawn(
      process.execPath,
      [
        '--trace-gc',
        ...GC_MAIN_FIRST_ARGS,
        '--max-semi-space-size=1',
        '-e',
        `const { Worker } = require('node:worker_threads'); new Worker(${JSON.stringify(alloc)}, { eval: true })`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const gc = watchGc(child.stdout)
    await new Promise((r) => child.once('close', r))
    const main = gc.take()
    // The forced collection (and whatever the idle main thread did) against the worker's many.
    expect(main.length).toBeGreaterThanOrEqual(1)
    expect(main[0]?.kind).toBe('mark-compact')
    expect(main.length).toBeLessThan(5)
  })
})

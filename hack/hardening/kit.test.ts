// gatewayMemory: the long forms judge memory on what a real gateway process still holds after a
// forced full GC (read through its inspector), not on raw RSS. Requests with large bodies leave
// garbage; after the GC the heap in use is back near where it started.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { diffSnapshots, idAgreement, loadSnapshot } from './heap-diff.js'
import { gatewayMemory, heapSnapshotter, runLoad } from './kit.js'
import { STACK_MODEL, type Stack, startStack } from './stack.js'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ net: '127.0.25', engines: 1, inspect: true })
}, 60_000)

afterAll(async () => {
  await stack?.stop()
})

describe('gatewayMemory', () => {
  it('finds the inspector of the gateway process and reads its heap after a full GC', async () => {
    const url = stack.gw.inspectorUrl
    expect(url).toMatch(/^ws:\/\/127\.0\.25\.1:\d+\//)
    const before = await gatewayMemory(url as string, { gc: true })
    expect(before.heapUsed).toBeGreaterThan(1024 * 1024)
    expect(before.heapUsed).toBeLessThanOrEqual(before.heapTotal)
    expect(before.rss).toBeGreaterThan(before.heapUsed)
    // 20 requests of ~1 MiB each (one long prompt): garbage once answered.
    const big = 'x'.repeat(1024 * 1024)
    const load = await runLoad({
      url: stack.gw.url,
      concurrency: 4,
      next: (i) =>
        i < 20
          ? {
              path: '/v1/chat/completions',
              body: JSON.stringify({
                model: STACK_MODEL,
                messages: [{ role: 'user', content: big }],
                max_tokens: 1,
              }),
            }
          : undefined,
    })
    expect(load.byStatus[200]).toBe(20)
    const after = await gatewayMemory(url as string, { gc: true })
    // 20 MiB went through; what stays is a fraction of one body (caches, pools, metrics).
    expect(after.heapUsed - before.heapUsed).toBeLessThan(4 * 1024 * 1024)
  }, 60_000)

  it('heap snapshots of one session keep object ids: a diff names what is new', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'igw-heap-'))
    const snap = await heapSnapshotter(stack.gw.inspectorUrl as string)
    const answered = async (): Promise<number | undefined> => {
      const load = await runLoad({
        url: stack.gw.url,
        concurrency: 4,
        next: (i) =>
          i < 200
            ? {
                path: '/v1/chat/completions',
                body: JSON.stringify({
                  model: STACK_MODEL,
                  messages: [{ role: 'user', content: `hi ${i}` }],
                }),
              }
            : undefined,
      })
      return load.byStatus[200]
    }
    try {
      // The same 200 requests first: what the first pass allocates once (bounded sample windows,
      // pools, optimized code) is in snapshot a, as the soak reads its baseline after a warm-up;
      // a per-request leak still grows by 200 in the second pass.
      expect(await answered()).toBe(200)
      await snap.take(join(dir, 'a.heapsnapshot'))
      // The memory read goes through the same session: another session closing would make V8
      // hand out every id anew.
      expect((await snap.memory({ gc: true })).heapUsed).toBeGreaterThan(1024 * 1024)
      expect(await answered()).toBe(200)
      await snap.take(join(dir, 'b.heapsnapshot'))
      const [a, b] = await Promise.all([
        loadSnapshot(join(dir, 'a.heapsnapshot')),
        loadSnapshot(join(dir, 'b.heapsnapshot')),
      ])
      const agree = idAgreement(a, b)
      expect(agree.matched).toBeGreaterThan(a.count * 0.8)
      expect(agree.sameGroup).toBeGreaterThan(0.99)
      // 200 answered requests leave nothing of their own behind: no group grew by 200 objects.
      const d = diffSnapshots(a, b).filter((x) => !x.group.startsWith('(code)'))
      expect(d.filter((x) => x.net >= 200).map((x) => x.group)).toEqual([])
    } finally {
      snap.close()
      await rm(dir, { recursive: true, force: true })
    }
  }, 90_000)
})

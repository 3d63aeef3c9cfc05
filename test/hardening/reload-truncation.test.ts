// Hot reload racing truncate-then-write (issue 10): editors, `cp` and shell `>` truncate a config
// file before writing it, so the gateway can read it empty, comments-only or half-written. Under
// continuous load, the standalone `--config` file is rewritten that way again and again; no request
// may see a 404 (or any non-200) for the model, and when the file is finally left empty the last
// good config stays live (and /readyz stays ready).
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chatBody, metric, runLoad, sleep } from '../../hack/hardening/kit.js'
import { STACK_MODEL, type Stack, startStack } from '../../hack/hardening/stack.js'

let stack: Stack

beforeAll(async () => {
  stack = await startStack({ net: '127.0.14', engines: 2, gatewayArgs: ['--poll-interval', '50'] })
}, 60_000)

afterAll(async () => {
  await stack?.stop()
})

/** The stack's config plus one more route, so each rewrite is a real change. */
function withMarker(marker: string): string {
  const route = {
    apiVersion: 'networking.matrixinfer.ai/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name: 'marker' },
    spec: { modelName: marker, rules: [{ targetModels: [{ modelServerName: 'pool' }] }] },
  }
  return `${stack.config}\n---\n${JSON.stringify(route, null, 2)}\n`
}

const pauseCell = new Int32Array(new SharedArrayBuffer(4))
/** Blocks this thread for `ms` (no event-loop turn can stretch it). */
function pauseSync(ms: number): void {
  if (ms > 0) Atomics.wait(pauseCell, 0, 0, ms)
}

/** The longest time the file sat truncated or part-written between two writes, this test. */
let longestGapMs = 0

/**
 * Truncate, wait, then write in `parts` pieces with waits between: what a slow writer does. The
 * writes and pauses are synchronous: the gateway trusts a file that has not changed for 200 ms
 * (config-source.ts settleMs), so the writer's pauses must stay what the test says. With async
 * sleeps, this process's own load (8 clients against fast answers) and a full CI run on 2 cores
 * once stretched a 15-60 ms pause past 200 ms, and a part-written file (valid YAML, the model's
 * route cut off) was loaded: a slower writer than the one this test means to be.
 */
function truncateThenWrite(text: string, pauseMs: number, parts: number): void {
  const fd = openSync(stack.configFile, 'w')
  let last = performance.now()
  const gap = (): void => {
    const now = performance.now()
    longestGapMs = Math.max(longestGapMs, now - last)
    last = now
  }
  try {
    pauseSync(pauseMs)
    const step = Math.max(1, Math.ceil(text.length / parts))
    for (let i = 0; i < text.length; i += step) {
      writeSync(fd, text.slice(i, i + step))
      fsyncSync(fd)
      gap()
      if (i + step < text.length) pauseSync(pauseMs)
    }
  } finally {
    closeSync(fd)
  }
}

async function models(): Promise<string[]> {
  const r = (await (await fetch(`${stack.gw.url}/v1/models`)).json()) as { data?: { id: string }[] }
  return (r.data ?? []).map((m) => m.id)
}

describe('hot reload racing truncate-then-write', () => {
  it('serves the model throughout and keeps the last good config when the file is left empty', async () => {
    const failuresBefore = await metric(stack.gw.url, 'infer_gateway_config_reloads_total', {
      result: 'failure',
    }).catch(() => 0)
    const ac = new AbortController()
    let n = 0
    const load = runLoad({
      url: stack.gw.url,
      concurrency: 8,
      signal: ac.signal,
      next: () => ({ path: '/v1/chat/completions', body: chatBody(STACK_MODEL, n++) }),
    })
    // ~8 s of rewrites: empty for a while, comments only, written in pieces, then complete.
    const until = performance.now() + 8000
    let k = 0
    while (performance.now() < until) {
      k++
      if (k % 5 === 0) truncateThenWrite('# being edited\n', 40, 1)
      truncateThenWrite(withMarker(`marker-${k}`), k % 3 === 0 ? 60 : 15, 1 + (k % 3))
      await sleep(30)
    }
    // The last good config, then the file left empty (and then comments only) for a while.
    truncateThenWrite(withMarker('marker-final'), 10, 1)
    const deadline = performance.now() + 5000
    while (!(await models()).includes('marker-final') && performance.now() < deadline)
      await sleep(50)
    expect(await models()).toContain('marker-final')
    truncateThenWrite('', 0, 1)
    await sleep(1000)
    await writeFile(stack.configFile, '# nothing here yet\n')
    await sleep(1000)
    ac.abort()
    const r = await load

    const seen = JSON.stringify({
      rewrites: k,
      longestWriterGapMs: Math.round(longestGapMs),
      byStatus: r.byStatus,
      samples: r.samples.slice(0, 5),
    })
    expect(r.sent, seen).toBeGreaterThan(50)
    expect(r.byStatus[404], seen).toBeUndefined()
    expect(r.byStatus, seen).toEqual({ 200: r.sent })
    // Still the last good config: both models served, ready, and the refusals were counted.
    expect(await models()).toEqual(expect.arrayContaining([STACK_MODEL, 'marker-final']))
    const ok = await fetch(`${stack.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chatBody('marker-final', 0),
    })
    expect(ok.status).toBe(200)
    expect((await fetch(`${stack.gw.url}/readyz`)).status).toBe(200)
    const failuresAfter = await metric(stack.gw.url, 'infer_gateway_config_reloads_total', {
      result: 'failure',
    })
    expect(failuresAfter).toBeGreaterThan(failuresBefore)
    expect(stack.gw.exited()).toBe(false)
  }, 60_000)
})

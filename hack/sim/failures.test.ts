import { afterEach, describe, expect, it } from 'vitest'
import { type SimHandle, type SimOptions, startSimulator } from './server.js'
import { postJson, postSse } from './testkit.js'

const sims: SimHandle[] = []
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()))
})

async function sim(over: Partial<SimOptions> = {}): Promise<SimHandle> {
  const s = await startSimulator({
    name: 'f',
    host: '127.0.0.2',
    port: 0,
    model: 'm',
    metricsFormat: 'vllm',
    zeroLatency: true,
    ...over,
  })
  sims.push(s)
  return s
}

const req = { model: 'm', prompt: 'hello', max_tokens: 3 }

async function statuses(s: SimHandle, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await postJson(`${s.url}/v1/completions`, req)).status)
  return out
}

describe('errorRate', () => {
  it('fails about the configured fraction with OpenAI-shaped 500s, reproducibly for a seed', async () => {
    const a = await sim({ seed: 5, failures: { errorRate: 0.3 } })
    const b = await sim({ name: 'g', host: '127.0.0.3', seed: 5, failures: { errorRate: 0.3 } })
    const c = await sim({ name: 'h', host: '127.0.0.3', seed: 6, failures: { errorRate: 0.3 } })
    const sa = await statuses(a, 60)
    expect(await statuses(b, 60)).toEqual(sa)
    expect(await statuses(c, 60)).not.toEqual(sa)
    const failed = sa.filter((x) => x === 500).length
    expect(failed).toBeGreaterThan(6)
    expect(failed).toBeLessThan(30)
    expect(sa.every((x) => x === 200 || x === 500)).toBe(true)
    expect(a.stats().injectedFailures).toBe(failed)
    a.setFailures({ errorRate: 1 })
    const r = await postJson(`${a.url}/v1/completions`, req)
    expect(r.status).toBe(500)
    expect(r.json).toEqual({
      error: {
        message: 'Injected failure: internal server error.',
        type: 'server_error',
        code: 'internal_server_error',
        param: null,
      },
    })
  })
})

describe('forceStatus, stall and health', () => {
  it('returns the forced status until cleared, via setFailures and via POST /sim/failures', async () => {
    const s = await sim()
    s.setFailures({ forceStatus: 429 })
    const r1 = await postJson(`${s.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'x' }],
    })
    expect(r1.status).toBe(429)
    expect((r1.json as { error: { type: string; code: string } }).error).toMatchObject({
      type: 'rate_limit_error',
      code: 'rate_limit_exceeded',
    })
    const set = await postJson(`${s.url}/sim/failures`, { forceStatus: 503 })
    expect(set.status).toBe(200)
    expect((await postJson(`${s.url}/v1/completions`, req)).status).toBe(503)
    await postJson(`${s.url}/sim/failures`, { forceStatus: null })
    expect((await postJson(`${s.url}/v1/completions`, req)).status).toBe(200)
    const bad = await postJson(`${s.url}/sim/failures`, { errorRate: 2 })
    expect(bad.status).toBe(400)
    expect((bad.json as { error: { code: string } }).error.code).toBe('invalid_failures')
    expect(() => s.setFailures({ stallMs: -1 })).toThrow(/stallMs/)
  })

  it('stallMs delays the response headers', async () => {
    const s = await sim({ failures: { stallMs: 60 } })
    const r = await postJson(`${s.url}/v1/completions`, req)
    expect(r.status).toBe(200)
    expect(r.ms).toBeGreaterThanOrEqual(55)
    s.setFailures({ stallMs: 0 })
    expect((await postJson(`${s.url}/v1/completions`, req)).ms).toBeLessThan(50)
  })

  it('unhealthy makes /health answer 503', async () => {
    const s = await sim()
    await postJson(`${s.url}/sim/failures`, { unhealthy: true })
    expect((await fetch(`${s.url}/health`)).status).toBe(503)
  })

  it('close() does not hang on a stalled request', async () => {
    const s = await sim({ failures: { stallMs: 10_000 } })
    const pending = fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify(req),
    }).catch(() => 'closed')
    await new Promise((r) => setTimeout(r, 20))
    // close() wins against the stall's end (10 s) by far; a Response instead of 'closed' would
    // mean the stalled request was answered, i.e. close() waited it out.
    const first = await Promise.race([
      s.close().then(() => 'closed'),
      new Promise((r) => setTimeout(r, 8000, 'still closing').unref()),
    ])
    expect(first).toBe('closed')
    expect(await pending).toBe('closed')
  })
})

describe('dropMidStream', () => {
  it('destroys the socket after N chunks: no [DONE], and the engine frees the request', async () => {
    const s = await sim({
      zeroLatency: false,
      timeScale: 0.2,
      decodeMsPerToken: 5,
      failures: { dropMidStream: 3 },
    })
    const r = await postSse(`${s.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 20,
      stream: true,
    })
    expect(r.status).toBe(200)
    expect(r.done).toBe(false)
    expect(r.broken).toBe(true)
    expect(r.events).toHaveLength(3) // role chunk + 2 tokens
    await new Promise((res) => setTimeout(res, 20))
    expect(s.stats()).toMatchObject({ running: 0, kvUsage: 0, aborted: 1 })
    s.setFailures({ dropMidStream: null })
    const ok = await postSse(`${s.url}/v1/chat/completions`, {
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 20,
      stream: true,
    })
    expect(ok.done).toBe(true)
    expect(ok.events).toHaveLength(21)
  })

  it('non-streaming: the body is cut off', async () => {
    const s = await sim({ failures: { dropMidStream: 1 } })
    const res = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify(req),
    })
    await expect(res.text()).rejects.toThrow()
  })
})

describe('client disconnect', () => {
  it('cancels the generation and releases its KV blocks', async () => {
    const s = await sim({ zeroLatency: false, decodeMsPerToken: 20 })
    const ac = new AbortController()
    const p = fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ ...req, max_tokens: 50, stream: true }),
      signal: ac.signal,
    })
      .then((r) => r.text())
      .catch(() => 'aborted')
    await new Promise((r) => setTimeout(r, 40))
    expect(s.stats().running).toBe(1)
    ac.abort()
    expect(await p).toBe('aborted')
    await new Promise((r) => setTimeout(r, 20))
    expect(s.stats()).toMatchObject({ running: 0, kvUsage: 0, aborted: 1 })
  })
})

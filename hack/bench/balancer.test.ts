import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from '../sim/index.js'
import { type Balancer, startBalancer } from './balancer.js'

let sims: SimHandle[] = []
let lb: Balancer

beforeAll(async () => {
  sims = await Promise.all(
    ['127.0.0.81', '127.0.0.82', '127.0.0.83'].map((host, i) =>
      startSimulator({
        name: `b${i}`,
        host,
        port: 0,
        model: 'm',
        metricsFormat: 'vllm',
        zeroLatency: true,
      }),
    ),
  )
  lb = await startBalancer(
    sims.map((s) => ({ host: s.host, port: s.port })),
    { host: '127.0.0.80', port: 0 },
  )
})

afterAll(async () => {
  await lb?.close()
  await Promise.all(sims.map((s) => s.close()))
})

describe('round-robin balancer', () => {
  it('sends each request to the next backend, over one kept-alive connection too', async () => {
    const pods: (string | null)[] = []
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${lb.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'm',
          messages: [{ role: 'user', content: `q${i}` }],
          stream: true,
        }),
      })
      expect(res.status).toBe(200)
      expect(await res.text()).toContain('data: [DONE]')
      pods.push(res.headers.get('x-inference-pod'))
    }
    expect(pods).toEqual(['b0', 'b1', 'b2', 'b0', 'b1', 'b2'])
    expect(lb.counts()).toEqual([2, 2, 2])
  })

  it('answers 502 in the OpenAI error shape when a backend is down', async () => {
    await sims[0]?.close()
    const res = await fetch(`${lb.url}/v1/models`)
    const body = (await res.json()) as { error: { code: string } }
    expect(res.status).toBe(502)
    expect(body.error.code).toBe('bad_gateway')
  })
})

// The floor proxy answers as the engine does (status, body, event stream) through real loopback
// HTTP with the official OpenAI client, so proxy-cost's --floor compares ours with a working proxy:
// with each of its upstream clients (undici, raw node:net sockets, node:http) on node:http's
// server, and with the raw client and the replay on the raw inbound server (raw-inbound.ts).
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from '../sim/index.js'
import {
  FLOOR_CLIENTS,
  type Floor,
  type FloorClient,
  type FloorServer,
  RAW_SERVER_CLIENTS,
  startFloor,
} from './proxy-floor.js'

let sim: SimHandle

beforeAll(async () => {
  sim = await startSimulator({
    name: 'floor-sim',
    host: '127.0.0.171',
    port: 0,
    model: 'floor-model',
    metricsFormat: 'vllm',
    zeroLatency: true,
    defaultMaxTokens: 5,
  })
})

afterAll(async () => {
  await sim?.close()
})

const CASES: [FloorClient, FloorServer][] = [
  ...FLOOR_CLIENTS.map((c): [FloorClient, FloorServer] => [c, 'node']),
  ...RAW_SERVER_CLIENTS.map((c): [FloorClient, FloorServer] => [c, 'raw']),
]

describe.each(CASES)(
  'proxy floor with the %s client on the %s server',
  (upstreamClient, server) => {
    let floor: Floor
    let client: OpenAI

    beforeAll(async () => {
      floor = await startFloor({
        host: '127.0.0.172',
        port: 0,
        upstream: sim.url,
        client: upstreamClient,
        server,
      })
      client = new OpenAI({
        baseURL: `http://127.0.0.172:${floor.port}/v1`,
        apiKey: 'unused',
        maxRetries: 0,
      })
    })

    afterAll(async () => {
      await floor?.close()
    })

    it('passes a chat completion through', async () => {
      const before = sim.stats().requests
      const r = await client.chat.completions.create({
        model: 'floor-model',
        messages: [{ role: 'user', content: 'hello floor' }],
        max_tokens: 4,
      })
      expect(r.model).toBe('floor-model')
      expect(r.usage?.completion_tokens).toBe(4)
      // The engine saw it (the floor did not answer on its own).
      expect(sim.stats().requests).toBe(before + 1)
    })

    it('pipes an event stream', async () => {
      const stream = await client.chat.completions.create({
        model: 'floor-model',
        messages: [{ role: 'user', content: 'stream please' }],
        max_tokens: 3,
        stream: true,
      })
      let text = ''
      let chunks = 0
      for await (const c of stream) {
        chunks++
        text += c.choices[0]?.delta.content ?? ''
      }
      expect(chunks).toBeGreaterThanOrEqual(3)
      expect(text.length).toBeGreaterThan(0)
    })

    it("answers the engine's own errors with its status", async () => {
      await expect(
        client.chat.completions.create({
          model: 'no-such-model',
          messages: [{ role: 'user', content: 'x' }],
        }),
      ).rejects.toMatchObject({ status: 404 })
    })

    it('serves many requests over its connections in order', async () => {
      const answers = await Promise.all(
        [2, 3, 4, 5].map((n) =>
          client.chat.completions.create({
            model: 'floor-model',
            messages: [{ role: 'user', content: `count ${n}` }],
            max_tokens: n,
          }),
        ),
      )
      expect(answers.map((a) => a.usage?.completion_tokens)).toEqual([2, 3, 4, 5])
    })
  },
)

// Provider credentials from a mounted Secret directory (kubelet's atomic `..data` swap) while
// traffic flows: rotation with an overlap window, rotation the provider enforces at once (the
// gateway re-reads on the provider's 401 and retries), and a secret that appears later.
import { symlink } from 'node:fs/promises'
import { join } from 'node:path'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SimServer, startOpenAISim } from '../hack/providers-sim/index.js'
import {
  type ProviderGateway,
  providerDoc,
  secretEntry,
  simpleRoute,
  startProviderGateway,
} from './helpers/providers.js'
import { until } from './helpers/until.js'

const A = 'sk-rotation-key-A'
const B = 'sk-rotation-key-B'
const C = 'sk-rotation-key-C'
const ENTRY = secretEntry('openai', 'api-key')
const LATE = secretEntry('late', 'api-key')

let sim: SimServer
let pg: ProviderGateway
let client: OpenAI

beforeAll(async () => {
  sim = await startOpenAISim({ host: '127.0.0.80', flavor: 'openai', name: 'rotating' })
  sim.keys.add(A)
  sim.eventDelayMs = 0
  pg = await startProviderGateway(
    [
      providerDoc('rotating', {
        providerType: 'OpenAI',
        baseURL: `${sim.url}/v1`,
        auth: { secretRef: { name: 'openai', key: 'api-key' } },
      }),
      providerDoc('late', {
        providerType: 'OpenAI',
        baseURL: `${sim.url}/v1`,
        auth: { secretRef: { name: 'late', key: 'api-key' } },
      }),
      simpleRoute('rotating'),
      simpleRoute('late'),
    ],
    { [ENTRY]: A },
  )
  client = new OpenAI({ baseURL: `${pg.gw.url}/v1`, apiKey: 'client', maxRetries: 0 })
})

afterAll(async () => {
  await pg?.close()
  await sim?.close()
})

/** Keeps `workers` requests in flight (half streamed) until `stop` resolves; counts outcomes. */
async function traffic(model: string, stop: Promise<void>, workers = 4) {
  let done = false
  void stop.then(() => {
    done = true
  })
  const failures: string[] = []
  let ok = 0
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; !done; i++) {
        try {
          if ((w + i) % 2 === 0) {
            const r = await client.chat.completions.create({
              model,
              messages: [{ role: 'user', content: 'x' }],
            })
            if (!r.choices[0]?.message.content) throw new Error('empty answer')
          } else {
            const s = await client.chat.completions.create({
              model,
              messages: [{ role: 'user', content: 'y' }],
              stream: true,
            })
            let text = ''
            for await (const c of s) text += c.choices[0]?.delta.content ?? ''
            if (!text.includes('You said')) throw new Error('incomplete stream')
          }
          ok++
        } catch (e) {
          failures.push(e instanceof Error ? e.message : String(e))
        }
      }
    }),
  )
  return { ok, failures }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const usedKey = (i: number) =>
  String(sim.requests[i]?.headers.authorization).slice('Bearer '.length)

describe('credential rotation under traffic', () => {
  it('with an overlap window: zero failed requests, the new key in use before the old is revoked', async () => {
    let stop!: () => void
    const stopped = new Promise<void>((r) => {
      stop = r
    })
    // Counted in requests, not time: on a loaded machine a time window may hold almost none.
    const first = sim.requests.length
    const run = traffic('rotating', stopped)
    await until(() => sim.requests.length >= first + 10, 10_000, 'traffic with the first key')
    sim.keys.add(B) // the provider issues the new key
    const mark = sim.requests.length
    await pg.secrets.update({ [ENTRY]: B }) // kubelet swaps ..data atomically
    await until(() =>
      sim.requests.slice(mark).some((r) => r.headers.authorization === `Bearer ${B}`),
    )
    sim.keys.delete(A) // the old key is revoked
    const revokedAt = sim.requests.length
    await until(() => sim.requests.length > revokedAt + 5, 10_000, 'traffic after the revocation')
    stop()
    const { ok, failures } = await run
    expect(failures).toEqual([])
    // Overlap: no request was refused, so every one the provider saw answered its client.
    expect(ok).toBe(sim.requests.length - first)
    // Requests sent after the gateway saw the new file carry it (nothing goes back to A).
    const firstB = sim.requests.findIndex((r) => r.headers.authorization === `Bearer ${B}`)
    for (let i = firstB; i < sim.requests.length; i++) expect(usedKey(i)).toBe(B)
  })

  it('revoked at once by the provider: the 401 makes the gateway re-read and retry, zero failures', async () => {
    let stop!: () => void
    const stopped = new Promise<void>((r) => {
      stop = r
    })
    const first = sim.requests.length
    const run = traffic('rotating', stopped)
    await until(() => sim.requests.length >= first + 5, 10_000, 'traffic with the old key')
    // Worst case: the new key is mounted and the provider switches to it at once, before the
    // gateway's poll (100 ms) notices the file.
    sim.keys.add(C)
    await pg.secrets.update({ [ENTRY]: C })
    sim.keys.delete(B)
    const rotatedAt = sim.requests.length
    await until(
      () =>
        sim.requests.slice(rotatedAt).filter((_, i) => usedKey(rotatedAt + i) === C).length >= 5,
      10_000,
      'traffic with the new key',
    )
    stop()
    const { ok, failures } = await run
    expect(failures).toEqual([])
    // At least the 5 before the rotation and the 5 after it (a 401 retried adds no answer).
    expect(ok).toBeGreaterThanOrEqual(10)
    expect(usedKey(sim.requests.length - 1)).toBe(C)
  })

  it('a missing secret is a 503 until the file appears; then served without a restart', async () => {
    const err = await client.chat.completions
      .create({ model: 'late', messages: [{ role: 'user', content: 'x' }] })
      .catch((e) => e)
    expect([err.status, err.code]).toEqual([503, 'provider_credentials_unavailable'])
    expect(err.message).toContain('secret "late" key "api-key"')
    await pg.secrets.update({ [ENTRY]: C, [LATE]: C })
    // kubelet links a key that is new to the Secret next to the others.
    await symlink(join('..data', LATE), join(pg.secrets.dir, LATE))
    let answered = false
    for (let i = 0; i < 100 && !answered; i++) {
      answered = await client.chat.completions
        .create({ model: 'late', messages: [{ role: 'user', content: 'x' }] })
        .then(() => true)
        .catch(() => false)
      if (!answered) await sleep(30)
    }
    expect(answered).toBe(true)
  })
})

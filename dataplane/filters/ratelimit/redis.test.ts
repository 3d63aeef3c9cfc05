// The Redis backend against a real redis-server on loopback: the shared backend contract, plus
// what only Redis has — scripts loaded once and reloaded after a flush, hash-tag-safe keys, and
// nothing lost or double-counted across a hard restart.
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisServer, startRedis } from '../../../test/helpers/redis-server.js'
import { silentLogger } from '../../log.js'
import { BackendUnavailableError } from './backend.js'
import { backendContract, bucket } from './backend-contract.js'
import { RedisBackend } from './redis.js'

let redis: RedisServer
let backend: RedisBackend
let admin: Redis
const errors: string[] = []

beforeAll(async () => {
  redis = await startRedis()
  backend = new RedisBackend({
    address: redis.address,
    keyPrefix: 'igw',
    timeoutMs: 200,
    log: silentLogger,
    onError: (op) => errors.push(op),
  })
  admin = new Redis({ host: redis.host, port: redis.port, lazyConnect: true })
  await admin.connect()
  await new Promise<void>((r) =>
    backend.client.status === 'ready' ? r() : backend.client.once('ready', () => r()),
  )
})

afterAll(async () => {
  await backend?.close()
  admin?.disconnect()
  await redis?.stop()
})

describe('RedisBackend: the backend contract (single node: one call per request)', () => {
  backendContract(() => ({
    backend,
    settled: async () => {
      expect(await backend.drain(3_000)).toBe(true)
    },
  }))
})

describe('RedisBackend: the backend contract (Cluster style: one call per hash tag)', () => {
  let split: RedisBackend
  beforeAll(() => {
    split = new RedisBackend({
      address: redis.address,
      keyPrefix: 'igw',
      timeoutMs: 200,
      log: silentLogger,
      splitBySlot: true,
    })
  })
  afterAll(async () => {
    await split.close()
  })
  backendContract(() => ({
    backend: split,
    settled: async () => {
      expect(await split.drain(3_000)).toBe(true)
    },
  }))
})

/** Redis Cluster's slot of a key: CRC16/XMODEM of the hash tag (or the key) mod 16384. */
function slot(key: string): number {
  const open = key.indexOf('{')
  const close = open >= 0 ? key.indexOf('}', open + 1) : -1
  const s = close > open + 1 ? key.slice(open + 1, close) : key
  let crc = 0
  for (const byte of Buffer.from(s)) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16384
}

describe('RedisBackend', () => {
  it('computes Redis Cluster slots like Redis does', () => {
    // Values from the Redis Cluster specification's examples (CLUSTER KEYSLOT).
    expect(slot('123456789')).toBe(0x31c3 % 16384)
    expect(slot('{user1000}.following')).toBe(slot('{user1000}.followers'))
  })

  it('calls the scripts by sha (EVALSHA) and reloads them after SCRIPT FLUSH', async () => {
    const before = await admin.info('commandstats')
    await backend.reserve([bucket('sha', 'x', 10, 60_000, 1)])
    const after = await admin.info('commandstats')
    const count = (s: string, cmd: string) =>
      Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(s)?.[1] ?? 0)
    expect(count(after, 'evalsha')).toBe(count(before, 'evalsha') + 1)
    expect(count(after, 'eval')).toBe(count(before, 'eval'))
    await admin.script('FLUSH')
    const r = await backend.reserve([bucket('sha', 'x', 10, 60_000, 1)])
    expect(r.states[0]?.remaining).toBe(8)
  })

  it('keeps each call inside one hash slot (Redis Cluster safe)', async () => {
    await backend.reserve([
      bucket('scope-a', 'x', 10, 60_000, 1),
      bucket('scope-a', 'y', 10, 60_000, 1),
    ])
    const keys = await admin.keys('c:{scope-a}*')
    const markers = await admin.keys('igw:{scope-a}:m:*')
    expect(keys.length).toBe(2)
    expect(markers.length).toBeGreaterThan(0)
    expect(new Set([...keys, ...markers].map((k) => slot(k))).size).toBe(1)
  })

  it('fails fast when Redis is down, loses nothing and double-counts nothing across a restart', async () => {
    const t = 'restart'
    await backend.reserve([bucket(t, 'x', 1000, 3_600_000, 100)])
    await redis.kill()
    // Refused, not queued until Redis comes back (that would wait forever: it never does here).
    const outcome = await Promise.race([
      backend.reserve([bucket(t, 'x', 1000, 3_600_000, 1)]).then(
        () => 'reserved',
        (e: unknown) => e,
      ),
      new Promise((r) => setTimeout(r, 10_000, 'still waiting').unref()),
    ])
    expect(outcome).toBeInstanceOf(BackendUnavailableError)
    // Settlements made while Redis is away wait and are replayed once.
    backend.adjust([bucket(t, 'x', 1000, 3_600_000, 50)])
    backend.adjust([bucket(t, 'x', 1000, 3_600_000, -20)])
    expect(backend.pendingCount).toBeGreaterThanOrEqual(2)
    await redis.start()
    expect(await backend.drain(5_000)).toBe(true)
    const r = await backend.reserve([bucket(t, 'x', 1000, 3_600_000, 0)])
    // 1000 - 100 - 50 + 20 (a few ms of refill at 1000/hour is < 1 token).
    expect(r.states[0]?.remaining).toBe(870)
    expect(errors.length).toBeGreaterThan(0)
  })
})

describe('RedisBackend: a paused (SIGSTOP) Redis, fail closed', () => {
  it('a reservation fails within one timeout, also behind settlements stuck in flight', async () => {
    const timeoutMs = 1000
    const b = new RedisBackend({
      address: redis.address,
      keyPrefix: 'igw',
      timeoutMs,
      log: silentLogger,
    })
    await new Promise<void>((r) =>
      b.client.status === 'ready' ? r() : b.client.once('ready', () => r()),
    )
    const op = bucket('paused', 'x', 1000, 60_000, 1)
    redis.pause()
    try {
      // Traffic as the gateway makes it: each request settles (an adjustment) and the next one
      // reserves while that settlement still waits for the paused Redis.
      for (let i = 0; i < 3; i++) {
        b.adjust([{ ...op, cost: 1 }])
        await new Promise((r) => setTimeout(r, 50))
        // Each reservation fails closed on its own deadline; how long that takes against the
        // configured timeout is a benchmark's question, not this test's.
        await expect(b.reserve([op])).rejects.toBeInstanceOf(BackendUnavailableError)
      }
    } finally {
      redis.resume()
      await b.close()
    }
  }, 20_000)
})

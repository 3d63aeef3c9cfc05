import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent, type Dispatcher } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { ClientSignal } from './abort.js'
import { sleep } from './retry.js'

describe('ClientSignal', () => {
  it('runs each listener once, in the order added, with the reason set', () => {
    const s = new ClientSignal()
    const seen: string[] = []
    const a = (): void => {
      seen.push(`a:${String(s.reason)}`)
    }
    const b = (): void => {
      seen.push(`b:${s.aborted}`)
    }
    s.addEventListener('abort', a)
    s.addEventListener('abort', b)
    s.addEventListener('abort', a) // already there: no second call, as on an EventTarget
    expect(s.aborted).toBe(false)
    s.abort('gone')
    s.abort('again') // the first reason stays; nobody is called twice
    expect(seen).toEqual(['a:gone', 'b:true'])
    expect(s.reason).toBe('gone')
  })

  it('a removed listener is not called; one added after the abort is not called', () => {
    const s = new ClientSignal()
    let calls = 0
    const l = (): void => {
      calls++
    }
    s.addEventListener('abort', l)
    s.removeEventListener('abort', l)
    s.abort(1)
    s.addEventListener('abort', l)
    expect(calls).toBe(0)
  })

  it('a throwing listener does not stop the others and is reported uncaught', async () => {
    const s = new ClientSignal()
    let second = false
    s.addEventListener('abort', () => {
      throw new Error('listener bug')
    })
    s.addEventListener('abort', () => {
      second = true
    })
    const prev = process.listeners('uncaughtException')
    process.removeAllListeners('uncaughtException')
    const uncaught = new Promise<unknown>((resolve) => {
      process.once('uncaughtException', (e) => {
        for (const p of prev) process.on('uncaughtException', p)
        resolve(e)
      })
    })
    s.abort('x')
    expect(second).toBe(true)
    expect(String(await uncaught)).toContain('listener bug')
  })

  it('its real AbortSignal aborts with it, whether made before or after the abort', () => {
    const before = new ClientSignal()
    const real = before.signal
    expect(before.signal).toBe(real) // made once
    expect(real.aborted).toBe(false)
    before.abort('r1')
    expect(real.aborted).toBe(true)
    expect(real.reason).toBe('r1')

    const after = new ClientSignal()
    after.abort('r2')
    expect(after.signal.aborted).toBe(true)
    expect(after.signal.reason).toBe('r2')
  })

  it('stops the retry sleep with its reason', async () => {
    const s = new ClientSignal()
    const slept = sleep(60_000, s)
    s.abort(new Error('client left'))
    await expect(slept).rejects.toThrow('client left')
  })
})

describe('ClientSignal as the signal of an undici request (real HTTP on loopback)', () => {
  let server: Server | undefined
  let agent: Agent | undefined
  afterEach(async () => {
    await agent?.destroy()
    server?.closeAllConnections()
    await new Promise((r) => server?.close(r))
    server = undefined
    agent = undefined
  })

  async function start(handler: Parameters<typeof createServer>[1]): Promise<string> {
    server = createServer(handler)
    server.listen(0, '127.0.0.41')
    await once(server, 'listening')
    const { port } = server.address() as AddressInfo
    agent = new Agent()
    return `http://127.0.0.41:${port}`
  }

  const request = (origin: string, s: ClientSignal): Promise<Dispatcher.ResponseData> =>
    (agent as Agent).request({
      origin,
      path: '/',
      method: 'GET',
      // What forward.ts passes (see the cast there).
      signal: s as unknown as AbortSignal,
    })

  it('aborting before the response headers rejects the request with the reason', async () => {
    let arrived!: () => void
    const got = new Promise<void>((r) => {
      arrived = r
    })
    const origin = await start(() => arrived()) // never answers
    const s = new ClientSignal()
    const res = request(origin, s)
    await got
    s.abort(new Error('client closed the request'))
    await expect(res).rejects.toThrow('client closed the request')
  })

  it('aborting while the body streams destroys the body with the reason', async () => {
    const origin = await start((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('first') // and never ends
    })
    const s = new ClientSignal()
    const res = await request(origin, s)
    const it = res.body[Symbol.asyncIterator]()
    expect(String((await it.next()).value)).toBe('first')
    s.abort(new Error('deadline'))
    await expect(it.next()).rejects.toThrow('deadline')
  })

  it('a request that completes takes its listener off again', async () => {
    class Counting extends ClientSignal {
      added = 0
      removed = 0
      override addEventListener(type: 'abort', l: () => void): void {
        this.added++
        super.addEventListener(type, l)
      }
      override removeEventListener(type: 'abort', l: () => void): void {
        this.removed++
        super.removeEventListener(type, l)
      }
    }
    const origin = await start((_req, r) => r.end('ok'))
    const s = new Counting()
    const res = await request(origin, s)
    expect(await res.body.text()).toBe('ok')
    // undici takes it off when the body closes (just after its end).
    await new Promise((r) => setImmediate(r))
    expect(s.added).toBeGreaterThan(0)
    expect(s.removed).toBe(s.added)
  })
})

import { describe, expect, it } from 'vitest'
import { ClientSignal } from '../abort.js'
import { GatewayError } from '../errors.js'
import { deadline } from './deadline.js'

describe('deadline', () => {
  it('without a limit it is the client signal itself', () => {
    const client = new AbortController()
    const dl = deadline(client.signal, 0)
    expect(dl.signal).toBe(client.signal)
    expect(dl.timedOut()).toBe(false)
  })

  it('the client leaving aborts it with the client reason, not a timeout', () => {
    const client = new AbortController()
    const dl = deadline(client.signal, 60_000)
    client.abort(new GatewayError(499, 'client_closed', 'gone'))
    expect(dl.signal.aborted).toBe(true)
    expect((dl.signal.reason as GatewayError).status).toBe(499)
    expect(dl.timedOut()).toBe(false)
    dl.clear()
  })

  it('firing aborts with a 504 and reports timedOut; clear unlinks from the client', async () => {
    const client = new AbortController()
    const dl = deadline(client.signal, 1)
    await new Promise<void>((resolve) => dl.signal.addEventListener('abort', () => resolve()))
    expect(dl.timedOut()).toBe(true)
    expect((dl.signal.reason as GatewayError).status).toBe(504)
    const other = deadline(client.signal, 60_000)
    other.clear()
    client.abort()
    expect(other.signal.aborted).toBe(false)
  })

  it('a ClientSignal gets a ClientSignal deadline: the same aborts, reasons and unlinking', async () => {
    const client = new ClientSignal()
    const left = deadline(client, 60_000)
    expect(left.signal).toBeInstanceOf(ClientSignal)
    const fired = deadline(client, 1)
    await new Promise<void>((resolve) => fired.signal.addEventListener('abort', () => resolve()))
    expect(fired.timedOut()).toBe(true)
    expect((fired.signal.reason as GatewayError).status).toBe(504)
    fired.clear()
    const cleared = deadline(client, 60_000)
    cleared.clear()
    client.abort(new GatewayError(499, 'client_closed', 'gone'))
    expect(left.signal.aborted).toBe(true)
    expect((left.signal.reason as GatewayError).status).toBe(499)
    expect(left.timedOut()).toBe(false)
    expect(cleared.signal.aborted).toBe(false)
    left.clear()
    // Already gone: aborted from the start, and with no limit it is the client's signal itself.
    const late = deadline(client, 60_000)
    expect(late.signal.aborted).toBe(true)
    late.clear()
    expect(deadline(client, 0).signal).toBe(client)
  })
})

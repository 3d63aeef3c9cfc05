import { describe, expect, it } from 'vitest'
import type { SnapshotEndpoint } from '../../api/snapshot.js'
import {
  bootstrapFields,
  prefillRequest,
  SGLANG_BOOTSTRAP_PORT_LABEL,
  withoutTransferFields,
} from './pd-target.js'

const body = {
  model: 'm',
  messages: [{ role: 'user', content: 'hi' }],
  max_tokens: 50,
  max_completion_tokens: 50,
  stream: true,
  stream_options: { include_usage: true },
}

describe('pd connectors: what the prefill pod is sent', () => {
  it('http/lmcache: one token, not streamed, the request otherwise unchanged', () => {
    for (const c of ['http', 'lmcache'] as const) {
      expect(prefillRequest(body, c)).toEqual({
        model: 'm',
        messages: body.messages,
        max_tokens: 1,
        max_completion_tokens: 1,
        stream: false,
      })
    }
  })

  it('nixl: also kv_transfer_params asking for a remote decode (vLLM NixlConnector)', () => {
    expect(prefillRequest(body, 'nixl')['kv_transfer_params']).toEqual({
      do_remote_decode: true,
      do_remote_prefill: false,
      remote_engine_id: null,
      remote_block_ids: null,
      remote_host: null,
      remote_port: null,
    })
  })

  it('sglang: the client max_tokens kept (the prefill engine stops by itself), not streamed', () => {
    const p = prefillRequest(body, 'sglang')
    expect([p['max_tokens'], p['stream'], 'stream_options' in p]).toEqual([50, false, false])
  })

  it('the client cannot steer a transfer: its kv_transfer_params and bootstrap fields are dropped', () => {
    const steered = {
      ...body,
      kv_transfer_params: { do_remote_prefill: true, remote_host: '169.254.169.254' },
      bootstrap_host: '10.0.0.1',
      bootstrap_room: 7,
    }
    expect(withoutTransferFields(steered)).toEqual(body)
    expect(
      prefillRequest(withoutTransferFields(steered), 'nixl')['kv_transfer_params'],
    ).toMatchObject({
      remote_host: null,
    })
    // Nothing to drop: the same object (no copy per request).
    expect(withoutTransferFields(body)).toBe(body)
  })

  it('sglang bootstrap: host of the prefill pod, its port label when valid, a JSON-safe room', () => {
    const ep = (labels: Record<string, string>): SnapshotEndpoint => ({
      name: 'p',
      address: '10.1.2.3',
      port: 8000,
      ready: true,
      labels,
    })
    expect(bootstrapFields(ep({ [SGLANG_BOOTSTRAP_PORT_LABEL]: '8998' }), () => 0.5)).toEqual({
      bootstrap_host: '10.1.2.3',
      bootstrap_port: 8998,
      bootstrap_room: 2 ** 52,
    })
    const bad = bootstrapFields(ep({ [SGLANG_BOOTSTRAP_PORT_LABEL]: 'x' }), () => 0.999999)
    expect('bootstrap_port' in bad).toBe(false)
    expect(Number.isSafeInteger(bad['bootstrap_room'])).toBe(true)
  })
})

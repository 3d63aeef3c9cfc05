import { describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../../api/snapshot.js'
import type { BuildInput } from '../types.js'
import { geminiAdapter, geminiFinish } from './adapter.js'

const P = {
  key: 'default/g',
  type: 'Gemini',
  baseURL: 'https://generativelanguage.googleapis.com',
  gemini: { apiVersion: 'v1beta' },
} as SnapshotProvider

function input(body: Record<string, unknown> = {}, api: BuildInput['api'] = 'chat'): BuildInput {
  return {
    provider: P,
    api,
    body: { model: 'g', messages: [{ role: 'user', content: 'hi' }], ...body },
    raw: new Uint8Array(),
    upstreamModel: 'models/gemini-2.5-pro',
    clientModel: 'g',
    now: 1,
    requestId: 'r',
  }
}
const data = (o: unknown) => ({ data: JSON.stringify(o) })

describe('geminiAdapter', () => {
  it('builds the native URLs', () => {
    expect(geminiAdapter.build(input()).url).toBe(
      'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent',
    )
    expect(geminiAdapter.build(input({ stream: true })).url).toBe(
      'https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse',
    )
    const embed = { ...input({}, 'embeddings'), body: { model: 'g', input: 'x' } }
    expect(geminiAdapter.build(embed).url).toContain(':batchEmbedContents')
  })

  it('maps finish reasons', () => {
    expect(
      [
        ['STOP', false],
        ['STOP', true],
        ['MAX_TOKENS', false],
        ['SAFETY', false],
        ['RECITATION', false],
        ['PROHIBITED_CONTENT', false],
        ['MALFORMED_FUNCTION_CALL', false],
      ].map(([r, t]) => geminiFinish(r, t as boolean)),
    ).toEqual([
      'stop',
      'tool_calls',
      'length',
      'content_filter',
      'content_filter',
      'content_filter',
      'stop',
    ])
  })

  it('a blocked prompt (no candidates) is an empty content_filter answer', () => {
    const r = geminiAdapter.parse(
      input(),
      new TextEncoder().encode(
        JSON.stringify({
          promptFeedback: { blockReason: 'SAFETY' },
          usageMetadata: { promptTokenCount: 3 },
        }),
      ),
    )
    const body = JSON.parse(String(r.body))
    expect(body.choices).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: null, refusal: null },
        finish_reason: 'content_filter',
        logprobs: null,
      },
    ])
    expect(r.usage).toEqual({ promptTokens: 3, completionTokens: 0 })
  })

  it('streams text and whole function calls; no finish reason = cut', () => {
    const t = geminiAdapter.stream(input())
    const frames = [
      ...t.push(
        data({
          candidates: [
            {
              content: { role: 'model', parts: [{ text: 'think', thought: true }, { text: 'Hi' }] },
              index: 0,
            },
          ],
        }),
      ),
      ...t.push(
        data({
          candidates: [
            {
              content: { role: 'model', parts: [{ functionCall: { name: 'f', args: { a: 1 } } }] },
              finishReason: 'STOP',
              index: 0,
            },
          ],
          usageMetadata: { promptTokenCount: 2, candidatesTokenCount: 3, thoughtsTokenCount: 4 },
        }),
      ),
      ...t.end(),
    ]
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f.slice(6)).choices[0])
    expect(chunks).toEqual([
      {
        index: 0,
        delta: { role: 'assistant', content: 'Hi' },
        finish_reason: null,
        logprobs: null,
      },
      {
        index: 0,
        delta: {
          tool_calls: [
            {
              index: 0,
              id: 'call_0_0',
              type: 'function',
              function: { name: 'f', arguments: '{"a":1}' },
            },
          ],
        },
        finish_reason: null,
        logprobs: null,
      },
      { index: 0, delta: {}, finish_reason: 'tool_calls', logprobs: null },
    ])
    expect(frames.at(-1)).toBe('data: [DONE]\n\n')
    expect(t.usage).toEqual({ promptTokens: 2, completionTokens: 7, reasoningTokens: 4 })
    const cut = geminiAdapter.stream(input())
    cut.push(data({ candidates: [{ content: { parts: [{ text: 'a' }] }, index: 0 }] }))
    expect(() => cut.end()).toThrow(/before a finish reason/)
    expect(() =>
      cut.push(data({ error: { code: 503, message: 'overloaded', status: 'UNAVAILABLE' } })),
    ).toThrow(/overloaded/)
  })

  it('reads API_KEY_INVALID as a rejected credential', () => {
    expect(
      geminiAdapter.errorDetail(
        400,
        JSON.stringify({
          error: {
            code: 400,
            message: 'API key not valid.',
            status: 'INVALID_ARGUMENT',
            details: [{ reason: 'API_KEY_INVALID' }],
          },
        }),
      ),
    ).toMatchObject({ credentialRejected: true })
    expect(
      geminiAdapter.errorDetail(
        400,
        JSON.stringify({ error: { code: 400, message: 'bad field', status: 'INVALID_ARGUMENT' } }),
      ),
    ).toEqual({ message: 'bad field', type: 'invalid_request_error' })
  })
})

import type { Message, RawMessageStreamEvent } from '@anthropic-ai/sdk/resources/messages'
import { describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../../api/snapshot.js'
import { type BuildInput, ProviderStreamError } from '../types.js'
import { anthropicAdapter, finishReason } from './adapter.js'

const P = {
  key: 'default/c',
  type: 'Anthropic',
  baseURL: 'https://api.anthropic.com',
  anthropic: { version: '2023-06-01', defaultMaxTokens: 10 },
} as SnapshotProvider

function input(body: Record<string, unknown> = {}): BuildInput {
  return {
    provider: P,
    api: 'chat',
    body: { model: 'c', messages: [{ role: 'user', content: 'hi' }], ...body },
    raw: new Uint8Array(),
    upstreamModel: 'claude-x',
    clientModel: 'c',
    now: 1700000000,
    requestId: 'r1',
  }
}

const ev = (e: RawMessageStreamEvent | { type: 'ping' }) => ({
  event: e.type,
  data: JSON.stringify(e),
})
const chunks = (frames: string[]) =>
  frames
    .filter((f) => f !== 'data: [DONE]\n\n')
    .map(
      (f) =>
        JSON.parse(f.slice(6)) as {
          choices: { delta: Record<string, unknown>; finish_reason: string | null }[]
          usage?: unknown
        },
    )

describe('anthropicAdapter', () => {
  it('builds POST /v1/messages with the version header', () => {
    const b = anthropicAdapter.build(input({ stream: true }))
    expect(b.url).toBe('https://api.anthropic.com/v1/messages')
    expect(b.headers).toMatchObject({
      'anthropic-version': '2023-06-01',
      accept: 'text/event-stream',
    })
    expect(b.stream).toBe(true)
  })

  it('parses a Message into a chat.completion', () => {
    const msg = {
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [
        { type: 'thinking', thinking: 'hmm', signature: 's' },
        { type: 'text', text: 'Hi', citations: null },
        { type: 'tool_use', id: 'tu', name: 'f', input: { a: 1 }, caller: null },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      stop_details: null,
      container: null,
      diagnostics: null,
      usage: {
        input_tokens: 5,
        output_tokens: 7,
        cache_creation_input_tokens: 2,
        cache_read_input_tokens: 3,
        cache_creation: null,
        inference_geo: null,
        output_tokens_details: null,
        server_tool_use: null,
        service_tier: null,
        speed: null,
      },
    } as unknown as Message
    const r = anthropicAdapter.parse(input(), new TextEncoder().encode(JSON.stringify(msg)))
    expect(JSON.parse(String(r.body))).toEqual({
      id: 'msg_1',
      object: 'chat.completion',
      created: 1700000000,
      model: 'claude-x',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'Hi',
            refusal: null,
            tool_calls: [
              { id: 'tu', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
            ],
          },
          finish_reason: 'tool_calls',
          logprobs: null,
        },
      ],
      usage: {
        prompt_tokens: 10,
        completion_tokens: 7,
        total_tokens: 17,
        prompt_tokens_details: { cached_tokens: 3 },
      },
    })
    expect(r.usage).toEqual({ promptTokens: 10, completionTokens: 7, cachedPromptTokens: 3 })
  })

  it('maps every stop reason', () => {
    expect(
      [
        'end_turn',
        'stop_sequence',
        'max_tokens',
        'tool_use',
        'refusal',
        'pause_turn',
        'model_context_window_exceeded',
        null,
      ].map(finishReason),
    ).toEqual(['stop', 'stop', 'length', 'tool_calls', 'content_filter', 'stop', 'length', 'stop'])
  })

  it('translates the event sequence, skipping ping and thinking', () => {
    const t = anthropicAdapter.stream(input({ stream_options: { include_usage: true } }))
    const frames = [
      ev({
        type: 'message_start',
        message: {
          id: 'msg_s',
          model: 'claude-x',
          usage: { input_tokens: 4, output_tokens: 1 },
        } as unknown as Message,
      }),
      ev({ type: 'ping' }),
      ev({
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'thinking', thinking: '', signature: '' },
      } as unknown as RawMessageStreamEvent),
      ev({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'thinking_delta', thinking: 'secret' },
      }),
      ev({ type: 'content_block_stop', index: 0 }),
      ev({
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'text', text: '', citations: null },
      }),
      ev({ type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Hel' } }),
      ev({ type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'lo' } }),
      ev({
        type: 'content_block_start',
        index: 2,
        content_block: { type: 'tool_use', id: 'tu', name: 'f', input: {} },
      } as unknown as RawMessageStreamEvent),
      ev({
        type: 'content_block_delta',
        index: 2,
        delta: { type: 'input_json_delta', partial_json: '{"a":' },
      }),
      ev({
        type: 'content_block_delta',
        index: 2,
        delta: { type: 'input_json_delta', partial_json: '1}' },
      }),
      ev({
        type: 'message_delta',
        delta: {
          stop_reason: 'tool_use',
          stop_sequence: null,
          stop_details: null,
          container: null,
        },
        usage: { output_tokens: 9 },
      } as unknown as RawMessageStreamEvent),
      ev({ type: 'message_stop' }),
    ].flatMap((e) => t.push(e))
    expect(frames.at(-1)).toBe('data: [DONE]\n\n')
    const cs = chunks(frames)
    expect(cs.map((c) => c.choices[0]?.delta ?? null)).toEqual([
      { role: 'assistant', content: '' },
      { content: 'Hel' },
      { content: 'lo' },
      {
        tool_calls: [
          { index: 0, id: 'tu', type: 'function', function: { name: 'f', arguments: '' } },
        ],
      },
      { tool_calls: [{ index: 0, function: { arguments: '{"a":' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '1}' } }] },
      {},
      null,
    ])
    expect(cs.at(-2)?.choices[0]?.finish_reason).toBe('tool_calls')
    expect(cs.at(-1)?.usage).toEqual({ prompt_tokens: 4, completion_tokens: 9, total_tokens: 13 })
    expect(() => t.end()).not.toThrow()
  })

  it('an error event and an early end are stream errors', () => {
    const t = anthropicAdapter.stream(input())
    t.push(
      ev({
        type: 'message_start',
        message: {
          id: 'm',
          model: 'x',
          usage: { input_tokens: 1, output_tokens: 1 },
        } as unknown as Message,
      }),
    )
    expect(() =>
      t.push({
        event: 'error',
        data: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
      }),
    ).toThrow(ProviderStreamError)
    expect(() => t.end()).toThrow(/before message_stop/)
  })

  it('reads error bodies: key problems and overload', () => {
    expect(
      anthropicAdapter.errorDetail(
        401,
        '{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
      ),
    ).toMatchObject({ credentialRejected: true })
    expect(
      anthropicAdapter.errorDetail(
        529,
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
      ),
    ).toMatchObject({ overloaded: true, message: 'Overloaded' })
    expect(
      anthropicAdapter.errorDetail(
        400,
        '{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}',
      ),
    ).toEqual({ message: 'bad', type: 'invalid_request_error' })
  })
})

// Anthropic Messages ⇄ OpenAI chat, both directions, on fixed payloads.
import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../errors.js'
import { anthropicErrorBody } from './errors.js'
import { messagesToChat } from './request.js'
import { ChatToMessagesStream, chatToMessage, stopReason } from './response.js'

function err(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof GatewayError) return `${e.status} ${e.code} ${e.message}`
    throw e
  }
  return 'ok'
}

describe('Messages → chat', () => {
  it('maps system, images, tool turns, sampling and stop sequences', () => {
    const chat = messagesToChat({
      model: 'm',
      max_tokens: 10,
      system: [{ type: 'text', text: 'be brief' }],
      temperature: 0.5,
      top_k: 5,
      stop_sequences: ['END'],
      metadata: { user_id: 'u1' },
      stream: true,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look: ' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAA' } },
          ],
        },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 't1', name: 'f', input: { a: 1 } }],
        },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 't1', content: 'boom', is_error: true }],
        },
      ],
    })
    expect(chat).toEqual({
      model: 'm',
      max_tokens: 10,
      temperature: 0.5,
      top_k: 5,
      stop: ['END'],
      user: 'u1',
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: 'system', content: 'be brief' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look: ' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,AAA' } },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 't1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
          ],
        },
        { role: 'tool', tool_call_id: 't1', content: 'Error: boom' },
      ],
    })
  })

  it('refuses what does not translate, naming the field', () => {
    const base = { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }
    expect(err(() => messagesToChat({ ...base, thinking: { type: 'enabled' } }))).toBe(
      '400 unsupported_parameter thinking: not available when the model is served through OpenAI chat',
    )
    expect(err(() => messagesToChat({ ...base, max_tokens: undefined }))).toMatch(
      /^400 invalid_request max_tokens: is required/,
    )
    expect(
      err(() =>
        messagesToChat({
          ...base,
          messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }],
        }),
      ),
    ).toMatch(/^400 unsupported_parameter messages\[0\]\.content\[0\]\.type:/)
    expect(
      err(() => messagesToChat({ ...base, tools: [{ type: 'web_search_20250305', name: 'w' }] })),
    ).toMatch(/tools\[0\]\.type: server tools/)
  })
})

describe('chat → Messages', () => {
  it('maps a completion with text and a tool call, stop reason and cached usage', () => {
    const m = chatToMessage(
      {
        id: 'chatcmpl-1',
        choices: [
          {
            message: {
              content: 'hi',
              tool_calls: [{ id: 'c1', function: { name: 'f', arguments: '{"x":2}' } }],
            },
            finish_reason: 'tool_calls',
          },
        ],
        usage: {
          prompt_tokens: 10,
          completion_tokens: 3,
          prompt_tokens_details: { cached_tokens: 4 },
        },
      },
      'client-model',
    )
    expect(m).toEqual({
      id: 'msg_chatcmpl-1',
      type: 'message',
      role: 'assistant',
      model: 'client-model',
      content: [
        { type: 'text', text: 'hi' },
        { type: 'tool_use', id: 'c1', name: 'f', input: { x: 2 } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 6, output_tokens: 3, cache_read_input_tokens: 4 },
    })
    expect(['stop', 'length', 'content_filter'].map(stopReason)).toEqual([
      'end_turn',
      'max_tokens',
      'refusal',
    ])
  })

  it('turns a chunk stream into the named events; an error event into Anthropic’s', () => {
    const t = new ChatToMessagesStream('m')
    const out = [
      t.push('{"id":"x","choices":[{"delta":{"role":"assistant","content":""}}]}'),
      t.push('{"id":"x","choices":[{"delta":{"content":"Hel"}}]}'),
      t.push('{"id":"x","choices":[{"delta":{"content":"lo"},"finish_reason":"length"}]}'),
      t.push('{"id":"x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}'),
      t.push('[DONE]'),
    ].join('')
    const events = [...out.matchAll(/^event: (\S+)$/gm)].map((m) => m[1])
    expect(events).toEqual([
      'message_start',
      'ping',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ])
    expect(out).toContain(
      '"delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"input_tokens":5,"output_tokens":2}',
    )
    const e = new ChatToMessagesStream('m')
    expect(
      e.push('{"error":{"message":"cut","type":"server_error","code":"upstream_stream_cut"}}'),
    ).toBe(
      `event: error\ndata: ${JSON.stringify(anthropicErrorBody(500, 'cut', 'upstream_stream_cut', undefined))}\n\n`,
    )
    expect(e.push('[DONE]')).toBe('')
  })
})

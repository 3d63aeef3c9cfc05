import type { MessageCreateParamsBase } from '@anthropic-ai/sdk/resources/messages'
import { describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../../api/snapshot.js'
import { GatewayError } from '../../errors.js'
import { type AnthropicRequest, toAnthropicRequest } from './request.js'

const P = {
  key: 'default/claude',
  type: 'Anthropic',
  anthropic: { version: '2023-06-01', defaultMaxTokens: 1024 },
} as SnapshotProvider

function tr(body: Record<string, unknown>): AnthropicRequest {
  return toAnthropicRequest(P, { model: 'claude', ...body }, 'claude-sonnet-4-5')
}

function rejects(body: Record<string, unknown>): GatewayError {
  try {
    tr(body)
  } catch (e) {
    if (e instanceof GatewayError) return e
    throw e
  }
  throw new Error('expected a 400')
}

describe('toAnthropicRequest', () => {
  it('sampling parameters follow the pinned API version', () => {
    const m = [{ role: 'user', content: 'x' }]
    expect(tr({ messages: m, temperature: 0.2, top_p: 0.9, top_k: 5 })).toMatchObject({
      temperature: 0.2,
      top_p: 0.9,
      top_k: 5,
    })
    const modern = {
      ...P,
      anthropic: { version: '2026-10-21', defaultMaxTokens: 8 },
    } as SnapshotProvider
    const run = (body: Record<string, unknown>) => () =>
      toAnthropicRequest(modern, { model: 'c', messages: m, ...body }, 'x')
    expect(run({ temperature: 0.2 })).toThrow(/takes no sampling parameters/)
    expect(run({ top_k: 3 })).toThrow(/takes no sampling parameters/)
    expect(run({ temperature: 1, top_p: 1 })()).not.toHaveProperty('temperature')
  })

  it('produces what the official SDK types accept', () => {
    const out = tr({
      messages: [
        { role: 'system', content: 'sys' },
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
            { type: 'text', text: 'what is it?' },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 't1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
          ],
        },
        { role: 'tool', tool_call_id: 't1', content: 'r1' },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'f',
            parameters: { type: 'object', properties: { a: { type: 'number' } } },
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'f' } },
      stop: 'STOP',
      max_tokens: 50,
      stream: true,
    })
    // Compile-time: the translation's output is a valid SDK request body.
    const typed: MessageCreateParamsBase = out
    expect(typed).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: 50,
      system: 'sys',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
            { type: 'text', text: 'what is it?' },
          ],
        },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 't1', name: 'f', input: { a: 1 } }],
        },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'r1' }] },
      ],
      tools: [
        { name: 'f', input_schema: { type: 'object', properties: { a: { type: 'number' } } } },
      ],
      tool_choice: { type: 'tool', name: 'f' },
      stop_sequences: ['STOP'],
      stream: true,
    })
  })

  it('merges consecutive turns and puts parallel tool results in one user turn', () => {
    const out = tr({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
        {
          role: 'assistant',
          tool_calls: [
            { id: 'x', type: 'function', function: { name: 'f', arguments: '{}' } },
            { id: 'y', type: 'function', function: { name: 'g', arguments: '' } },
          ],
        },
        { role: 'tool', tool_call_id: 'x', content: '1' },
        { role: 'tool', tool_call_id: 'y', content: [{ type: 'text', text: '2' }] },
        { role: 'user', content: 'thanks' },
      ],
    })
    expect(out.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'text', text: 'b' },
        ],
      },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'x', name: 'f', input: {} },
          { type: 'tool_use', id: 'y', name: 'g', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'x', content: '1' },
          { type: 'tool_result', tool_use_id: 'y', content: '2' },
          { type: 'text', text: 'thanks' },
        ],
      },
    ])
    expect(out.max_tokens).toBe(1024)
  })

  it('maps tool_choice values and parallel_tool_calls', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }]
    const m = [{ role: 'user', content: 'x' }]
    expect(tr({ messages: m, tools, tool_choice: 'none' }).tool_choice).toEqual({ type: 'none' })
    expect(tr({ messages: m, tools, tool_choice: 'auto' }).tool_choice).toEqual({ type: 'auto' })
    expect(tr({ messages: m, tools, parallel_tool_calls: false }).tool_choice).toEqual({
      type: 'auto',
      disable_parallel_tool_use: true,
    })
    expect(tr({ messages: m, tools }).tools?.[0]?.input_schema).toEqual({
      type: 'object',
      properties: {},
    })
  })

  it('400s name what cannot be sent, never drop it', () => {
    const m = [{ role: 'user', content: 'x' }]
    expect(rejects({ messages: m, temperature: 1.5 }).message).toContain('0..1')
    expect(rejects({ messages: m, reasoning_effort: 'low' }).param).toBe('reasoning_effort')
    expect(rejects({ messages: m, presence_penalty: 1 }).param).toBe('presence_penalty')
    expect(
      rejects({ messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }] })
        .param,
    ).toBe('messages[0].content[0].type')
    expect(
      rejects({
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'data:image/bmp;base64,AA' } }],
          },
        ],
      }).message,
    ).toContain('image/bmp')
    expect(
      rejects({
        messages: [
          {
            role: 'assistant',
            tool_calls: [
              { id: 'a', type: 'function', function: { name: 'f', arguments: 'not json' } },
            ],
          },
        ],
      }).param,
    ).toBe('messages[0].tool_calls[0].function.arguments')
    expect(rejects({ messages: [] }).param).toBe('messages')
    expect(rejects({ messages: [{ role: 'system', content: 'only system' }] }).param).toBe(
      'messages',
    )
    const e = rejects({ messages: m, n: 3 })
    expect([e.status, e.code]).toEqual([400, 'unsupported_parameter'])
    // Values equal to OpenAI's defaults change nothing and pass.
    expect(() =>
      tr({ messages: m, temperature: 1, top_p: 1, n: 1, presence_penalty: 0, logprobs: false }),
    ).not.toThrow()
  })
})

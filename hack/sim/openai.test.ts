import { describe, expect, it } from 'vitest'
import { SimError } from './errors.js'
import {
  parseChatRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
  parseJsonBody,
  streamChunk,
} from './openai.js'

const catalog = { baseModel: 'base', isKnownAdapter: (n: string) => n === 'ad' }

function codeOf(fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    if (e instanceof SimError) return `${e.status}:${e.code}`
    throw e
  }
  return 'ok'
}

describe('request parsing', () => {
  it('flattens chat messages (including text parts) through the chat template', () => {
    const r = parseChatRequest(
      parseJsonBody(
        '{"model":"ad","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}',
      ),
      catalog,
    )
    expect(r).toEqual({
      kind: 'chat',
      model: 'ad',
      lora: 'ad',
      prompt: '<|im_start|>user\na\nb<|im_end|>\n<|im_start|>assistant\n',
      maxTokens: 3,
      stream: true,
      includeUsage: true,
    })
  })

  it('defaults the model to the base model and accepts token-id prompts', () => {
    const r = parseCompletionRequest({ prompt: [1, 2, 3] }, catalog)
    expect(r).toMatchObject({
      model: 'base',
      lora: null,
      prompt: ' t1 t2 t3',
      maxTokens: null,
      stream: false,
    })
  })

  it('rejects bad input with stable codes', () => {
    expect(codeOf(() => parseJsonBody('[1]'))).toBe('400:invalid_request_body')
    expect(codeOf(() => parseChatRequest({ messages: [{ content: 'x' }] }, catalog))).toBe(
      '400:invalid_messages',
    )
    expect(
      codeOf(() => parseChatRequest({ messages: [{ role: 'user', content: 'x' }], n: 2 }, catalog)),
    ).toBe('400:unsupported_parameter')
    expect(codeOf(() => parseCompletionRequest({ prompt: ['a', 'b'] }, catalog))).toBe(
      '400:invalid_prompt',
    )
    expect(codeOf(() => parseEmbeddingRequest({ input: 'x', model: 'zzz' }, catalog))).toBe(
      '404:model_not_found',
    )
    expect(
      codeOf(() => parseEmbeddingRequest({ input: 'x', encoding_format: 'hex' }, catalog)),
    ).toBe('400:invalid_parameter')
  })

  it('builds completion stream chunks without a delta', () => {
    const c = streamChunk('completion', { id: 'cmpl-1', created: 1, model: 'base' }, ' hi', null)
    expect(c).toEqual({
      id: 'cmpl-1',
      object: 'text_completion',
      created: 1,
      model: 'base',
      choices: [{ index: 0, text: ' hi', logprobs: null, finish_reason: null }],
    })
  })
})

import { describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../../api/snapshot.js'
import { GatewayError } from '../../errors.js'
import { toGeminiEmbedRequest, toGeminiRequest } from './request.js'

const P = { key: 'default/g', type: 'Gemini' } as SnapshotProvider

function param(f: () => unknown): string | null {
  try {
    f()
  } catch (e) {
    if (e instanceof GatewayError) return e.param
    throw e
  }
  return 'no error'
}

describe('toGeminiRequest', () => {
  it('maps roles, images, audio, tools, tool results and reasoning effort', () => {
    const r = toGeminiRequest(P, {
      model: 'g',
      messages: [
        { role: 'developer', content: 'rules' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'see' },
            { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,QUJD' } },
            { type: 'input_audio', input_audio: { format: 'wav', data: 'UklG' } },
          ],
        },
        {
          role: 'assistant',
          content: 'calling',
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'f', arguments: '{"x":1}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: '{"temp":18}' },
      ],
      tools: [
        {
          type: 'function',
          function: { name: 'f', description: 'd', parameters: { type: 'object' } },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'f' } },
      reasoning_effort: 'low',
      response_format: { type: 'json_object' },
    })
    expect(r).toEqual({
      contents: [
        {
          role: 'user',
          parts: [
            { text: 'see' },
            { inlineData: { mimeType: 'image/jpeg', data: 'QUJD' } },
            { inlineData: { mimeType: 'audio/wav', data: 'UklG' } },
          ],
        },
        {
          role: 'model',
          parts: [{ text: 'calling' }, { functionCall: { name: 'f', args: { x: 1 }, id: 'c1' } }],
        },
        {
          role: 'user',
          parts: [{ functionResponse: { name: 'f', response: { temp: 18 }, id: 'c1' } }],
        },
      ],
      systemInstruction: { parts: [{ text: 'rules' }] },
      tools: [
        {
          functionDeclarations: [
            { name: 'f', description: 'd', parametersJsonSchema: { type: 'object' } },
          ],
        },
      ],
      toolConfig: { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['f'] } },
      generationConfig: {
        responseMimeType: 'application/json',
        thinkingConfig: { thinkingBudget: 1024 },
      },
    })
  })

  it('rejects what it cannot express, naming the field', () => {
    const m = [{ role: 'user', content: 'x' }]
    expect(param(() => toGeminiRequest(P, { messages: m, logit_bias: { 1: 2 } }))).toBe(
      'logit_bias',
    )
    expect(param(() => toGeminiRequest(P, { messages: m, reasoning_effort: 'extreme' }))).toBe(
      'reasoning_effort',
    )
    expect(
      param(() =>
        toGeminiRequest(P, {
          messages: [
            {
              role: 'user',
              content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }],
            },
          ],
        }),
      ),
    ).toBe('messages[0].content[0].image_url.url')
    expect(
      param(() =>
        toGeminiRequest(P, { messages: [{ role: 'tool', tool_call_id: 'nope', content: 'x' }] }),
      ),
    ).toBe('messages[0].tool_call_id')
  })
})

describe('toGeminiEmbedRequest', () => {
  it('one request per input, model-qualified; token arrays are a 400', () => {
    expect(
      toGeminiEmbedRequest(
        P,
        { model: 'e', input: ['a', 'b'], dimensions: 8 },
        'text-embedding-004',
      ),
    ).toEqual({
      requests: [
        {
          model: 'models/text-embedding-004',
          content: { parts: [{ text: 'a' }] },
          outputDimensionality: 8,
        },
        {
          model: 'models/text-embedding-004',
          content: { parts: [{ text: 'b' }] },
          outputDimensionality: 8,
        },
      ],
    })
    expect(param(() => toGeminiEmbedRequest(P, { model: 'e', input: [1, 2] }, 'x'))).toBe('input')
  })
})

import { describe, expect, it } from 'vitest'
import type { SnapshotProvider } from '../../../api/snapshot.js'
import type { BuildInput } from '../types.js'
import { openAIAdapter, openAIUrl } from './adapter.js'

function p(extra: Partial<SnapshotProvider>): SnapshotProvider {
  return {
    key: 'default/p',
    type: 'OpenAI',
    baseURL: 'https://api.openai.com/v1',
    ...extra,
  } as SnapshotProvider
}
function input(body: Record<string, unknown>, provider = p({})): BuildInput {
  const raw = new TextEncoder().encode(JSON.stringify(body))
  return {
    provider,
    api: 'chat',
    body,
    raw,
    upstreamModel: 'gpt-4o-mini',
    clientModel: String(body['model']),
    now: 1,
    requestId: 'r',
  }
}

describe('openAIAdapter', () => {
  it('maps URLs per type', () => {
    expect(openAIUrl(p({}), 'chat')).toBe('https://api.openai.com/v1/chat/completions')
    expect(
      openAIUrl(
        p({
          type: 'AzureOpenAI',
          baseURL: 'https://r.openai.azure.com',
          azure: { deployment: 'my dep', apiVersion: '2024-10-21' },
        }),
        'embeddings',
      ),
    ).toBe(
      'https://r.openai.azure.com/openai/deployments/my%20dep/embeddings?api-version=2024-10-21',
    )
  })

  it('knows which APIs each type has', () => {
    expect(openAIAdapter.supports(p({ type: 'DeepSeek' }), 'completions')).toBe(false)
    expect(
      openAIAdapter.supports(
        p({ type: 'HuggingFace', huggingFace: { api: 'Router' } }),
        'completions',
      ),
    ).toBe(false)
    expect(
      openAIAdapter.supports(
        p({ type: 'HuggingFace', huggingFace: { api: 'TGI' } }),
        'completions',
      ),
    ).toBe(true)
    expect(openAIAdapter.supports(p({ type: 'OpenAICompatible' }), 'embeddings')).toBe(true)
  })

  it("sends the client's bytes unless the model or stream usage must change", () => {
    const same = input({ model: 'gpt-4o-mini', messages: [] })
    expect(openAIAdapter.build(same).body).toBe(same.raw)
    const rewritten = JSON.parse(
      String(
        openAIAdapter.build(
          input({ model: 'alias', messages: [], stream: true, stream_options: { foo: 1 } }),
        ).body,
      ),
    )
    expect(rewritten).toMatchObject({
      model: 'gpt-4o-mini',
      stream_options: { foo: 1, include_usage: true },
    })
  })

  it('drops the injected usage chunk, keeps it when asked, and notices a missing [DONE]', () => {
    const usageChunk = {
      data: '{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}',
    }
    const quiet = openAIAdapter.stream(input({ model: 'm', stream: true }))
    expect(quiet.push({ data: '{"choices":[{"delta":{"content":"a"}}]}' })).toHaveLength(1)
    expect(quiet.push(usageChunk)).toEqual([])
    expect(quiet.usage).toEqual({ promptTokens: 3, completionTokens: 2 })
    expect(quiet.push({ data: '[DONE]' })).toEqual(['data: [DONE]\n\n'])
    expect(quiet.end()).toEqual([])
    const asked = openAIAdapter.stream(
      input({ model: 'm', stream: true, stream_options: { include_usage: true } }),
    )
    expect(asked.push(usageChunk)).toHaveLength(1)
    expect(() => asked.end()).toThrow(/before it finished/)
    expect(() => asked.push({ data: '{"error":{"message":"boom"}}' })).toThrow(/boom/)
  })
})
